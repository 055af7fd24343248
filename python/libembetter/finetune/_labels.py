"""Labels in, class indices out: the one place where every finetuner checks y and classes=.

The C library only ever sees int32 indices into classes_, so everything that can go wrong with
labels has to be caught here, before numpy or scikit-learn get to coerce them: numpy turns
[1, '1'] into two equal strings and [1, True] into two equal integers, and scikit-learn either
trains a class 'nan' or fails deep inside with an AttributeError on pd.NA.

Rules (docs/bad-input.md): no row may be missing (None, pd.NA, pd.NaT, a NaN of any float type);
all labels are of one kind, where the kinds are bool, number (int and float of any width:
1 and 1.0 are the same number, so they are the same class, as numpy and pandas compare them),
str, bytes, datetime, timedelta and, for anything else, the Python type itself. The same rules
hold between classes= and y, and between the classes_ a partial_fit fixed and later calls.
"""
import datetime
import warnings
from numbers import Number

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

try:  # pandas is optional; without it no value can be pd.NA or pd.NaT
    import pandas as _pd
except ImportError:  # pragma: no cover - the test environments all have pandas
    _pd = None

_MISSING_SINGLETONS = (None,) + ((_pd.NA, _pd.NaT) if _pd is not None else ())

# Kinds of numpy dtypes whose values are all of one label kind and cannot be missing, except floats (NaN)
# and datetimes / timedeltas (NaT), which are checked with vectorised numpy.
_DTYPE_KINDS = {"b": "bool", "i": "number", "u": "number", "f": "number", "U": "str", "S": "bytes",
                "M": "datetime", "m": "timedelta"}


class _Rows:
    """y as one-dimensional numpy values plus, for a pandas object, its index (for messages)."""

    def __init__(self, values, index, name):
        self.values = values
        self.index = index
        self.name = name

    def where(self, row):
        """y[3], or y[3] (index 'c') when a pandas index labels the row differently from its position."""
        text = f"{self.name}[{row}]"
        if self.index is not None:
            label = self.index[row]
            if not (isinstance(label, (int, np.integer)) and not isinstance(label, bool) and label == row):
                text += f" (index {_shown(label)})"
        return text


def _shown(value):
    """repr() of a label as the user wrote it: 7 and nan rather than NumPy 2's np.int64(7) and np.float64(nan)."""
    if value is None or (_pd is not None and (value is _pd.NA or value is _pd.NaT)):
        return repr(value)
    if isinstance(value, (np.datetime64, np.timedelta64)) and np.isnat(value):
        return "NaT"
    if isinstance(value, np.generic) and value.dtype.kind in "biufcUS":
        return repr(value.item())
    return repr(value)


def _type_name(value):
    return type(value).__name__


def _missing_word(value):
    """How the message names a missing value: NaN, NaT, None or pd.NA."""
    if value is None:
        return "None"
    if _pd is not None and value is _pd.NA:
        return "pd.NA"
    if isinstance(value, (float, np.floating)):
        return "NaN"
    return "NaT"


def _is_missing(value):
    if any(value is singleton for singleton in _MISSING_SINGLETONS):
        return True
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    if isinstance(value, (float, np.floating)):
        return value != value
    return False


def _kind_of_type(cls):
    """The kind labels of type cls belong to; labels of two different kinds are never merged into one class."""
    if issubclass(cls, (bool, np.bool_)):  # before Number: bool is an int subclass
        return "bool"
    if issubclass(cls, (str, np.str_)):
        return "str"
    if issubclass(cls, (bytes, np.bytes_)):
        return "bytes"
    if issubclass(cls, (datetime.datetime, datetime.date, np.datetime64)):
        return "datetime"
    if issubclass(cls, (datetime.timedelta, np.timedelta64)):
        return "timedelta"
    if issubclass(cls, Number) and not issubclass(cls, (complex, np.complexfloating)):
        return "number"
    return cls


def _kind(value):
    return _kind_of_type(type(value))


def _kind_name(kind):
    return kind if isinstance(kind, str) else kind.__name__


def _rows(y, name):
    """y's rows without any type coercion, or None for what scikit-learn refuses on its own (None, 0-D, 2-D)."""
    index = None
    if _pd is not None and isinstance(y, _pd.Series):
        index = y.index
        if isinstance(y.dtype, np.dtype) and y.dtype.kind != "O":
            values = y.to_numpy()
        else:  # object and pandas extension dtypes (string, Int64, boolean, category...): their own missing values
            values = y.to_numpy(dtype=object)
    elif _pd is not None and isinstance(y, _pd.DataFrame):
        if y.shape[1] != 1:
            return None
        return _rows(y.iloc[:, 0], name)
    elif y is None or isinstance(y, (str, bytes)):
        return None
    else:
        try:
            # A list goes in as objects: np.asarray([1, '1']) would already have made both labels '1'.
            values = np.asarray(y, dtype=object) if isinstance(y, (list, tuple)) else np.asarray(y)
            if values.dtype.kind not in _DTYPE_KINDS:
                values = np.asarray(y, dtype=object)
        except (TypeError, ValueError):
            return None  # ragged nesting and the like: scikit-learn's message
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]  # a column vector, which scikit-learn accepts with a warning
    if values.ndim != 1:
        return None
    if values.dtype.kind not in _DTYPE_KINDS and values.dtype.kind != "O":
        values = values.astype(object)
    return _Rows(values, index, name)


def _first_missing(values):
    kind = values.dtype.kind
    if kind == "f":
        bad = np.flatnonzero(np.isnan(values))
    elif kind in "Mm":
        bad = np.flatnonzero(np.isnat(values))
    elif kind == "O":
        if _pd is not None:  # one vectorised pass; it knows None, NaN, NaT and pd.NA as _is_missing does
            bad = (row for row in np.flatnonzero(_pd.isna(values)) if _is_missing(values[row]))
        else:
            bad = (row for row, value in enumerate(values) if _is_missing(value))
    else:
        return None
    return next(iter(bad), None)


def _first_of_other_kind(values):
    """(kind of row 0, first row of another kind or None)."""
    if values.dtype.kind != "O":
        return _DTYPE_KINDS[values.dtype.kind], None
    first = _kind(values[0])
    # The distinct types first, at C speed; rows are only walked when there is a second kind to find.
    if all(_kind_of_type(cls) == first for cls in set(map(type, values))):
        return first, None
    for row in range(1, len(values)):
        if _kind(values[row]) != first:
            return first, row
    return first, None


def label_kind(y, name="y"):
    """Check y (or classes=) and return the kind of its labels, or None when y is empty or for scikit-learn to refuse.

    A ValueError names the first missing label, or the first label of a second kind, with its row.
    """
    rows = _rows(y, name)
    if rows is None or len(rows.values) == 0:
        return None
    values = rows.values
    row = _first_missing(values)
    if row is not None:
        value = values[row]
        if name == "y":
            advice = "every row of y needs a label: drop the unlabelled rows from X and y first"
        else:
            advice = f"{name} lists the labels y may hold, so every entry must be one"
        raise ValueError(
            f"{rows.where(row)} is {_shown(value)} ({_type_name(value)}): {name} contains {_missing_word(value)}, "
            f"which is no label; {advice}"
        )
    first_kind, row = _first_of_other_kind(values)
    if row is not None:
        first, other = values[0], values[row]
        raise ValueError(
            f"{name} mixes labels of two types, {_type_name(first)} and {_type_name(other)}: "
            f"{rows.where(0)} is {_shown(first)} and {rows.where(row)} is {_shown(other)}, the first label of "
            "another type; labels of two types are never one class (numpy would silently merge 1 and '1', or "
            "1 and True), so give every label one type (ints and floats may mix: both are numbers)"
        )
    return first_kind


def check_same_kind(y, y_kind, classes_name, classes, classes_kind):
    """Refuse y whose labels are of another kind than classes (classes= or a fitted classes_)."""
    if y_kind is None or classes_kind is None or y_kind == classes_kind:
        return
    rows = _rows(y, "y")
    value = rows.values[0]
    raise ValueError(
        f"{rows.where(0)} is {_shown(value)}, a label not in {classes_name} {_plain(np.unique(classes))!r}: it is "
        f"of type {_type_name(value)} and {classes_name} holds {_kind_name(classes_kind)} labels, and labels of "
        "two types are never one class (1 and '1', 1 and True are different labels)"
    )


def kind_of_classes(classes):
    """The kind of a fitted classes_ array (one kind by construction), or None when it is empty."""
    classes = np.asarray(classes)
    if classes.size == 0:
        return None
    if classes.dtype.kind != "O":
        return _DTYPE_KINDS.get(classes.dtype.kind)
    return _kind(classes[0])


def _plain(values):
    """An array's values as Python objects, so that messages read 7 rather than NumPy 2's np.int64(7)."""
    return np.asarray(values).tolist()


def encode_labels(y, classes):
    """Indices of y's labels in the array classes, as int32; a ValueError names the first unknown label.

    classes_ is sorted when fit made it, but a model file a C program saved names its classes in any order.
    """
    try:
        order = np.argsort(classes, kind="stable")
        positions = np.searchsorted(classes, y, sorter=order)
        in_range = order[np.minimum(positions, len(classes) - 1)]
        with warnings.catch_warnings():
            # Labels of another type than classes_ compare unequal; numpy warns about that on the way.
            warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
            known = (positions < len(classes)) & (classes[in_range] == y)
    except TypeError:
        raise ValueError(
            f"the labels in y cannot be compared with classes_ {_plain(classes)!r}; they are of a different type"
        ) from None
    known = np.asarray(known, dtype=bool)
    if known.shape != np.shape(y):
        raise ValueError(f"the labels in y cannot be compared with classes_ {_plain(classes)!r}")
    if not known.all():
        row = int(np.flatnonzero(~known)[0])
        raise ValueError(
            f"y[{row}] is {_plain(y[row:row + 1])[0]!r}, a label not in classes_ {_plain(classes)!r}; "
            "partial_fit can only learn the classes given on its first call"
        )
    return np.ascontiguousarray(in_range, dtype=np.int32)


def _plainly_discrete(y, y_kind):
    """Whether y (validated by scikit-learn) holds labels check_classification_targets can only accept.

    Its type_of_target finds a one-dimensional array of integers, booleans or strings "binary" or "multiclass"
    and accepts both (scikit-learn 1.2 to 1.9); only floats, bytes, other objects and two dimensions can fail.
    It also warns when most labels are distinct (scikit-learn 1.6 and newer), which _may_warn leaves to it.
    Skipping it there saves about as much time as the rest of fit's Python side on small inputs.
    """
    if not isinstance(y, np.ndarray) or y.ndim != 1:
        return False
    return y.dtype.kind in "biuU" or (y.dtype.kind == "O" and y_kind == "str")


def _may_warn(y, n_classes=None):
    """Whether check_classification_targets may warn that y looks like a regression target (the condition
    of scikit-learn's warning: over 20 samples, more than half of them distinct labels); n_classes when known."""
    if len(y) <= 20:
        return False
    if n_classes is None:
        n_classes = len(np.unique(y))
    return n_classes > round(0.5 * len(y))


def training_data(estimator, X, y, *, first_call, classes=None):
    """X validated and y as (classes_, int32 index of each row's class in classes_), for fit and partial_fit.

    fit passes first_call=True and no classes (classes_ is then every label in y); partial_fit passes
    the classes= it got, which its first call requires. Labels are checked before scikit-learn sees
    them, because its validation coerces [1, '1'] to strings and fails obscurely on pd.NA.
    """
    y_kind = label_kind(y, "y")
    classes_kind = None if classes is None else label_kind(classes, "classes")
    if not first_call:
        fitted = estimator.classes_
        fitted_kind = kind_of_classes(fitted)
        # np.array_equal finds [False, True] equal to [0, 1]; the kinds tell them apart.
        if None not in (classes_kind, fitted_kind) and classes_kind != fitted_kind:
            raise ValueError(
                f"classes= holds {_kind_name(classes_kind)} labels, but classes_ {_plain(fitted)!r} fixed by the "
                f"first fit holds {_kind_name(fitted_kind)} labels; pass the same classes or none"
            )
        check_same_kind(y, y_kind, "classes_", fitted, fitted_kind)
    elif classes is not None:
        check_same_kind(y, y_kind, "classes", classes, classes_kind)
    X, y = estimator._checked_input(X, y, reset=first_call)
    plainly_discrete = _plainly_discrete(y, y_kind)
    if not plainly_discrete:
        check_classification_targets(y)
    if classes is None and first_call:
        known_classes, codes = np.unique(y, return_inverse=True)
        if plainly_discrete and _may_warn(y, len(known_classes)):
            check_classification_targets(y)
        estimator._check_class_count(known_classes)
        return X, known_classes, np.ascontiguousarray(codes.reshape(-1), dtype=np.int32)
    if plainly_discrete and _may_warn(y):
        check_classification_targets(y)
    if first_call:
        known_classes = np.unique(classes)
        if y.dtype.kind in "Mm" and known_classes.dtype.kind == "O":
            # Timestamps listed in classes= against a datetime64 y: NumPy 1.x cannot search one in the other.
            known_classes = np.unique(np.asarray(classes, dtype=y.dtype))
        estimator._check_class_count(known_classes)
    else:
        known_classes = estimator.classes_
        if classes is not None and not np.array_equal(np.unique(classes), np.unique(known_classes)):
            raise ValueError(
                f"classes={_plain(np.unique(classes))!r} differs from classes_ {_plain(known_classes)!r} "
                "fixed by the first fit; pass the same classes or none"
            )
    return X, known_classes, encode_labels(y, known_classes)
