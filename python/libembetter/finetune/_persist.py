"""save(path) and load(path): a finetuner as the C library's model file plus a JSON sidecar.

The model file at `path` is exactly what eb_feedforward_save / eb_contrastive_save
write (docs/model-format.md), so a C program loads it without Python. What only
Python knows goes to `<path>.json`: the estimator's class and parameters as the
user set them, classes_ (labels of any JSON-representable type, where C only
knows indices 0..k-1) and feature_names_in_. The sidecar records the SHA-256 of
the model file, so a pair that does not belong together (one file replaced,
a save interrupted between the two files) is refused instead of mixed.

Nothing in either file is executed: the sidecar can only name one of the
finetuner classes that registered themselves with @persistable, and its values
are plain JSON. The model file itself is read and written by the C library
(through NativeModel), header included.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Optional, TypeVar, overload

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from libembetter._binding import NativeModel, PathLike
from libembetter._errors import EmbetterError, error_for_status

SIDECAR_FORMAT = "embetter-finetuner-metadata"
SIDECAR_VERSION = 1

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


def sidecar_path(path: PathLike) -> str:
    return os.fspath(path) + ".json"


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


def _decode_random_state(value):
    if isinstance(value, dict):
        state = value["RandomState"]
        generator = np.random.RandomState()
        generator.set_state((state["bit_generator"], np.array(state["keys"], dtype=np.uint32), state["position"],
                             state["has_gauss"], state["cached_gaussian"]))
        return generator
    return value


def _encode_params(estimator):
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "random_state":
            params[name] = _encode_random_state(value)
            continue
        value = _plain(value)
        if value is not None and not isinstance(value, _JSON_SCALARS):
            raise TypeError(f"parameter {name} is a {type(value).__name__}; save() stores numbers, booleans and None")
        params[name] = value
    return params


def _encode_classes(classes):
    classes = np.asarray(classes)
    if classes.dtype.kind in _PLAIN_KINDS:
        return {"dtype": classes.dtype.str, "values": classes.tolist()}
    if classes.dtype.kind == "O":
        values = [_plain(item) for item in classes]
        for position, item in enumerate(values):
            if not isinstance(item, _JSON_SCALARS):
                raise TypeError(
                    f"classes_[{position}] is a {type(item).__name__}; save() stores labels that are str, int, "
                    "float or bool. Pickle the estimator (pickle or joblib) to keep other label types"
                )
        return {"dtype": "object", "values": values}
    raise TypeError(
        f"classes_ has dtype {classes.dtype}; save() stores labels that are str, int, float or bool. "
        "Pickle the estimator (pickle or joblib) to keep other label types"
    )


def _decode_classes(encoded):
    return np.array(encoded["values"], dtype=object if encoded["dtype"] == "object" else np.dtype(encoded["dtype"]))


# ---- files --------------------------------------------------------------------------------------------------


def _write_atomically(path: str, data: bytes) -> None:
    """data into path via a temporary file in the same directory, synced and renamed, as the C save does."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp makes the file 0600; give the sidecar the permissions the model file gets (umask applied).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    directory_descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_descriptor)
    finally:
        os.close(directory_descriptor)


def save(estimator: Any, path: PathLike) -> None:
    """Write a fitted finetuner to path (the C model format) and path + ".json" (what only Python knows)."""
    if not hasattr(estimator, "_native"):
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; save() writes a learned model. "
            "An unfitted estimator is just its parameters: keep get_params(), or pickle it"
        )
    name = type(estimator).__name__
    if _ESTIMATORS.get(name) is not type(estimator):
        raise TypeError(f"save() stores embetter's own finetuner classes, not the subclass {type(estimator).__qualname__}")
    # Everything that can refuse runs before either file is touched.
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
    }
    path = os.fspath(path)
    estimator._native.save(path)
    # The hash of what is on disk now, not of a second serialisation, ties the sidecar to this very file.
    with open(path, "rb") as file:
        metadata["model_sha256"] = hashlib.sha256(file.read()).hexdigest()
    text = json.dumps(metadata, indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    _write_atomically(sidecar_path(path), text.encode("utf-8"))


def _saved_kind(path: str, data: bytes) -> str:
    """The kind of model in a model file's bytes, as the C library reads it; its refusal names the file."""
    try:
        return NativeModel.saved_kind(data)
    except EmbetterError as error:
        raise error_for_status(error.code, f"{path}: {error}") from None


def _read_metadata(path: str, data: bytes) -> dict[str, Any]:
    sidecar = sidecar_path(path)
    try:
        with open(sidecar, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{sidecar} is missing: load() needs the JSON file that save() writes next to the model "
            "(labels, feature names and parameters live there)"
        ) from None
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{sidecar} is not valid JSON: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{sidecar} is not an embetter finetuner sidecar (no \"format\": \"{SIDECAR_FORMAT}\")")
    version = metadata.get("version")
    if version != SIDECAR_VERSION:
        raise ValueError(f"{sidecar} has sidecar version {version!r}; this embetter reads version {SIDECAR_VERSION}")
    if metadata.get("model_sha256") != hashlib.sha256(data).hexdigest():
        raise ValueError(
            f"{sidecar} does not belong to {path}: the model file's SHA-256 differs from the one recorded "
            "(one of the two files was replaced, or a save was interrupted); save the model again"
        )
    return metadata


def _check(condition: bool, sidecar: str, problem: str) -> None:
    if not condition:
        raise ValueError(f"{sidecar}: {problem}")


@overload
def load(path: PathLike) -> BaseEstimator: ...


@overload
def load(path: PathLike, expected_class: type[_Loaded]) -> _Loaded: ...


def load(path: PathLike, expected_class: Optional[type[Any]] = None) -> Any:
    """A fitted finetuner from a model file and its sidecar written by save(); an instance of expected_class if given."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        data = file.read()
    kind = _saved_kind(path, data)
    metadata = _read_metadata(path, data)
    sidecar = sidecar_path(path)
    try:
        cls = _ESTIMATORS[metadata["estimator"]]
    except (KeyError, TypeError):
        raise ValueError(f"{sidecar} names estimator {metadata.get('estimator')!r}, which is not an embetter "
                         "finetuner") from None
    _check(cls._native_kind == kind, sidecar, f"{cls.__name__} is a {cls._native_kind} model, the file holds a {kind}")
    if expected_class is not None and not issubclass(cls, expected_class):
        raise TypeError(f"{path} holds a {cls.__name__}, not a {expected_class.__name__}; "
                        "libembetter.finetune.load(path) loads any finetuner")
    try:
        params = dict(metadata["params"])
        params["random_state"] = _decode_random_state(params.get("random_state"))
        estimator = cls(**params)
        classes = _decode_classes(metadata["classes"])
        n_features = metadata["n_features_in"]
        feature_names = metadata["feature_names_in"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{sidecar} is malformed: {type(error).__name__}: {error}") from None
    estimator._validate_params()

    native = NativeModel.from_bytes(kind, data)
    _check(native.is_fitted, sidecar, "the model file holds an unfitted model")
    _check(classes.ndim == 1 and len(classes) == native.n_classes, sidecar,
           f"{len(classes)} classes listed, the model was fitted on {native.n_classes}")
    _check(len(np.unique(classes)) == len(classes) and np.array_equal(np.unique(classes), classes), sidecar,
           "classes must be distinct and sorted, as fit stores them")
    _check(n_features == native.n_features, sidecar,
           f"n_features_in is {n_features!r}, the model was fitted on {native.n_features} columns")
    expected_width = estimator._hyperparameters()["hidden_dim"]
    if expected_width is not None:
        _check(expected_width == native.output_dim, sidecar,
               f"hidden_dim is {expected_width!r}, the model's output has {native.output_dim} columns")
    estimator.classes_ = classes
    estimator.n_features_in_ = native.n_features
    if feature_names is not None:
        _check(isinstance(feature_names, list) and len(feature_names) == native.n_features
               and all(isinstance(feature, str) for feature in feature_names), sidecar,
               f"feature_names_in must list {native.n_features} strings")
        estimator.feature_names_in_ = np.array(feature_names, dtype=object)
    estimator._native = native
    return estimator
