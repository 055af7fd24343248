"""Text encoders: a batch of strings in, a float32 matrix out, computed by libembetter's C encoders.

HashingEncoder is scikit-learn's HashingVectorizer made dense (same features,
same hash, same numbers); WordVectorEncoder averages pre-trained static word
vectors; TextEncoder reads a model2vec model (embetter 0.9's default text
encoder) and equals model2vec's StaticModel.encode; SentenceEncoder runs a
BERT sentence-transformers model (such as all-MiniLM-L6-v2) in C, equal to
sentence-transformers without PyTorch. All are stateless scikit-learn
transformers: fit learns nothing.

Input policy (the C library's, see include/embetter/encoder.h): every item
must be a str (or bytes holding UTF-8); None and other types are a TypeError
naming the item. Text that cannot be UTF-8 (a str with lone surrogates, bytes
that are not valid UTF-8) is rejected with a ValueError, never replaced. An
empty string is a ValueError naming the item (usually a missing value; a
zero row would hide it), and so is an empty batch. A text of only spaces
encodes to a row of zeros, as in HashingVectorizer.
"""
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from libembetter._binding import output_matrix, raise_for_status
from libembetter._config import single_blas_thread
from libembetter._errors import FileAccessError
from libembetter._lite import LiteTextEncoder, learn_lite_text_embeddings
from libembetter._native import ffi, lib
from libembetter.base import EmbetterBase

__all__ = ["HashingEncoder", "WordVectorEncoder", "TextEncoder", "SentenceEncoder", "ModelFilesNotFoundError",
           "LiteTextEncoder", "learn_lite_text_embeddings"]

# eb_text is {const char *data; size_t length;}: build the whole array with numpy instead of item by item.
_TEXT_DTYPE = np.dtype([("data", np.uintp), ("length", np.uintp)])
assert ffi.sizeof("eb_text") == _TEXT_DTYPE.itemsize


def _message(error):
    return ffi.string(error.message).decode("utf-8", "replace")


def _thread_setting(n_threads):
    """The C n_threads value: None means automatic (EB_ENCODER_THREADS_AUTO)."""
    if n_threads is None:
        return lib.EB_ENCODER_THREADS_AUTO
    if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, (int, np.integer)):
        raise TypeError(f"n_threads must be None or a whole number, not {type(n_threads).__name__}")
    if not 1 <= n_threads <= lib.EB_ENCODER_MAX_THREADS:
        raise ValueError(f"n_threads is {n_threads}; it must be None (automatic) or 1..{lib.EB_ENCODER_MAX_THREADS}")
    return int(n_threads)


def _one_dimensional(X, what):
    """X with a pandas Series or one-column DataFrame, or an n x 1 array, as a 1-D array; what names the items."""
    if hasattr(X, "iloc") and hasattr(X, "to_numpy"):
        X = X.to_numpy()
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(f"X has shape {X.shape}; a batch of {what} is one-dimensional")
    return X


def _text_items(X):
    """The items of a batch as a list: lists, tuples, 1-D arrays, pandas Series, other iterables."""
    if isinstance(X, (str, bytes)):
        raise TypeError("X is a single string; pass a list (or array, or Series) of strings")
    X = _one_dimensional(X, "texts")
    if isinstance(X, np.ndarray):
        return X.tolist()
    try:
        return list(X)
    except TypeError:
        raise TypeError(f"X must be a list, array or Series of strings, not {type(X).__name__}") from None


def _utf8_batch(X):
    """(blob, eb_text array) for the batch; the caller keeps both alive during the C call."""
    items = _text_items(X)
    encoded = []
    for position, item in enumerate(items):
        if isinstance(item, str):
            try:
                encoded.append(item.encode("utf-8"))
            except UnicodeEncodeError as error:
                raise ValueError(
                    f"text {position} is not valid Unicode: {error.reason} at character {error.start}; "
                    "invalid text is rejected, not replaced"
                ) from None
        elif isinstance(item, (bytes, bytearray, memoryview)):
            encoded.append(bytes(item))  # the C library checks that it is UTF-8
        elif item is None:
            raise TypeError(f"text {position} is None; every item must be a str")
        else:
            raise TypeError(f"text {position} is a {type(item).__name__}, not a str")
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.uintp, count=len(encoded))
    blob = b"".join(encoded)
    texts = np.zeros(len(encoded), dtype=_TEXT_DTYPE)
    if blob:
        base = int(ffi.cast("uintptr_t", ffi.from_buffer(blob)))
        starts = np.zeros(len(encoded), dtype=np.uintp)
        np.cumsum(lengths[:-1], out=starts[1:])
        texts["data"] = base + starts
    texts["length"] = lengths
    return blob, texts


class NativeEncoder:
    """One C encoder (an eb_encoder *), freed when this object is collected."""

    def __init__(self, pointer):
        self.pointer = ffi.gc(pointer, lib.eb_encoder_free)
        self.dim = lib.eb_encoder_output_dim(self.pointer)

    def encode_texts(self, X):
        blob, texts = _utf8_batch(X)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        error = ffi.new("eb_error *")
        text_pointer = ffi.cast("const eb_text *", texts.ctypes.data)
        status = lib.eb_encoder_encode_texts(self.pointer, text_pointer, len(texts), output_matrix(out), error)
        del blob
        raise_for_status(status, _message(error))
        return out

    def encode_images(self, images, descriptors):
        """images: the uint8 arrays, kept alive here; descriptors: their eb_image records."""
        out = np.empty((len(descriptors), self.dim), dtype=np.float32)
        error = ffi.new("eb_error *")
        pointer = ffi.cast("const eb_image *", descriptors.ctypes.data)
        status = lib.eb_encoder_encode_images(self.pointer, pointer, len(descriptors), output_matrix(out), error)
        del images
        raise_for_status(status, _message(error))
        return out


def create_encoder(function_name, *args):
    """Call an eb_*_create/load function that ends in (..., eb_encoder **out, eb_error *err)."""
    created = ffi.new("eb_encoder **")
    error = ffi.new("eb_error *")
    status = getattr(lib, function_name)(*args, created, error)
    raise_for_status(status, _message(error))
    return NativeEncoder(created[0])


_ANALYZERS = {"char_wb": lib.EB_ANALYZER_CHAR_WB, "char": lib.EB_ANALYZER_CHAR, "word": lib.EB_ANALYZER_WORD}
_NORMS = {"l2": lib.EB_NORM_L2, "l1": lib.EB_NORM_L1, None: lib.EB_NORM_NONE}


# The largest value of a C size_t field: Python ints beyond it would fail with OverflowError in cffi.
_SIZE_MAX = (1 << (8 * ffi.sizeof("size_t"))) - 1


def _whole_number(name, value, low, high=_SIZE_MAX):
    """value as an int in [low, high]; high defaults to what the C size_t field holds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a whole number, not {type(value).__name__}")
    if not low <= value <= high:
        # The size_t limit only matters to a value above it; below low, the lower bound is the whole story.
        bound = f">= {low}" if value < low and high == _SIZE_MAX else f"between {low} and {high}"
        raise ValueError(f"{name} is {value}; it must be {bound}")
    return int(value)


def _choice(name, value, choices, described):
    """choices[value], with a ValueError naming the parameter for anything else (unhashable values included)."""
    try:
        return choices[value]
    except (KeyError, TypeError):
        raise ValueError(f"{name} is {value!r}; it must be {described}") from None


class HashingEncoder(EmbetterBase):
    """Dense feature hashing of character or word n-grams, equal to scikit-learn's HashingVectorizer.

    HashingEncoder(**settings).transform(texts) gives the same numbers as
    HashingVectorizer(**settings).transform(texts).toarray() in float32: the
    same n-grams, MurmurHash3 (32-bit, seed 0, signed), bucket |h| mod
    n_features, sign of h, then the row norm. Lowercasing follows Python's
    str.lower() (see docs/encoders.md for the code points where the C Unicode
    tables may disagree). It runs in C, several times faster than the Python
    original, and can split large batches across threads.

    Parameters:
        analyzer: "char_wb" (n-grams inside space-padded words), "char" or "word".
        ngram_range: (min_n, max_n); None means (2, 4) for the char analyzers and (1, 1) for "word".
        n_features: output width, 1 .. 2**31 - 1.
        alternate_sign: add -1 instead of +1 for features whose hash is negative.
        norm: "l2", "l1" or None.
        lowercase: lowercase the text first.
        n_threads: None (automatic: threads only for large batches) or a fixed count.
    """

    def __init__(self, analyzer="char_wb", ngram_range=None, n_features=1024, alternate_sign=True, norm="l2",
                 lowercase=True, n_threads=None):
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.n_features = n_features
        self.alternate_sign = alternate_sign
        self.norm = norm
        self.lowercase = lowercase
        self.n_threads = n_threads

    def _effective_ngram_range(self):
        if self.ngram_range is None:
            return (1, 1) if self.analyzer == "word" else (2, 4)
        try:
            low, high = self.ngram_range
        except (TypeError, ValueError):
            raise ValueError(f"ngram_range is {self.ngram_range!r}; it must be a pair (min_n, max_n)") from None
        low = _whole_number("ngram_range[0]", low, 1)
        high = _whole_number("ngram_range[1]", high, 1)
        if high < low:
            raise ValueError(f"ngram_range is {self.ngram_range!r}; min_n must not exceed max_n")
        return low, high

    def _encoder(self):
        analyzer = _choice("analyzer", self.analyzer, _ANALYZERS, "'char_wb', 'char' or 'word'")
        norm = _choice("norm", self.norm, _NORMS, "'l2', 'l1' or None")
        low, high = self._effective_ngram_range()
        params = lib.eb_hashing_default_params()
        params.analyzer = analyzer
        params.ngram_min = low
        params.ngram_max = high
        params.n_features = _whole_number("n_features", self.n_features, 1, 2**31 - 1)
        params.alternate_sign = bool(self.alternate_sign)
        params.norm = norm
        params.lowercase = bool(self.lowercase)
        params.n_threads = _thread_setting(self.n_threads)
        # Creating one is a single small allocation, so there is no state to keep or pickle.
        return create_encoder("eb_hashing_encoder_create", ffi.new("eb_hashing_params *", params), ffi.NULL)

    def transform(self, X: ArrayLike, y: Any = None) -> np.ndarray:
        """The n x n_features float32 matrix of the texts in X."""
        return self._encoder().encode_texts(X)


_FORMATS = {
    "auto": lib.EB_WORD_VECTORS_AUTO,
    "text": lib.EB_WORD_VECTORS_TEXT,
    "glove": lib.EB_WORD_VECTORS_GLOVE,
    "binary": lib.EB_WORD_VECTORS_BINARY,
}


class _LoadedOnDemand:
    """An encoder that reads its model on the first fit or transform and keeps it while the parameters that read
    it stay the same; pickles and clones hold only the parameters.

    Subclasses give _load_recipe(), which checks the parameters and returns (key, recipe), and _load(recipe),
    which reads the model, sets the fitted attributes and returns the NativeEncoder.
    """

    def _loaded(self):
        lock = self.__dict__.setdefault("_load_lock", threading.Lock())
        with lock:
            key, recipe = self._load_recipe()
            cached = self.__dict__.get("_native")
            if cached is not None and cached[0] == key:
                return cached[1]
            native = self._load(recipe)
            self.__dict__["_native"] = (key, native)
            return native

    def transform(self, X: ArrayLike, y: Any = None) -> np.ndarray:
        """The n x dim float32 matrix of the texts in X."""
        return self._loaded().encode_texts(X)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_native", None)
        state.pop("_load_lock", None)
        return state


class WordVectorEncoder(_LoadedOnDemand, EmbetterBase):
    """The mean of pre-trained static word vectors of a text's tokens.

    Reads word2vec/fastText text files (.vec, with a "count dim" first line),
    GloVe text files (no header) and word2vec binary files. A text is
    lowercased and split into runs of letters and digits; its vector is the
    mean of the vectors of the tokens in the vocabulary (matched exactly as
    the file spells them), a zero row when no token is known, then scaled to
    unit length if normalize. A malformed file raises ValueError naming the
    line (or byte offset, for binary files).

    The file is read on the first fit or transform and kept; pickles and
    clones hold only the parameters and read it again.

    Parameters:
        path: the vector file.
        normalize: L2-normalise every row (zero rows stay zero).
        format: "auto" (from the bytes), "text", "glove" or "binary".
        n_threads: None (automatic) or a fixed thread count for encoding.
    """

    def __init__(self, path, normalize=True, format="auto", n_threads=None):
        self.path = path
        self.normalize = normalize
        self.format = format
        self.n_threads = n_threads

    def _load_recipe(self):
        return (str(self.path), bool(self.normalize), self.format, self.n_threads), None

    def _load(self, recipe):
        params = lib.eb_word_vectors_default_params()
        params.format = _choice("format", self.format, _FORMATS, "'auto', 'text', 'glove' or 'binary'")
        params.normalize = bool(self.normalize)
        params.n_threads = _thread_setting(self.n_threads)
        path = str(self.path).encode("utf-8")
        # A file that cannot be read is a FileAccessError, an OSError, from the C status.
        native = create_encoder("eb_word_vectors_load", path, ffi.new("eb_word_vector_params *", params), ffi.NULL)
        self.vocab_size_ = lib.eb_word_vectors_vocab_size(native.pointer)
        self.dim_ = native.dim
        return native

    def fit(self, X: Any = None, y: Any = None) -> "WordVectorEncoder":
        """Reads the vector file (nothing is learned); returns self."""
        self._loaded()
        return self


class TextEncoder(_LoadedOnDemand, EmbetterBase):
    """model2vec static embeddings, read from a local model directory: embetter 0.9's TextEncoder without model2vec.

    A model2vec model is a directory with config.json, tokenizer.json and
    model.safetensors (what StaticModel.save_pretrained writes). A text is
    tokenised with the model's WordPiece tokenizer, [UNK] tokens are dropped,
    the token vectors are averaged and, when the model's config says
    normalize, scaled to unit length; the model's max_length truncation is
    applied as model2vec applies it. The rows equal StaticModel.encode's for
    float32 models. A text without known tokens is a row of zeros.

    Nothing is downloaded: `model` must be a local directory. To use a model
    from the Hugging Face hub (e.g. "minishlab/potion-base-8M"), save it once
    where the hub is reachable with
    model2vec.StaticModel.from_pretrained(name).save_pretrained(directory).
    Supported: WordPiece tokenizers and float32 embeddings; a Unigram or BPE
    tokenizer, other dtypes and vocabulary-quantized models raise ValueError
    naming what is unsupported.

    The model is read on the first fit or transform and kept; pickles and
    clones hold only the parameters and read it again.

    Parameters:
        model: path of the model2vec directory (embetter's parameter name; a hub
            name raises an error explaining how to get the files).
    """

    def __init__(self, model="minishlab/potion-base-8M"):
        self.model = model

    def _load_recipe(self):
        if not isinstance(self.model, (str, os.PathLike)):
            raise TypeError(
                f"model must be the path of a model2vec directory, not {type(self.model).__name__}; "
                "save a StaticModel with save_pretrained(directory) and pass the directory"
            )
        key = os.fspath(self.model)
        return key, key

    def _load(self, directory):
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"model {directory!r} is not a directory: models must be local, nothing is downloaded. "
                "Save a model2vec model once where the Hugging Face hub is reachable, e.g. "
                f"model2vec.StaticModel.from_pretrained({directory!r}).save_pretrained('DIR'), "
                "then pass TextEncoder(model='DIR')"
            )
        native = create_encoder("eb_static_encoder_create", directory.encode("utf-8"), ffi.NULL)
        self.vocab_size_ = lib.eb_static_encoder_vocab_size(native.pointer)
        self.dim_ = native.dim
        return native

    def fit(self, X: Any = None, y: Any = None) -> "TextEncoder":
        """Reads the model (nothing is learned); returns self."""
        self._loaded()
        return self


# The models scripts/fetch-models.sh can put into the cache; any other name must be a directory.
_FETCHABLE_MODELS = ("all-MiniLM-L6-v2", "bge-small-en-v1.5")
_FETCH_COMMAND = "bash scripts/fetch-models.sh {name}"


def model_cache_dir() -> Path:
    """Where named models live: $LIBEMBETTER_MODEL_CACHE, else ~/.cache/libembetter/models (as fetch-models.sh)."""
    configured = os.environ.get("LIBEMBETTER_MODEL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "libembetter" / "models"


class ModelFilesNotFoundError(FileAccessError, FileNotFoundError):
    """A model directory, or a file the model needs in it, is missing; the message says which and how to fetch it."""


class SentenceEncoder(_LoadedOnDemand, EmbetterBase):
    """Sentence embeddings from a BERT sentence-transformers model, computed in C without PyTorch.

    SentenceEncoder("all-MiniLM-L6-v2").transform(texts) gives what
    sentence-transformers' SentenceTransformer("all-MiniLM-L6-v2").encode(texts)
    gives, to float32 rounding (cosine >= 0.99999 per row in the tests): the
    same WordPiece tokens, truncation at the model's max_seq_length, pooling and
    normalisation as the model's module files say.

    Nothing is downloaded at run time. `name` is either a model in the cache
    directory ($LIBEMBETTER_MODEL_CACHE, else ~/.cache/libembetter/models), where
    `bash scripts/fetch-models.sh all-MiniLM-L6-v2` puts it, or the path of a
    local model directory in the sentence-transformers layout. Missing files
    raise ModelFilesNotFoundError (a FileNotFoundError and an EmbetterError)
    naming the file and the command that fetches it.

    The model is loaded on the first fit or transform and kept; pickles and
    clones hold only the parameters and load it again when used.

    Parameters (embetter 0.9's names where they mean the same):
        name: a cached model's name or a model directory.
        device: None or "cpu"; the encoder runs on the CPU only.
        quantize: False only; 0.9's int8 quantization is PyTorch's, and this encoder computes in float32.
        num_threads: None (automatic: every core for large batches) or a fixed thread count.
            OpenBLAS is held to one thread during transform, as the encoder's threads split the batch.
        batch_size: texts per forward pass; texts are grouped by length first.
    """

    def __init__(self, name="all-MiniLM-L6-v2", device=None, quantize=False, num_threads=None, batch_size=32):
        self.name = name
        self.device = device
        self.quantize = quantize
        self.num_threads = num_threads
        self.batch_size = batch_size

    def _model_dir(self):
        """(directory, fetchable model name or None) for self.name."""
        if not isinstance(self.name, (str, os.PathLike)):
            raise TypeError(f"name must be a model name or a directory path, not {type(self.name).__name__}")
        name = os.fspath(self.name)
        if name == "":
            raise ValueError("name is empty; give a model name such as 'all-MiniLM-L6-v2' or a directory")
        # sentence-transformers also accepts the hub spelling "sentence-transformers/<model>".
        short = name.removeprefix("sentence-transformers/")
        path = Path(name).expanduser()
        looks_like_path = os.sep in name and short == name or name.startswith((".", "~")) or path.is_dir()
        if looks_like_path:
            return path, path.name if path.name in _FETCHABLE_MODELS else None
        directory = model_cache_dir() / short
        if short not in _FETCHABLE_MODELS and not directory.is_dir():
            raise ModelFilesNotFoundError(
                f"name {name!r} is neither a directory nor a model in the cache {model_cache_dir()}; "
                f"scripts/fetch-models.sh fetches {', '.join(_FETCHABLE_MODELS)}"
            )
        return directory, short if short in _FETCHABLE_MODELS else None

    def _load_recipe(self):
        if self.device not in (None, "cpu"):
            raise ValueError(f"device is {self.device!r}; this encoder runs on the CPU only (None or 'cpu')")
        if self.quantize is not False:
            raise ValueError(f"quantize is {self.quantize!r}; this encoder computes in float32 and has no int8 "
                             "quantization (embetter 0.9's is PyTorch's): use quantize=False")
        params = lib.eb_sentence_encoder_default_params()
        params.batch_size = _whole_number("batch_size", self.batch_size, 1, lib.EB_SENTENCE_MAX_BATCH_SIZE)
        try:
            params.n_threads = _thread_setting(self.num_threads)
        except (TypeError, ValueError) as error:
            raise type(error)(str(error).replace("n_threads", "num_threads", 1)) from None
        directory, fetchable = self._model_dir()
        return (str(directory), params.batch_size, params.n_threads), (params, directory, fetchable)

    def _load(self, recipe):
        params, directory, fetchable = recipe
        try:
            native = create_encoder(
                "eb_sentence_encoder_create",
                os.fsencode(directory),
                ffi.new("eb_sentence_encoder_params *", params),
                ffi.NULL,
            )
        except FileAccessError as error:
            if fetchable is not None:
                how = "fetch the model files with: " + _FETCH_COMMAND.format(name=fetchable)
            else:
                how = "the directory must hold a sentence-transformers model (see docs/encoders.md)"
            raise ModelFilesNotFoundError(f"{error}; {how}") from None
        self.model_dir_ = str(directory)
        self.dim_ = native.dim
        return native

    def fit(self, X: Any = None, y: Any = None) -> "SentenceEncoder":
        """Loads the model (nothing is learned); returns self."""
        self._loaded()
        return self

    def transform(self, X: ArrayLike, y: Any = None) -> np.ndarray:
        """The n x dim float32 matrix of sentence embeddings of the texts in X."""
        native = self._loaded()
        # The encoder's own threads split the batch; OpenBLAS threads inside them would only compete for the
        # cores (and its thread hand-off costs more than the small per-head products gain).
        with single_blas_thread():
            return native.encode_texts(X)
