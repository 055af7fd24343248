"""Lite text embeddings: TF-IDF followed by TruncatedSVD, learned and stored as in embetter 0.9.

learn_lite_text_embeddings and LiteTextEncoder keep embetter 0.9's signatures and
return the same scikit-learn Pipeline(TfidfVectorizer, TruncatedSVD), with the
inverse document frequencies and the SVD components held as float16 when lite.
scikit-learn does all the numerics.

What differs is the file. embetter 0.9 writes a skops file and reads it with
trusted=True, which lets the file run code on load. This file holds nothing but
data: a zip archive with one JSON member (format, settings and vocabulary) and
.npy arrays, read with allow_pickle=False. Every field is checked on load, and an
error names the file and the field. Callable settings (a custom tokenizer,
preprocessor or analyzer) are code, so they cannot be saved.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import numbers
import os
import re
import secrets
import zipfile
import zlib
from typing import Any, Iterable

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline, make_pipeline

__all__ = ["learn_lite_text_embeddings", "LiteTextEncoder"]

FORMAT = "libembetter-lite-text-embeddings"
FORMAT_VERSION = 1
SETTINGS_MEMBER = "lite-text-embeddings.json"
# Fitted arrays: member name -> attribute on the pipeline step that owns it.
_SVD_ARRAYS = {
    "components.npy": "components_",
    "explained_variance.npy": "explained_variance_",
    "explained_variance_ratio.npy": "explained_variance_ratio_",
    "singular_values.npy": "singular_values_",
}
IDF_MEMBER = "idf.npy"
_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


class _Invalid(ValueError):
    """A field of a lite embedding file that fails its check; the loader adds the file's name."""


# ---- the settings a file may hold, each with the check of its value ----------------------------------------------


def _one_of(*choices):
    def check(value):
        if not any(value == choice and type(value) is type(choice) for choice in choices):
            raise _Invalid(f"is {value!r}; it must be one of {list(choices)!r}")
        return value

    return check


def _boolean(value):
    if not isinstance(value, bool):
        raise _Invalid(f"is {value!r}; it must be true or false")
    return value


def _string(value):
    if not isinstance(value, str):
        raise _Invalid(f"is {value!r}; it must be a string")
    return value


def _whole(low, allow_none=False):
    def check(value):
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _Invalid(f"is {value!r}; it must be a whole number >= {low}" + (" or null" if allow_none else ""))
        return value

    return check


def _non_negative_number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _Invalid(f"is {value!r}; it must be a finite number >= 0")
    return value


def _document_frequency(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _Invalid(f"is {value!r}; it must be a count (whole number) or a fraction between 0 and 1")
    if isinstance(value, float) and value > 1:
        raise _Invalid(f"is {value!r}; a fraction of documents must be between 0 and 1")
    return value


def _no_code(value):
    if value is not None:
        raise _Invalid(f"is {value!r}; it must be null (custom functions cannot be stored)")
    return None


def _regex_or_none(value):
    if value is None:
        return None
    _string(value)
    try:
        re.compile(value)
    except re.error as error:
        raise _Invalid(f"is {value!r}, not a regular expression: {error}") from None
    return value


def _stop_words(value):
    if value is None or value == "english":
        return value
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        raise _Invalid(f"is {value!r}; it must be null, \"english\" or a list of strings")
    return value


def _ngram_range(value):
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in value) or value[0] > value[1]):
        raise _Invalid(f"is {value!r}; it must be [min_n, max_n], whole numbers with 1 <= min_n <= max_n")
    return tuple(value)


def _dtype(value):
    if value not in ("float32", "float64"):
        raise _Invalid(f"is {value!r}; it must be \"float32\" or \"float64\"")
    return np.dtype(value).type


_TFIDF_FIELDS = {
    "input": _one_of("content", "filename", "file"),
    "encoding": _string,
    "decode_error": _one_of("strict", "ignore", "replace"),
    "strip_accents": _one_of(None, "ascii", "unicode"),
    "lowercase": _boolean,
    "preprocessor": _no_code,
    "tokenizer": _no_code,
    "analyzer": _one_of("word", "char", "char_wb"),
    "stop_words": _stop_words,
    "token_pattern": _regex_or_none,
    "ngram_range": _ngram_range,
    "max_df": _document_frequency,
    "min_df": _document_frequency,
    "max_features": _whole(1, allow_none=True),
    "binary": _boolean,
    "dtype": _dtype,
    "norm": _one_of("l1", "l2", None),
    "use_idf": _boolean,
    "smooth_idf": _boolean,
    "sublinear_tf": _boolean,
}
_SVD_FIELDS = {
    "n_components": _whole(1),
    "algorithm": _one_of("randomized", "arpack"),
    "n_iter": _whole(0),
    "n_oversamples": _whole(0),
    "power_iteration_normalizer": _one_of("auto", "QR", "LU", "none"),
    "random_state": _whole(0, allow_none=True),
    "tol": _non_negative_number,
}


# ---- learning ----------------------------------------------------------------------------------------------------


def _split_settings(kwargs):
    """kwargs shared out between TfidfVectorizer and TruncatedSVD, by the parameters each takes.

    embetter 0.9 passes every keyword to both, so in practice none could be used there;
    sending each where it belongs accepts everything 0.9 did and makes the rest usable.
    """
    tfidf_names = set(TfidfVectorizer().get_params())
    svd_names = set(TruncatedSVD().get_params()) - {"n_components"}
    tfidf, svd = {}, {}
    for name, value in kwargs.items():
        if name == "n_components":
            raise TypeError("n_components is set by dim; pass dim instead")
        if name in tfidf_names:
            tfidf[name] = value
        elif name in svd_names:
            svd[name] = value
        else:
            raise TypeError(
                f"learn_lite_text_embeddings got an unexpected keyword argument {name!r}; keywords go to "
                f"TfidfVectorizer ({', '.join(sorted(tfidf_names))}) or TruncatedSVD ({', '.join(sorted(svd_names))})"
            )
    return tfidf, svd


def learn_lite_text_embeddings(
    text_stream: Iterable[str], dim: int = 300, lite: bool = True, path: str | os.PathLike | None = None, **kwargs: Any
) -> Pipeline:
    """Learn dense text embeddings: TF-IDF of the texts, reduced to dim columns by TruncatedSVD.

    Parameters:
        text_stream: an iterable of strings (read twice through itertools.tee, so a generator works).
        dim: the number of output columns (TruncatedSVD's n_components).
        lite: store the IDF weights and the SVD components as float16, which quarters the file.
        path: where to save the result (a file LiteTextEncoder reads), or None not to save.
        **kwargs: settings of TfidfVectorizer (ngram_range, min_df, analyzer, ...) and of
            TruncatedSVD (random_state, n_iter, algorithm, ...), each sent to the one that takes it.

    Returns the fitted Pipeline(TfidfVectorizer, TruncatedSVD), as embetter 0.9 does.
    """
    if not isinstance(lite, (bool, np.bool_)):
        raise TypeError(f"lite must be True or False, not {type(lite).__name__}")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be None or a file path, not {type(path).__name__}")
    if isinstance(text_stream, (str, bytes)):
        raise TypeError("text_stream is a single string; pass an iterable of strings")
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral) or dim < 1:
        raise ValueError(f"dim is {dim!r}; it must be a whole number >= 1")
    if path is not None:
        _target_directory(path)  # before fitting, which can take long
    tfidf_settings, svd_settings = _split_settings(kwargs)
    first_pass, second_pass = itertools.tee(text_stream)
    tfidf = TfidfVectorizer(**tfidf_settings).fit(first_pass)
    X = tfidf.transform(second_pass)
    if dim > X.shape[1]:
        raise ValueError(
            f"dim is {dim}, but the texts hold only {X.shape[1]} distinct terms; dim can be at most that "
            "(and must be less for algorithm='arpack')"
        )
    if lite and tfidf.use_idf:
        tfidf.idf_ = tfidf.idf_.astype(np.float16)
    svd = TruncatedSVD(n_components=dim, **svd_settings).fit(X)
    if lite:
        svd.components_ = svd.components_.astype(np.float16)
    pipeline = make_pipeline(tfidf, svd)
    if path is not None:
        _save(pipeline, bool(lite), path)
    return pipeline


# ---- the file ----------------------------------------------------------------------------------------------------


def _settings_document(tfidf, svd, lite):
    tfidf_params = tfidf.get_params()
    for name in ("preprocessor", "tokenizer", "analyzer", "strip_accents"):  # the settings that may be functions
        if callable(tfidf_params[name]):
            raise ValueError(f"{name} is a function; a lite embedding file holds no code, so it cannot be saved")
    stored_tfidf = {name: tfidf_params[name] for name in _TFIDF_FIELDS}
    stored_tfidf["ngram_range"] = list(stored_tfidf["ngram_range"])
    stored_tfidf["dtype"] = np.dtype(stored_tfidf["dtype"]).name
    stop_words = stored_tfidf["stop_words"]
    if stop_words is not None and stop_words != "english":
        stored_tfidf["stop_words"] = [str(word) for word in stop_words]
    for name in ("max_df", "min_df"):
        value = stored_tfidf[name]
        stored_tfidf[name] = int(value) if isinstance(value, numbers.Integral) else float(value)
    svd_params = svd.get_params()
    stored_svd = {name: svd_params[name] for name in _SVD_FIELDS}
    if not isinstance(stored_svd["random_state"], numbers.Integral):
        stored_svd["random_state"] = None  # a RandomState object has no faithful JSON form; it matters only to fit
    stored_svd["random_state"] = None if stored_svd["random_state"] is None else int(stored_svd["random_state"])
    terms = sorted(tfidf.vocabulary_, key=tfidf.vocabulary_.__getitem__)
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "lite": lite,
        "tfidf": stored_tfidf,
        "svd": stored_svd,
        "vocabulary": terms,
    }


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _target_directory(path):
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {os.fspath(path)}: there is no directory {directory}")
    return directory


def _save(pipeline, lite, path):
    tfidf, svd = pipeline[0], pipeline[-1]
    members = {SETTINGS_MEMBER: json.dumps(_settings_document(tfidf, svd, lite), ensure_ascii=False).encode("utf-8")}
    if tfidf.use_idf:
        idf = np.asarray(tfidf.idf_)
        # scikit-learn 1.2 hands idf_ back as float64 whatever was stored; the values are float16's, so this is exact.
        members[IDF_MEMBER] = _npy_bytes(idf.astype(np.float16) if lite else idf)
    for member, attribute in _SVD_ARRAYS.items():
        members[member] = _npy_bytes(getattr(svd, attribute))
    path = os.fspath(path)
    directory = _target_directory(path)
    # Written beside the target and renamed over it, so a failure never leaves half a file under that name.
    # open(..., "xb") rather than mkstemp: the file gets the permissions the umask gives, not 0600.
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "xb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, data in members.items():
                archive.writestr(member, data)
        # Read back with the loader's checks, so a file that could not be loaded is never left under that name
        # (e.g. NaN in explained_variance_ratio_, which TruncatedSVD gives texts that are all alike).
        try:
            _load(temporary)
        except ValueError as error:
            message = str(error).removeprefix(f"{temporary}: ")
            raise ValueError(f"{path}: these embeddings cannot be saved faithfully: {message}") from None
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _read_settings(archive):
    try:
        raw = archive.read(SETTINGS_MEMBER)
    except KeyError:
        raise _Invalid(
            f"has no member {SETTINGS_MEMBER}, so it is not a lite text embedding file written by libembetter "
            "(embetter 0.9's skops files are not read, since loading them can run code: learn the embeddings "
            "again with learn_lite_text_embeddings)"
        ) from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise _Invalid(f"member {SETTINGS_MEMBER} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise _Invalid(f"member {SETTINGS_MEMBER} must hold a JSON object")
    expected = {"format", "version", "lite", "tfidf", "svd", "vocabulary"}
    for key in sorted(expected - set(document)):
        raise _Invalid(f"field {key} is missing")
    for key in sorted(set(document) - expected):
        raise _Invalid(f"field {key} is not a field of this format")
    if document["format"] != FORMAT:
        raise _Invalid(f"field format is {document['format']!r}; expected {FORMAT!r}")
    if document["version"] != FORMAT_VERSION or isinstance(document["version"], bool):
        raise _Invalid(f"field version is {document['version']!r}; this libembetter reads version {FORMAT_VERSION}")
    lite = document["lite"]
    if not isinstance(lite, bool):
        raise _Invalid(f"field lite is {lite!r}; it must be true or false")
    settings = {}
    for section, fields in (("tfidf", _TFIDF_FIELDS), ("svd", _SVD_FIELDS)):
        stored = document[section]
        if not isinstance(stored, dict):
            raise _Invalid(f"field {section} must be a JSON object")
        for key in sorted(set(fields) - set(stored)):
            raise _Invalid(f"field {section}.{key} is missing")
        for key in sorted(set(stored) - set(fields)):
            raise _Invalid(f"field {section}.{key} is not a setting of this format")
        checked = {}
        for key, check in fields.items():
            try:
                checked[key] = check(stored[key])
            except _Invalid as error:
                raise _Invalid(f"field {section}.{key} {error}") from None
        settings[section] = checked
    terms = document["vocabulary"]
    if not isinstance(terms, list) or not terms:
        raise _Invalid("field vocabulary must be a non-empty list of terms")
    for position, term in enumerate(terms):
        if not isinstance(term, str):
            raise _Invalid(f"field vocabulary[{position}] is {term!r}; every term must be a string")
    vocabulary = {term: position for position, term in enumerate(terms)}
    if len(vocabulary) != len(terms):
        seen = set()
        for position, term in enumerate(terms):
            if term in seen:
                raise _Invalid(f"field vocabulary[{position}] repeats the term {term!r}")
            seen.add(term)
    return lite, settings, vocabulary


def _read_array(archive, member, shape, lite_dtype):
    try:
        raw = archive.read(member)
    except KeyError:
        raise _Invalid(f"has no member {member}") from None
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise _Invalid(
                f"member {member} holds Python objects (a pickle); they are refused because loading them can run code"
            ) from None
        raise _Invalid(f"member {member} is not a readable .npy array: {error}") from None
    except (OSError, EOFError) as error:
        raise _Invalid(f"member {member} is not a readable .npy array: {error}") from None
    if not isinstance(array, np.ndarray):
        raise _Invalid(f"member {member} is not a single .npy array")
    if array.dtype.type not in _FLOAT_DTYPES:
        raise _Invalid(f"member {member} has dtype {array.dtype}; it must be float16, float32 or float64")
    if lite_dtype is not None and array.dtype != lite_dtype:
        raise _Invalid(f"member {member} has dtype {array.dtype}; a file with lite true stores it as {lite_dtype}")
    if array.shape != shape:
        raise _Invalid(f"member {member} has shape {array.shape}; the settings and vocabulary call for {shape}")
    if not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise _Invalid(f"member {member} holds {array[index]} at {index}; every value must be finite")
    return array


def _load(path):
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such lite text embedding file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path} is a directory, not a lite text embedding file") from None
    except zipfile.BadZipFile:
        raise ValueError(f"{path} is not a lite text embedding file (not a zip archive)") from None
    try:
        with archive:
            lite, settings, vocabulary = _read_settings(archive)
            n_terms, n_components = len(vocabulary), settings["svd"]["n_components"]
            tfidf = TfidfVectorizer(**settings["tfidf"])
            tfidf.vocabulary_ = vocabulary
            tfidf.fixed_vocabulary_ = False
            if settings["tfidf"]["use_idf"]:
                tfidf.idf_ = _read_array(archive, IDF_MEMBER, (n_terms,), np.float16 if lite else None)
            elif IDF_MEMBER in archive.namelist():
                raise _Invalid(f"has a member {IDF_MEMBER} although field tfidf.use_idf is false")
            svd = TruncatedSVD(**settings["svd"])
            for member, attribute in _SVD_ARRAYS.items():
                is_components = attribute == "components_"
                shape = (n_components, n_terms) if is_components else (n_components,)
                lite_dtype = np.float16 if lite and is_components else None
                setattr(svd, attribute, _read_array(archive, member, shape, lite_dtype))
            svd.n_features_in_ = n_terms
    except _Invalid as error:
        raise ValueError(f"{path}: {error}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is a damaged zip archive: {error}") from None
    except (NotImplementedError, RuntimeError) as error:  # zipfile's words for unknown compression, encryption
        raise ValueError(f"{path}: a member cannot be read: {error}") from None
    return make_pipeline(tfidf, svd)


def LiteTextEncoder(path: str | os.PathLike) -> Pipeline:
    """The Pipeline(TfidfVectorizer, TruncatedSVD) that learn_lite_text_embeddings saved at path.

    A function named like a class, as in embetter 0.9, so that it reads like one in a pipeline:
    make_pipeline(ColumnGrabber("text"), LiteTextEncoder("embeddings.lite")).
    Raises FileNotFoundError for a missing file and ValueError naming the file and the field for
    a file that is damaged, of another format, or holds anything but plain data.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, not {type(path).__name__}")
    return _load(path)
