"""save(path) and load(path): a finetuner as one C model file, which also carries its labels and settings.

The model file at `path` holds exactly the bytes of eb_finetuner_save_to_buffer (docs/model-format.md), so a
C program loads it without Python. The classes' names go in the file's class labels (eb_class_labels:
integers or UTF-8 strings), which C programs read with eb_finetuner_class_labels. What only Python knows goes
in the finetuner's metadata (eb_finetuner_set_metadata), as strict JSON: the estimator's class and
parameters as the user set them, the dtype of classes_ (and the labels themselves when the file's label
types cannot hold them: booleans and floats), n_features_in_ and feature_names_in_. Pickles (pickle,
joblib, copy.deepcopy) carry the same bytes.

save() builds the file's finetuner aside (a copy of the fitted one with labels and metadata), runs on it every
check load() makes, and every check of the C library (eb_finetuner_check_savable), and only then lets the C
library write the file, atomically: anything that can refuse does so before the destination is touched.

load() reads files of format version 1 too: libembetter 0.1 kept the Python side in a JSON sidecar,
`<path>.json`, which is read (strictly, and only when it records the SHA-256 of the model bytes) when the
file is of version 1. A file without metadata (saved by a C program) loads as the estimator of its kind,
with parameters from the C model's and classes_ from its labels, or 0 .. n_classes-1.

Nothing in a file is executed: the metadata can only name one of the finetuner classes that registered
themselves with @persistable, and its values are plain JSON, each checked for type and range before use.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import warnings
from typing import Any, Optional, TypeVar, overload

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from libembetter._binding import NativeModel, PathLike
from libembetter._errors import EmbetterError, error_for_status
from libembetter._native import lib

METADATA_FORMAT = "embetter-finetuner-metadata"
# Version 1 is the sidecar libembetter 0.1 wrote next to a format-1 model file; version 2 lives in the file.
SIDECAR_FORMAT = METADATA_FORMAT
SIDECAR_VERSION = 1
METADATA_VERSION = 2

# The largest sidecar load() reads: 1 MiB for the fixed fields, plus 64 KiB per class label and per
# feature name of the model it describes (known from the model file, read first).
SIDECAR_BASE_BYTES = 1 << 20
SIDECAR_BYTES_PER_ITEM = 1 << 16

_FIELDS = ("format", "version", "estimator", "params", "classes", "n_features_in", "feature_names_in",
           "model_sha256")
_METADATA_FIELDS = ("format", "version", "estimator", "params", "classes", "n_features_in", "feature_names_in")

# dtype kinds of classes_ stored as a JSON list: bool, signed and unsigned integers, floats, str, and
# object arrays whose items are each one of those.
_PLAIN_KINDS = "biufU"
_JSON_SCALARS = (bool, int, float, str)
_INT64 = np.iinfo(np.int64)

# The classes a file may name, by class name. Only classes that register
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


def _class_for_kind(kind: str) -> type:
    """The estimator a file of kind without Python metadata loads as: the registered class that says so."""
    for cls in _ESTIMATORS.values():
        if cls._native_kind == kind and cls.__dict__.get("_loads_c_files", False):
            return cls
    raise _format_error(f"no finetuner class loads {kind} models")  # pragma: no cover - every kind has one


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


def sidecar_limit(n_classes: int, n_features: int) -> int:
    """The most bytes a version-1 sidecar of a model with n_classes classes and n_features columns may take."""
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
            raise TypeError(f"parameter {name} is a {type(value).__name__}; save() stores numbers, booleans, "
                            "strings and None")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"parameter {name} is {value}; JSON has no NaN or infinity, so save() cannot store it")
        params[name] = value
    return params


_OTHER_LABELS = "Pickle the estimator (pickle or joblib) to keep other label types"


class UnsavableLabels(TypeError):
    """classes_ holds labels a model file cannot carry (bytes, datetimes, other objects); pickle keeps them."""


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


def _is_int64(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) and _INT64.min <= item <= _INT64.max


def split_classes(classes) -> tuple[Optional[list], dict]:
    """(the class names for the C file, the "classes" field of the metadata) for a fitted classes_.

    Integers that fit int64 and str labels become the file's class labels (EB_LABELS_INT64 / EB_LABELS_UTF8),
    and the metadata keeps only their dtype. Booleans, floats (and integers past int64) have no C label type:
    the file names no classes (EB_LABELS_NONE) and the metadata lists them as JSON with their dtype, as the
    0.1 sidecar did. Anything else (bytes, datetimes, other objects) raises UnsavableLabels.
    """
    classes = np.asarray(classes)
    kind = classes.dtype.kind
    if kind in _PLAIN_KINDS:
        values = classes.tolist()
        dtype_text = classes.dtype.str
    elif kind == "O":
        values = [_plain(item) for item in classes]
        dtype_text = "object"
        for position, item in enumerate(values):
            if not isinstance(item, _JSON_SCALARS):
                raise UnsavableLabels(
                    f"classes_[{position}] is a {type(item).__name__}; a model file stores labels that are str, int, "
                    "float or bool. " + _OTHER_LABELS
                )
    else:
        raise UnsavableLabels(f"classes_ has dtype {classes.dtype}; a model file stores labels that are str, int, "
                              "float or bool. " + _OTHER_LABELS)
    for position, item in enumerate(values):
        _check_label(position, item)
    if values and all(isinstance(item, str) for item in values):
        return [item.encode("utf-8") for item in values], {"dtype": dtype_text}
    if values and all(_is_int64(item) for item in values):
        return values, {"dtype": dtype_text}
    return None, {"dtype": dtype_text, "values": values}


def names_for_fit(classes) -> Optional[list]:
    """The class names fit hands the C library with the labels, or None when the file's types cannot hold them.

    Labels that cannot be named in C (booleans, floats, bytes, too long for EB_MAX_LABEL_BYTES) still train;
    save() then keeps them in the metadata or refuses them, and pickle keeps any.
    """
    try:
        names, _ = split_classes(classes)
    except (TypeError, ValueError):
        return None
    if names and isinstance(names[0], bytes) and max(map(len, names)) > lib.EB_MAX_LABEL_BYTES:
        return None
    return names


def is_persistable(estimator: Any) -> bool:
    """Whether save() and load() know the estimator's class (this package's own, not a subclass of it)."""
    return _ESTIMATORS.get(type(estimator).__name__) is type(estimator)


def _metadata_bytes(estimator: Any, classes_field: Optional[dict]) -> bytes:
    metadata = {
        "format": METADATA_FORMAT,
        "version": METADATA_VERSION,
        "estimator": type(estimator).__name__,
        "params": _encode_params(estimator),
        "classes": classes_field,
        "n_features_in": int(estimator.n_features_in_),
        "feature_names_in": (
            [str(feature) for feature in estimator.feature_names_in_] if hasattr(estimator, "feature_names_in_")
            else None
        ),
    }
    try:
        return json.dumps(metadata, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise ValueError(f"the metadata cannot hold the estimator's state: {error}") from None


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


def _parse_json(raw: bytes, sidecar: str, what: str = "sidecar") -> Any:
    """raw as strict JSON (no duplicate keys, NaN, huge integers or byte-order mark); sidecar names it in messages."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise _format_error(f"{sidecar}: starts with a UTF-8 byte-order mark; {what} is UTF-8 JSON without one")
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
        raise _format_error(f"{sidecar} is not {what}: its JSON nests too deeply to parse ({what} nests "
                            "four levels)") from None
    except ValueError as error:  # json.JSONDecodeError is one
        raise _format_error(f"{sidecar} is not valid JSON: {error}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Fields:
    """Checks on the fields of one sidecar or metadata object; every refusal names the file and the field."""

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




def _decode_named_classes(encoded: dict, names: list, fields: _Fields) -> np.ndarray:
    """classes_ from the file's class labels and the dtype the metadata recorded for them."""
    dtype_text = fields.string(encoded["dtype"], "classes.dtype")
    if dtype_text == "object":
        values = [name.decode("utf-8") if isinstance(name, bytes) else name for name in names]
        classes = np.empty(len(values), dtype=object)
        classes[:] = values
        return classes
    try:
        dtype = np.dtype(dtype_text)
    except (TypeError, ValueError):
        dtype = None
    strings = isinstance(names[0], bytes)
    fits = dtype is not None and dtype.str == dtype_text and dtype.kind in ("U" if strings else "iu")
    fields.require(fits, "classes.dtype", f"is {dtype_text[:40]!r}, which does not hold the file's "
                                          f"{'string' if strings else 'integer'} class labels")
    if strings:
        values = [name.decode("utf-8") for name in names]
        for index, value in enumerate(values):
            fields.require(len(value) <= dtype.itemsize // 4, f"class label {index}",
                           f"is longer than dtype {dtype_text} holds")
        return np.array(values, dtype=dtype)
    info = np.iinfo(dtype)
    for index, value in enumerate(names):
        fields.require(info.min <= value <= info.max, f"class label {index}", f"is {value}, beyond dtype {dtype_text}")
    return np.array(names, dtype=dtype)


def _default_classes(native: NativeModel, names: Optional[list]) -> Optional[np.ndarray]:
    """classes_ of a file without Python metadata: its class labels, else 0 .. n_classes-1."""
    if native.kind == "pair_learner":
        return None
    if names is None:
        return np.arange(native.n_classes)
    if isinstance(names[0], bytes):
        return np.array([name.decode("utf-8") for name in names])
    return np.array(names, dtype=np.int64)


def _read_metadata(raw: bytes, where: str) -> tuple[_Fields, dict]:
    """The top level of version-2 metadata, parsed strictly and checked."""
    fields = _Fields(f"{where}: metadata")
    metadata = _parse_json(raw, f"{where}: metadata", "metadata")
    if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
        raise _format_error(f"{where}: the model's metadata is not an embetter finetuner's (no \"format\": "
                            f"\"{METADATA_FORMAT}\"); it was written by other code")
    version = metadata.get("version")
    fields.require(version == METADATA_VERSION and _is_int(version), "version",
                   f"is {_describe(version)}; this embetter reads metadata version {METADATA_VERSION}")
    fields.mapping(metadata, "the top-level object", _METADATA_FIELDS)
    return fields, metadata


def _rebuild(metadata: Optional[dict], fields: Optional[_Fields], where: str, native: NativeModel,
             expected_class: Optional[type], pickled_classes: Any = None) -> Any:
    """The fitted estimator that checked metadata (None: a file C wrote) and its C model describe.

    Refuses any disagreement between them. metadata may be version 1 (a sidecar, whose classes are in it) or
    2 (in the file); pickled_classes is the classes_ a pickle carried beside the file bytes.
    """
    kind = native.kind
    if not native.is_fitted:
        raise _format_error(f"{where} holds an unfitted model, which save() never writes")
    names = native.class_labels()
    if metadata is None:
        cls = _class_for_kind(kind)
        if expected_class is not None and issubclass(expected_class, cls) and expected_class in _ESTIMATORS.values():
            cls = expected_class
        if expected_class is not None and not issubclass(cls, expected_class):
            raise TypeError(f"{where} holds a {kind} model, which loads as a {cls.__name__}, not a "
                            f"{expected_class.__name__}; libembetter.finetune.load(path) loads any finetuner")
        estimator = cls(**cls._params_from_native(native.params()))
        classes = _default_classes(native, names)
        feature_names = None
    else:
        name = metadata["estimator"]
        cls = _ESTIMATORS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise fields.fail("estimator", f"names {_describe(name)}, which is not an embetter finetuner")
        fields.require(cls._native_kind == kind, "estimator",
                       f"is {cls.__name__}, a {cls._native_kind} model, but the file holds a {kind}")
        if expected_class is not None and not issubclass(cls, expected_class):
            raise TypeError(f"{where} holds a {cls.__name__}, not a {expected_class.__name__}; "
                            "libembetter.finetune.load(path) loads any finetuner")
        params = _decode_params(metadata["params"], cls, fields)
        estimator = cls(**params)
        try:
            estimator._validate_params()
        except (TypeError, ValueError) as error:
            raise fields.fail("params", f"are refused: {error}") from None
        encoded = metadata["classes"]
        if kind == "pair_learner":
            fields.require(encoded is None, "classes", f"is {_describe(encoded)}; a pair learner has no classes")
            classes = None
        elif pickled_classes is not None:
            fields.require(encoded is None, "classes", "is given both in the metadata and by the pickle")
            classes = np.asarray(pickled_classes)
        elif metadata["version"] == SIDECAR_VERSION:
            classes = _decode_classes(encoded, fields)
        else:
            fields.require(isinstance(encoded, dict), "classes", f"is {_describe(encoded)}; it must be a JSON object")
            if names is None:
                classes = _decode_classes(fields.mapping(encoded, "classes", ("dtype", "values")), fields)
            else:
                fields.mapping(encoded, "classes", ("dtype",))
                fields.require(len(names) == native.n_classes, "classes",
                               f"are the file's {len(names)} class labels, the model was fitted on "
                               f"{native.n_classes}")
                classes = _decode_named_classes(encoded, names, fields)
        n_features = fields.integer(metadata["n_features_in"], "n_features_in", 1, 2**63 - 1)
        fields.require(n_features == native.n_features, "n_features_in",
                       f"is {n_features!r}, the model was fitted on {native.n_features} columns")
        feature_names = metadata["feature_names_in"]
        if feature_names is not None:
            fields.require(isinstance(feature_names, list) and len(feature_names) == native.n_features,
                           "feature_names_in", f"must list {native.n_features} strings")
            for index, feature in enumerate(feature_names):
                fields.string(feature, f"feature_names_in[{index}]")
        if classes is not None:
            fields.require(len(classes) == native.n_classes, "classes.values",
                           f"lists {len(classes)} classes, the model was fitted on {native.n_classes}")
            try:
                ordered = np.array_equal(np.unique(classes), classes)
            except TypeError:  # labels of types that do not compare, e.g. 1 and "1"
                raise fields.fail("classes.values", "holds labels that cannot be compared with each other (e.g. "
                                                    "numbers and strings); fit needs one label type") from None
            fields.require(ordered, "classes.values", "must be distinct and sorted, as fit stores them")
    problem = estimator._hidden_dim_problem(native)
    if problem is not None:
        raise _format_error(f"{where}: params: {problem}")
    if classes is not None:
        estimator.classes_ = classes
    estimator.n_features_in_ = native.n_features
    if feature_names is not None:
        estimator.feature_names_in_ = np.array(feature_names, dtype=object)
    estimator._native = native
    return estimator


def from_native(native: NativeModel, where: str, expected_class: Optional[type] = None,
                pickled_classes: Any = None) -> Any:
    """The estimator a loaded C model describes through its metadata (or without any, as C saved it)."""
    raw = native.metadata()
    if not raw:
        if pickled_classes is not None:
            raise _format_error(f"{where}: the pickle carries classes_ but the model has no metadata")
        return _rebuild(None, None, where, native, expected_class)
    fields, metadata = _read_metadata(raw, where)
    return _rebuild(metadata, fields, where, native, expected_class, pickled_classes)



# ---- files (reading) ----------------------------------------------------------------------------------------

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


def _read_model_file(path: str) -> tuple[int, bytes]:
    """(format version, bytes) of the model file at path, reading no more than its header announces."""
    descriptor, size = _open_regular(path)
    try:
        head = _read_exactly(descriptor, min(size, lib.EB_MODEL_HEADER_SIZE), path, to_end=False)
        try:
            header = NativeModel.read_header(head)
        except EmbetterError as error:
            raise error_for_status(error.code, f"{path}: {error}") from None
        payload_size = int(header.payload_size)
        if size - len(head) != payload_size:
            raise _format_error(f"{path}: saved model: the header announces {payload_size} payload bytes, the file "
                                f"holds {size - len(head)} after the header")
        return int(header.format_version), head + _read_exactly(descriptor, payload_size, path)
    finally:
        os.close(descriptor)


def _read_sidecar(sidecar: str, native: NativeModel) -> Optional[bytes]:
    """The bytes of the version-1 sidecar of a format-1 model, or None when there is none (C saved it)."""
    try:
        descriptor, size = _open_regular(sidecar)
    except FileNotFoundError:
        return None
    try:
        limit = sidecar_limit(native.n_classes, native.n_features)
        if size > limit:
            raise _format_error(f"{sidecar} is {size} bytes, more than the {limit} a sidecar of a model with "
                                f"{native.n_classes} classes and {native.n_features} features may take")
        return _read_exactly(descriptor, size, sidecar)
    finally:
        os.close(descriptor)


# ---- the file's finetuner ---------------------------------------------------------------------------------


def file_model(estimator: Any, where: str, for_pickle: bool = False) -> tuple[NativeModel, Any]:
    """(a copy of the estimator's C model with its class labels and metadata, classes_ the file cannot hold).

    Every check load() makes runs on the copy (with where in its messages), so whatever this returns loads
    back as the estimator. for_pickle: labels a file cannot hold are returned to travel beside it (a pickle
    keeps any object); otherwise they raise UnsavableLabels.
    """
    native = getattr(estimator, "_native", None)
    if native is None:
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; save() writes a learned model. "
            "An unfitted estimator is just its parameters: keep get_params(), or pickle it"
        )
    if not is_persistable(estimator):
        raise TypeError(f"save() stores embetter's own finetuner classes, not the subclass "
                        f"{type(estimator).__qualname__}")
    names, classes_field, outside = None, None, None
    if native.kind != "pair_learner":
        try:
            names, classes_field = split_classes(estimator.classes_)
        except UnsavableLabels:
            if not for_pickle:
                raise
            outside = estimator.classes_
    metadata = _metadata_bytes(estimator, classes_field)
    copy = native.copy()
    if native.kind != "pair_learner":
        copy.set_class_labels(names)
    copy.set_metadata(metadata)
    from_native(copy, where, pickled_classes=outside)
    copy.check_savable()
    return copy, outside


def save(estimator: Any, path: PathLike) -> None:
    """Write a fitted finetuner to path: the C model file with its class labels and Python metadata."""
    path = file_path(path)
    copy, _ = file_model(estimator, path)
    try:
        copy.save(path)
    except EmbetterError as error:
        if error.code == lib.EB_ERR_IO:
            raise
        raise error_for_status(error.code, f"{path}: {error}") from None


@overload
def load(path: PathLike) -> BaseEstimator: ...


@overload
def load(path: PathLike, expected_class: type[_Loaded]) -> _Loaded: ...


def load(path: PathLike, expected_class: Optional[type[Any]] = None) -> Any:
    """A fitted finetuner from a model file; an instance of expected_class if given."""
    path = file_path(path)
    version, data = _read_model_file(path)
    try:
        native = NativeModel.from_bytes(None, data)
    except EmbetterError as error:
        raise error_for_status(error.code, f"{path}: {error}") from None
    if version == 1 and not native.metadata():
        sidecar = path + ".json"
        raw_sidecar = _read_sidecar(sidecar, native)
        if raw_sidecar is not None:
            fields, metadata = _read_fields(_parse_json(raw_sidecar, sidecar), sidecar, path, data)
            return _rebuild(metadata, fields, path, native, expected_class)
    return from_native(native, path, expected_class)


def from_pickle(data: bytes, pickled_classes: Any, expected_class: type) -> Any:
    """The estimator a pickle of a fitted finetuner holds: model file bytes, and classes_ when they could not
    go in the file."""
    where = f"unpickling a {expected_class.__name__}"
    try:
        native = NativeModel.from_bytes(expected_class._native_kind, data)
    except EmbetterError as error:
        raise error_for_status(error.code, f"{where}: {error}") from None
    estimator = from_native(native, where, expected_class, pickled_classes)
    if type(estimator) is not expected_class:
        raise _format_error(f"{where}: the pickled model is a {type(estimator).__name__}")
    return estimator


def check_unpickled(estimator: Any, native: NativeModel) -> None:
    """Refuse a 0.1 pickle whose C model disagrees with its Python attributes, as load() refuses such a file."""
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
