"""save(path) and load(path): a finetuner as the C library's model file plus a JSON sidecar.

The model file at `path` holds exactly the bytes of eb_*_save_to_buffer
(docs/model-format.md), so a C program loads it without Python. What only
Python knows goes to `<path>.json`: the estimator's class and parameters as the
user set them, classes_ (labels of any JSON-representable type, where C only
knows indices 0..k-1) and feature_names_in_. The sidecar records the SHA-256 of
the model bytes it was written with, computed in memory from the very bytes
written, so a pair that does not belong together (two saves to one path racing,
one file replaced, a save interrupted between the two files) is refused instead
of mixed.

Each file is written to a temporary file in the same directory, synced and
renamed over the destination, both renames under a lock on the directory that
loads share (so racing saves leave one save's pair); everything that can refuse
runs before either file is touched, including every check load() makes, on the bytes about to be
written. Readers never block and never read more than a bound known before
reading (docs/model-format.md, "From Python").

Nothing in either file is executed: the sidecar can only name one of the
finetuner classes that registered themselves with @persistable, and its values
are plain JSON, each checked for type and range before use.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import secrets
import stat
import warnings
from typing import Any, Iterator, Optional, TypeVar, overload

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from libembetter._binding import NativeModel, PathLike
from libembetter._errors import EmbetterError, error_for_status
from libembetter._native import lib

SIDECAR_FORMAT = "embetter-finetuner-metadata"
SIDECAR_VERSION = 1

# The largest sidecar load() reads: 1 MiB for the fixed fields, plus 64 KiB per class label and per
# feature name of the model it describes (known from the model file, read first). save() refuses a
# model whose sidecar would be larger, so it never writes one that load() refuses.
SIDECAR_BASE_BYTES = 1 << 20
SIDECAR_BYTES_PER_ITEM = 1 << 16

_FIELDS = ("format", "version", "estimator", "params", "classes", "n_features_in", "feature_names_in",
           "model_sha256")

# dtype kinds of classes_ stored as a JSON list: bool, signed and unsigned integers, floats, str, and
# object arrays whose items are each one of those.
_PLAIN_KINDS = "biufU"
_JSON_SCALARS = (bool, int, float, str)

# The classes a sidecar may name, by class name. Only classes that register
# themselves are saved or loaded, so a subclass (whose __init__ could differ)
# is refused rather than saved under its parent's name.
_ESTIMATORS: dict[str, type[BaseEstimator]] = {}

_Estimator = TypeVar("_Estimator", bound=type)
_Loaded = TypeVar("_Loaded")


def persistable(cls: _Estimator) -> _Estimator:
    """Class decorator: save() may write instances of cls and load() may rebuild them."""
    registered = _ESTIMATORS.setdefault(cls.__name__, cls)
    if registered is not cls:
        raise TypeError(f"two persistable finetuner classes are named {cls.__name__}: "
                        f"{registered.__module__} and {cls.__module__}")
    return cls


def file_path(path: Any) -> str:
    """path (str, bytes or os.PathLike of either) as a str; bytes are decoded as the OS does (os.fsdecode)."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path is a {type(path).__name__}; pass a str, bytes or os.PathLike path") from None
    path = os.fsdecode(path)
    if not path:
        raise ValueError("path is empty")
    if "\0" in path:
        raise ValueError(f"path {path!r} contains a NUL character")
    return path


def sidecar_path(path: PathLike) -> str:
    return file_path(path) + ".json"


def sidecar_limit(n_classes: int, n_features: int) -> int:
    """The most bytes a sidecar of a model with n_classes classes and n_features columns may take."""
    return SIDECAR_BASE_BYTES + SIDECAR_BYTES_PER_ITEM * (n_classes + n_features)


def _format_error(message: str) -> EmbetterError:
    """A ModelFormatError (a ValueError): what load and save raise for a file, or a state, load cannot take."""
    return error_for_status(lib.EB_ERR_FORMAT, message)


def _io_error(message: str) -> EmbetterError:
    """A FileAccessError (an OSError), as the C library's EB_ERR_IO."""
    return error_for_status(lib.EB_ERR_IO, message)


# ---- values <-> JSON ------------------------------------------------------------------------------------


def _plain(value):
    """A numpy scalar as the Python scalar it holds; other values unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _encode_random_state(value):
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.random.RandomState):
        name, keys, position, has_gauss, cached_gaussian = value.get_state()
        return {"RandomState": {"bit_generator": name, "keys": keys.tolist(), "position": int(position),
                                "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}}
    raise TypeError(f"random_state is a {type(value).__name__}; save() stores None, an int or a RandomState")


def _encode_params(estimator):
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "random_state":
            params[name] = _encode_random_state(value)
            continue
        value = _plain(value)
        if value is not None and not isinstance(value, _JSON_SCALARS):
            raise TypeError(f"parameter {name} is a {type(value).__name__}; save() stores numbers, booleans and None")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"parameter {name} is {value}; JSON has no NaN or infinity, so save() cannot store it")
        params[name] = value
    return params


_OTHER_LABELS = "Pickle the estimator (pickle or joblib) to keep other label types"


def _check_label(position: int, item: Any) -> None:
    """A label save() can write and load() reads back equal: finite numbers, booleans, str of Unicode scalars."""
    if isinstance(item, float) and not math.isfinite(item):
        raise ValueError(f"classes_[{position}] is {item}; JSON has no NaN or infinity, so save() cannot store it. "
                         + _OTHER_LABELS)
    if isinstance(item, str):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"classes_[{position}] holds a lone surrogate ({item[error.start]!r} at character "
                             f"{error.start}), which UTF-8 cannot encode, so save() cannot store it. "
                             + _OTHER_LABELS) from None


def _encode_classes(classes):
    classes = np.asarray(classes)
    if classes.dtype.kind in _PLAIN_KINDS:
        values = classes.tolist()
        for position, item in enumerate(values):
            _check_label(position, item)
        return {"dtype": classes.dtype.str, "values": values}
    if classes.dtype.kind == "O":
        values = [_plain(item) for item in classes]
        for position, item in enumerate(values):
            if not isinstance(item, _JSON_SCALARS):
                raise TypeError(
                    f"classes_[{position}] is a {type(item).__name__}; save() stores labels that are str, int, "
                    "float or bool. " + _OTHER_LABELS
                )
            _check_label(position, item)
        return {"dtype": "object", "values": values}
    raise TypeError(
        f"classes_ has dtype {classes.dtype}; save() stores labels that are str, int, float or bool. " + _OTHER_LABELS
    )


# ---- reading the JSON strictly ---------------------------------------------------------------------------


class _Unusable:
    """A JSON number Python must not take at face value (non-finite, or an integer of thousands of digits).

    The parser keeps it as this marker so that the field check holding it names the field.
    """

    def __init__(self, description: str) -> None:
        self.description = description


class _DuplicateKey(Exception):
    pass


def _describe(value: Any) -> str:
    """value for a message: short, and its type where that is the problem."""
    if isinstance(value, _Unusable):
        return value.description
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (a {'JSON null' if value is None else type(value).__name__})"


def _parse_int(text: str):
    # Python refuses integers past 4300 digits with a bare ValueError; no field needs more than 20.
    return _Unusable(f"an integer of {len(text)} digits") if len(text) > 40 else int(text)


def _parse_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _Unusable(f"the number {text[:30]} (not finite as a float)")


def _parse_constant(name: str):
    return _Unusable(f"{name} (JSON has no such number)")


def _object(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _parse_sidecar(raw: bytes, sidecar: str) -> Any:
    if raw.startswith(b"\xef\xbb\xbf"):
        raise _format_error(f"{sidecar}: starts with a UTF-8 byte-order mark; a sidecar is UTF-8 JSON without one")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _format_error(f"{sidecar}: byte {error.start} is not UTF-8 ({error.reason})") from None
    try:
        return json.loads(text, object_pairs_hook=_object, parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_parse_constant)
    except _DuplicateKey as error:
        raise _format_error(f"{sidecar}: field {error.args[0]!r} appears twice in one object") from None
    except RecursionError:
        raise _format_error(f"{sidecar} is not a sidecar: its JSON nests too deeply to parse (a sidecar nests "
                            "four levels)") from None
    except ValueError as error:  # json.JSONDecodeError is one
        raise _format_error(f"{sidecar} is not valid JSON: {error}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Fields:
    """Checks on the fields of one sidecar; every refusal names the file and the field."""

    def __init__(self, sidecar: str) -> None:
        self.sidecar = sidecar

    def fail(self, field: str, problem: str) -> EmbetterError:
        return _format_error(f"{self.sidecar}: {field} {problem}")

    def require(self, condition: bool, field: str, problem: str) -> None:
        if not condition:
            raise self.fail(field, problem)

    def integer(self, value: Any, field: str, low: int, high: int) -> int:
        self.require(_is_int(value) and low <= value <= high, field,
                     f"is {_describe(value)}; it must be an integer from {low} to {high}")
        return value

    def string(self, value: Any, field: str) -> str:
        self.require(isinstance(value, str), field, f"is {_describe(value)}; it must be a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise self.fail(field, f"holds a lone surrogate at character {error.start}") from None
        return value

    def mapping(self, value: Any, field: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
        self.require(isinstance(value, dict), field, f"is {_describe(value)}; it must be a JSON object")
        for key in value:
            self.require(key in required or key in optional, field, f"has an unknown field {key!r}")
        for key in required:
            self.require(key in value, field, f"lacks the field {key!r}")
        return value


def _decode_random_state(value: Any, fields: _Fields) -> Any:
    field = "params.random_state"
    if value is None:
        return None
    if _is_int(value):
        return fields.integer(value, field, 0, 2**32 - 1)
    if not isinstance(value, dict):
        raise fields.fail(field, f"is {_describe(value)}; it must be null, an integer or "
                                 "{\"RandomState\": {...}}")
    state = fields.mapping(fields.mapping(value, field, ("RandomState",))["RandomState"], f"{field}.RandomState",
                           ("bit_generator", "keys", "position", "has_gauss", "cached_gaussian"))
    field += ".RandomState"
    fields.require(state["bit_generator"] == "MT19937", f"{field}.bit_generator",
                   f"is {_describe(state['bit_generator'])}; it must be \"MT19937\"")
    keys = state["keys"]
    fields.require(isinstance(keys, list) and len(keys) == 624, f"{field}.keys",
                   f"is {_describe(keys)}; it must list 624 integers")
    for index, key in enumerate(keys):
        fields.integer(key, f"{field}.keys[{index}]", 0, 2**32 - 1)
    position = fields.integer(state["position"], f"{field}.position", 0, 624)
    has_gauss = fields.integer(state["has_gauss"], f"{field}.has_gauss", 0, 1)
    cached = state["cached_gaussian"]
    fields.require(isinstance(cached, (int, float)) and not isinstance(cached, bool), f"{field}.cached_gaussian",
                   f"is {_describe(cached)}; it must be a finite number")
    generator = np.random.RandomState()
    generator.set_state(("MT19937", np.array(keys, dtype=np.uint32), position, has_gauss, float(cached)))
    return generator


def _decode_params(value: Any, cls: type, fields: _Fields) -> dict[str, Any]:
    known = tuple(cls().get_params(deep=False))
    params = fields.mapping(value, "params", (), known)
    decoded = {}
    for name, item in params.items():
        if name == "random_state":
            decoded[name] = _decode_random_state(item, fields)
            continue
        fields.require(item is None or isinstance(item, _JSON_SCALARS), f"params.{name}",
                       f"is {_describe(item)}; parameters are numbers, booleans, strings or null")
        decoded[name] = item
    return decoded


def _decode_classes(value: Any, fields: _Fields) -> np.ndarray:
    encoded = fields.mapping(value, "classes", ("dtype", "values"))
    dtype_text = fields.string(encoded["dtype"], "classes.dtype")
    values = encoded["values"]
    fields.require(isinstance(values, list), "classes.values", f"is {_describe(values)}; it must be a JSON array")
    if dtype_text == "object":
        dtype = np.dtype(object)
        accepted: tuple[type, ...] = _JSON_SCALARS
    else:
        try:
            dtype = np.dtype(dtype_text)
        except (TypeError, ValueError):
            dtype = None
        fields.require(dtype is not None and dtype.kind in _PLAIN_KINDS and dtype.str == dtype_text,
                       "classes.dtype", f"is {dtype_text[:40]!r}; it must be \"object\" or the dtype string of "
                       "booleans, integers, floats or str (e.g. \"<i8\", \"<U4\")")
        accepted = {"b": (bool,), "i": (int,), "u": (int,), "f": (int, float), "U": (str,)}[dtype.kind]
    for index, item in enumerate(values):
        field = f"classes.values[{index}]"
        fields.require(isinstance(item, accepted) and (bool in accepted or not isinstance(item, bool)), field,
                       f"is {_describe(item)}; a class of dtype {dtype_text} must be "
                       f"{' or '.join(kind.__name__ for kind in accepted)}")
        if isinstance(item, str):
            fields.string(item, field)
            if dtype.kind == "U":
                fields.require(len(item) <= dtype.itemsize // 4, field, f"is longer than dtype {dtype_text} holds")
        if _is_int(item) and dtype.kind in "iu":
            info = np.iinfo(dtype)
            fields.integer(item, field, int(info.min), int(info.max))
    try:
        with np.errstate(over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            classes = np.array(values, dtype=dtype) if values else np.empty(0, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as error:
        raise fields.fail("classes.values", f"cannot be made an array of dtype {dtype_text}: {error}") from None
    if dtype.kind == "f" and not np.isfinite(classes).all():
        position = int(np.flatnonzero(~np.isfinite(classes))[0])
        raise fields.fail(f"classes.values[{position}]", f"is {_describe(values[position])}, beyond what dtype "
                                                         f"{dtype_text} holds")
    return classes


def _read_fields(metadata: Any, sidecar: str, path: str, data: bytes) -> tuple[_Fields, dict]:
    """The top level of a parsed sidecar, checked; refuses a sidecar that does not belong to data (the model)."""
    fields = _Fields(sidecar)
    if not isinstance(metadata, dict) or metadata.get("format") != SIDECAR_FORMAT:
        raise _format_error(f"{sidecar} is not an embetter finetuner sidecar (no \"format\": \"{SIDECAR_FORMAT}\")")
    version = metadata.get("version")
    fields.require(version == SIDECAR_VERSION and _is_int(version), "version",
                   f"is {_describe(version)}: this is sidecar version {version!r}; this embetter reads version "
                   f"{SIDECAR_VERSION}")
    fields.mapping(metadata, "the top-level object", _FIELDS)
    recorded = fields.string(metadata["model_sha256"], "model_sha256")
    if recorded != hashlib.sha256(data).hexdigest():
        raise _format_error(
            f"{sidecar} does not belong to {path}: the model file's SHA-256 differs from the one the sidecar "
            "recorded in model_sha256 (two saves to the same path raced, one of the files was replaced, or a save was "
            "interrupted); save the model again"
        )
    return fields, metadata


def _rebuild(metadata: dict, fields: _Fields, path: str, kind: str, native: NativeModel,
             expected_class: Optional[type]) -> Any:
    """The fitted estimator a checked sidecar and its C model describe; refuses any disagreement between them."""
    name = metadata["estimator"]
    cls = _ESTIMATORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise fields.fail("estimator", f"names {_describe(name)}, which is not an embetter finetuner")
    fields.require(cls._native_kind == kind, "estimator",
                   f"is {cls.__name__}, a {cls._native_kind} model, but the file holds a {kind}")
    if expected_class is not None and not issubclass(cls, expected_class):
        raise TypeError(f"{path} holds a {cls.__name__}, not a {expected_class.__name__}; "
                        "libembetter.finetune.load(path) loads any finetuner")
    params = _decode_params(metadata["params"], cls, fields)
    estimator = cls(**params)
    try:
        estimator._validate_params()
    except (TypeError, ValueError) as error:
        raise fields.fail("params", f"are refused: {error}") from None
    classes = _decode_classes(metadata["classes"], fields)
    n_features = fields.integer(metadata["n_features_in"], "n_features_in", 1, 2**63 - 1)
    feature_names = metadata["feature_names_in"]
    if not native.is_fitted:
        raise _format_error(f"{path} holds an unfitted model, which save() never writes; {fields.sidecar} cannot "
                            "describe it")
    fields.require(len(classes) == native.n_classes, "classes.values",
                   f"lists {len(classes)} classes, the model was fitted on {native.n_classes}")
    try:
        ordered = np.array_equal(np.unique(classes), classes)
    except TypeError:  # labels of types that do not compare, e.g. 1 and "1"
        raise fields.fail("classes.values", "holds labels that cannot be compared with each other (e.g. numbers "
                                            "and strings); fit needs one label type") from None
    fields.require(ordered, "classes.values", "must be distinct and sorted, as fit stores them")
    fields.require(n_features == native.n_features, "n_features_in",
                   f"is {n_features!r}, the model was fitted on {native.n_features} columns")
    problem = estimator._hidden_dim_problem(native)
    if problem is not None:
        raise _format_error(f"{fields.sidecar}: params: {problem}")
    if feature_names is not None:
        fields.require(isinstance(feature_names, list) and len(feature_names) == native.n_features, "feature_names_in",
                       f"must list {native.n_features} strings")
        for index, feature in enumerate(feature_names):
            fields.string(feature, f"feature_names_in[{index}]")
    estimator.classes_ = classes
    estimator.n_features_in_ = native.n_features
    if feature_names is not None:
        estimator.feature_names_in_ = np.array(feature_names, dtype=object)
    estimator._native = native
    return estimator


# ---- files --------------------------------------------------------------------------------------------------

_FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _open_regular(path: str) -> tuple[int, int]:
    """(descriptor, size) of the regular file at path, opened without blocking; anything else is refused.

    O_NONBLOCK makes open return at once on a FIFO that no one writes (a plain open waits forever), and
    the type comes from the opened descriptor, so the file checked is the file read.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            what = next((name for test, name in _FILE_TYPES if test(info.st_mode)), "not a regular file")
            raise _io_error(f"{path} is not a regular file: it is {what}")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor, info.st_size


def _read_exactly(descriptor: int, size: int, path: str, to_end: bool = True) -> bytes:
    """size bytes from descriptor, refusing a file that ends early or (when to_end) goes on past them."""
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = os.read(descriptor, min(remaining, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    if remaining != 0 or (to_end and os.read(descriptor, 1)):
        raise _io_error(f"{path} changed size while being read")
    return b"".join(chunks)


def _read_model_file(path: str) -> tuple[str, bytes]:
    """(kind, bytes) of the model file at path, reading no more than its header announces."""
    descriptor, size = _open_regular(path)
    try:
        head = _read_exactly(descriptor, min(size, lib.EB_MODEL_HEADER_SIZE), path, to_end=False)
        try:
            kind, payload_size = NativeModel.saved_header(head)
        except EmbetterError as error:
            raise error_for_status(error.code, f"{path}: {error}") from None
        if size - len(head) != payload_size:
            raise _format_error(f"{path}: saved model: the header announces {payload_size} payload bytes, the file "
                                f"holds {size - len(head)} after the header")
        return kind, head + _read_exactly(descriptor, payload_size, path)
    finally:
        os.close(descriptor)


def _read_sidecar(sidecar: str, native: NativeModel) -> bytes:
    try:
        descriptor, size = _open_regular(sidecar)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{sidecar} is missing: load() needs the JSON file that save() writes next to the model "
            "(labels, feature names and parameters live there)"
        ) from None
    try:
        limit = sidecar_limit(native.n_classes, native.n_features)
        if size > limit:
            raise _format_error(f"{sidecar} is {size} bytes, more than the {limit} a sidecar of a model with "
                                f"{native.n_classes} classes and {native.n_features} features may take")
        return _read_exactly(descriptor, size, sidecar)
    finally:
        os.close(descriptor)


def _write_temporary(path: str, data: bytes) -> str:
    """data in a new file next to path, synced; its name. A failure removes it.

    The new file is created with O_EXCL and mode 0666, so the process's umask gives it the permissions of any
    new file (mkstemp's 0600 would need a chmod, and reading the umask is not thread-safe).
    """
    for _ in range(64):
        temporary = f"{path}.tmp-{secrets.token_hex(8)}"
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as error:
            raise _io_error(f"cannot create a temporary file next to {path}: {error.strerror}") from None
    else:
        raise _io_error(f"cannot create a temporary file next to {path}: 64 names taken")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except BaseException as error:
        _remove_quietly(temporary)
        if isinstance(error, OSError) and not isinstance(error, EmbetterError):
            raise _io_error(f"cannot write {path}: {error.strerror}") from None
        raise
    return temporary


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def _pair_locked(path: str, exclusive: bool) -> Iterator[None]:
    """The directory of path locked while a save swaps in its two files (exclusive) or a load reads them (shared).

    Each file is replaced atomically on its own; the lock makes the pair one step, so racing saves leave both
    files of one save, and a load never reads one save's model with another's sidecar. flock on the directory
    needs no file of its own, is held for two renames or two bounded reads, and ends with the process. Where
    the directory cannot be opened (the load then names the missing file) or the file system has no flock, the
    pair goes unlocked and the sidecar's hash still refuses a mixed pair.
    """
    directory = None
    try:
        directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(directory, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    except OSError:
        pass
    try:
        yield
    finally:
        if directory is not None:
            os.close(directory)  # releases the lock


def _write_pair(path: str, data: bytes, sidecar: str, encoded: bytes) -> None:
    """Both files replaced, as the C save replaces one: new files synced, renamed over the old, directory synced."""
    temporaries = []
    try:
        temporaries.append(_write_temporary(path, data))
        temporaries.append(_write_temporary(sidecar, encoded))
        with _pair_locked(path, exclusive=True):
            for temporary, destination in zip(temporaries, (path, sidecar)):
                os.replace(temporary, destination)
        temporaries = []
    except OSError as error:
        if isinstance(error, EmbetterError):
            raise
        raise _io_error(f"cannot write {path}: {error.strerror}") from None
    finally:
        for temporary in temporaries:
            _remove_quietly(temporary)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save(estimator: Any, path: PathLike) -> None:
    """Write a fitted finetuner to path (the C model format) and path + ".json" (what only Python knows)."""
    path = file_path(path)
    sidecar = path + ".json"
    native = getattr(estimator, "_native", None)
    if native is None:
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; save() writes a learned model. "
            "An unfitted estimator is just its parameters: keep get_params(), or pickle it"
        )
    name = type(estimator).__name__
    if _ESTIMATORS.get(name) is not type(estimator):
        raise TypeError(f"save() stores embetter's own finetuner classes, not the subclass {type(estimator).__qualname__}")
    # Everything that can refuse runs before either file is touched.
    problem = estimator._hidden_dim_problem(native)
    if problem is not None:
        raise ValueError(f"cannot save: {problem}")
    data = native.to_bytes()
    metadata = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "estimator": name,
        "params": _encode_params(estimator),
        "classes": _encode_classes(estimator.classes_),
        "n_features_in": int(estimator.n_features_in_),
        "feature_names_in": (
            [str(feature) for feature in estimator.feature_names_in_] if hasattr(estimator, "feature_names_in_") else None
        ),
        # The hash of the bytes written below, never of what is on disk afterwards: another save to the same
        # path may have replaced the file by then, and hashing that would certify a mixed pair.
        "model_sha256": hashlib.sha256(data).hexdigest(),
    }
    try:
        encoded = (json.dumps(metadata, indent=1, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as error:
        raise ValueError(f"cannot save: the sidecar cannot hold the estimator's state: {error}") from None
    limit = sidecar_limit(native.n_classes, native.n_features)
    if len(encoded) > limit:
        raise ValueError(f"cannot save: the sidecar would take {len(encoded)} bytes, more than the {limit} load() "
                         "reads for this model; shorten the class labels or feature names")
    # load() runs on exactly what is about to be written, so save never writes a pair load refuses.
    kind, _ = NativeModel.saved_header(data)
    checked_native = NativeModel.from_bytes(kind, data)
    fields, parsed = _read_fields(_parse_sidecar(encoded, sidecar), sidecar, path, data)
    _rebuild(parsed, fields, path, kind, checked_native, None)
    _write_pair(path, data, sidecar, encoded)


@overload
def load(path: PathLike) -> BaseEstimator: ...


@overload
def load(path: PathLike, expected_class: type[_Loaded]) -> _Loaded: ...


def load(path: PathLike, expected_class: Optional[type[Any]] = None) -> Any:
    """A fitted finetuner from a model file and its sidecar written by save(); an instance of expected_class if given."""
    path = file_path(path)
    sidecar = path + ".json"
    with _pair_locked(path, exclusive=False):
        kind, data = _read_model_file(path)
        try:
            native = NativeModel.from_bytes(kind, data)
        except EmbetterError as error:
            raise error_for_status(error.code, f"{path}: {error}") from None
        raw_sidecar = _read_sidecar(sidecar, native)
    fields, metadata = _read_fields(_parse_sidecar(raw_sidecar, sidecar), sidecar, path, data)
    return _rebuild(metadata, fields, path, kind, native, expected_class)


def check_unpickled(estimator: Any, native: NativeModel) -> None:
    """Refuse a pickle whose C model disagrees with its Python attributes, as load() refuses such a sidecar."""
    where = f"unpickling a {type(estimator).__name__}"
    if not hasattr(estimator, "classes_") or not hasattr(estimator, "n_features_in_"):
        raise _format_error(f"{where}: the pickle holds a fitted C model but no classes_ or n_features_in_; "
                            "it was altered or made by other code")
    classes = np.asarray(estimator.classes_)
    if classes.ndim != 1 or len(classes) != native.n_classes:
        raise _format_error(f"{where}: classes_ lists {classes.size} labels, the C model was fitted on "
                            f"{native.n_classes} classes; the pickle was altered or mixes two models")
    if estimator.n_features_in_ != native.n_features:
        raise _format_error(f"{where}: n_features_in_ is {estimator.n_features_in_!r}, the C model was fitted on "
                            f"{native.n_features} columns; the pickle was altered or mixes two models")
    problem = estimator._hidden_dim_problem(native)
    if problem is not None:
        raise _format_error(f"{where}: {problem}")
