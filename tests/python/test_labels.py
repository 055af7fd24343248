"""Labels: missing values and mixed types in y and classes=, for every finetuner, container and call.

Each bad label must be a ValueError naming its row (and its pandas index label when that differs) and
the value, raised before anything is trained, so a fitted model is left exactly as it was. Labels of
two types are refused rather than merged: numpy coerces [1, '1'] to two equal strings and [1, True]
to two equal integers, so each of those used to become one class without a word.
"""
import math
import re

import numpy as np
import pandas as pd
import pytest

from libembetter.finetune import ContrastiveFinetuner, ContrastiveTuner, FeedForwardFinetuner, FeedForwardTuner

FAST = {
    FeedForwardFinetuner: dict(hidden_dim=4, n_epochs=3),
    ContrastiveFinetuner: dict(hidden_dim=4, n_epochs=2),
    FeedForwardTuner: dict(hidden_dim=4, n_epochs=3),
    ContrastiveTuner: dict(hidden_dim=4, epochs=2),
}
N_ROWS = 12
BAD_ROW = 5
X = np.random.RandomState(0).normal(size=(N_ROWS, 6)).astype(np.float32)


@pytest.fixture(params=list(FAST), ids=lambda cls: cls.__name__)
def make(request):
    cls = request.param
    return lambda: cls(**FAST[cls], random_state=0)


def snapshot(estimator):
    """What a failed call must not change: output, parameters, classes_, loss history (None if unfitted)."""
    if not hasattr(estimator, "classes_"):
        return {"params": estimator.get_params(), "fitted": False}
    return {
        "params": estimator.get_params(),
        "transform": estimator.transform(X).tobytes(),
        "classes": [repr(c) for c in estimator.classes_],
        "classes_dtype": estimator.classes_.dtype,
        "loss_curve": np.asarray(estimator.loss_curve_).tobytes(),
        "n_features_in": estimator.n_features_in_,
    }


# ---- containers x missing values ------------------------------------------------------------------

def _labels(kind):
    """N_ROWS good labels of a kind, two classes, alternating."""
    pools = {
        "str": ["cat", "dog"],
        "int": [3, 7],
        "float": [0.0, 1.0],
        "bool": [False, True],
        "datetime": list(pd.to_datetime(["2020-01-01", "2021-06-30"])),
    }
    pool = pools[kind]
    return [pool[i % 2] for i in range(N_ROWS)]


def _with(values, bad):
    values = list(values)
    values[BAD_ROW] = bad
    return values


# name -> (label kind, build(values) -> y, index labels the Series shows or None)
SHUFFLED = [10 + 3 * i for i in range(N_ROWS)][::-1]
CONTAINERS = {
    "list": ("str", lambda v: v, None),
    "object ndarray": ("str", lambda v: np.array(v, dtype=object), None),
    "object Series": ("str", lambda v: pd.Series(v, dtype=object), None),
    "object Series, str index": (
        "str", lambda v: pd.Series(v, dtype=object, index=[f"r{i}" for i in range(N_ROWS)]),
        [f"r{i}" for i in range(N_ROWS)]),
    "object Series, shuffled int index": ("str", lambda v: pd.Series(v, dtype=object, index=SHUFFLED), SHUFFLED),
    "string Series": ("str", lambda v: pd.Series(v, dtype="string"), None),
    "string[python] Series": ("str", lambda v: pd.Series(v, dtype=pd.StringDtype("python")), None),
    "str Series": ("str", lambda v: pd.Series(v, dtype="str"), None),
    "Int64 Series": ("int", lambda v: pd.Series(v, dtype="Int64"), None),
    "Float64 Series": ("float", lambda v: pd.Series(v, dtype="Float64"), None),
    "boolean Series": ("bool", lambda v: pd.Series(v, dtype="boolean"), None),
    "Categorical": ("str", lambda v: pd.Categorical(v), None),
    "Categorical Series, str index": (
        "str", lambda v: pd.Series(pd.Categorical(v), index=[f"r{i}" for i in range(N_ROWS)]),
        [f"r{i}" for i in range(N_ROWS)]),
    "float64 ndarray": ("float", lambda v: np.array(v, dtype=np.float64), None),
    "float32 ndarray": ("float", lambda v: np.array(v, dtype=np.float32), None),
    "float list": ("float", lambda v: v, None),
    "int list": ("int", lambda v: v, None),
    "datetime64 Series": ("datetime", lambda v: pd.Series(pd.to_datetime(v)), None),
}
MISSING = {
    "None": None,
    "pd.NA": pd.NA,
    "float nan": float("nan"),
    "np.nan": np.nan,
    "np.float32 nan": np.float32("nan"),
    "pd.NaT": pd.NaT,
}
# The missing values each container can hold (a float array has only NaN, a datetime64 Series only NaT).
APPLIES = {
    "float64 ndarray": ["float nan", "np.nan", "np.float32 nan"],
    "float32 ndarray": ["float nan", "np.nan", "np.float32 nan"],
    "datetime64 Series": ["None", "pd.NaT", "float nan"],
}


def _stored(y, row):
    """The value y holds at row after the container's own conversion (pd.NA may become NaN, None pd.NA ...)."""
    if isinstance(y, (pd.Series, pd.Categorical)):
        return pd.Series(y).to_numpy(dtype=object)[row]
    return y[row]


def _word(value):
    """How a missing value is named: independent of the implementation, from what the value is."""
    if value is None:
        return "None"
    if value is pd.NA:
        return "pd.NA"
    if value is pd.NaT or (isinstance(value, (np.datetime64, np.timedelta64)) and np.isnat(value)):
        return "NaT"
    assert isinstance(value, (float, np.floating)) and math.isnan(value), value
    return "NaN"


def _missing_cases():
    for container, (kind, build, index) in CONTAINERS.items():
        for missing in APPLIES.get(container, MISSING):
            try:
                y = build(_with(_labels(kind), MISSING[missing]))
            except (TypeError, ValueError):
                continue  # the container refuses the value itself (e.g. boolean cannot hold a float nan)
            yield pytest.param(container, missing, id=f"{container}-{missing}")


MISSING_CASES = list(_missing_cases())


def _bad_y(container, missing):
    kind, build, index = CONTAINERS[container]
    return kind, build(_with(_labels(kind), MISSING[missing])), index


def _good_y(container):
    """The same container without the missing value, and its classes."""
    kind, build, index = CONTAINERS[container]
    good = build(_labels(kind))
    return good, np.unique(np.asarray(good))


def _where(name, index, row=BAD_ROW):
    where = re.escape(f"{name}[{row}]")
    if index is not None and index[row] != row:
        where += re.escape(f" (index {index[row]!r})")
    return where


def _missing_message(name, y, index):
    return rf"^{_where(name, index)} is .*: {name} contains {_word(_stored(y, BAD_ROW))}, which is no label"


def test_the_matrix_covers_every_container_and_missing_value():
    assert {c for c, _ in (p.values for p in MISSING_CASES)} == set(CONTAINERS)
    assert {m for _, m in (p.values for p in MISSING_CASES)} == set(MISSING)
    assert len(MISSING_CASES) >= 60


@pytest.mark.parametrize("container, missing", MISSING_CASES)
def test_missing_label_in_fit_names_its_row_and_leaves_a_fitted_model_as_it_was(make, container, missing):
    kind, y, index = _bad_y(container, missing)
    model = make().fit(X, _labels("int"))
    before = snapshot(model)
    with pytest.raises(ValueError, match=_missing_message("y", y, index)):
        model.fit(X, y)
    assert snapshot(model) == before


@pytest.mark.parametrize("container, missing", MISSING_CASES)
def test_missing_label_in_a_first_partial_fit_names_its_row_and_fits_nothing(make, container, missing):
    kind, y, index = _bad_y(container, missing)
    model = make()
    before = snapshot(model)
    with pytest.raises(ValueError, match=_missing_message("y", y, index)):
        model.partial_fit(X, y, classes=_good_y(container)[1])
    assert snapshot(model) == before
    assert not hasattr(model, "classes_") and not hasattr(model, "n_features_in_")


@pytest.mark.parametrize("container, missing", MISSING_CASES)
def test_missing_label_in_a_later_partial_fit_leaves_the_model_as_it_was(make, container, missing):
    kind, y, index = _bad_y(container, missing)
    good, classes = _good_y(container)
    model = make().partial_fit(X, good, classes=classes)
    before = snapshot(model)
    with pytest.raises(ValueError, match=_missing_message("y", y, index)):
        model.partial_fit(X, y)
    assert snapshot(model) == before


@pytest.mark.parametrize("container, missing", MISSING_CASES)
def test_missing_label_in_classes_names_its_row(make, container, missing):
    kind, classes, index = _bad_y(container, missing)
    good, good_classes = _good_y(container)
    model = make()
    with pytest.raises(ValueError, match=_missing_message("classes", classes, index)):
        model.partial_fit(X, good, classes=classes)
    assert snapshot(model) == {"params": model.get_params(), "fitted": False}
    # and on a fitted model, where classes= may repeat classes_
    model.partial_fit(X, good, classes=good_classes)
    before = snapshot(model)
    with pytest.raises(ValueError, match=_missing_message("classes", classes, index)):
        model.partial_fit(X, good, classes=classes)
    assert snapshot(model) == before


def test_messages_show_the_value_and_its_type(make):
    cases = [
        ([0, 1, 0, 1, 0, np.float32("nan")] * 2, r"^y\[5\] is nan \(float32\): y contains NaN"),
        ([0, 1, 0, 1, 0, None] * 2, r"^y\[5\] is None \(NoneType\): y contains None"),
        (pd.Series(["a", "b", "a", pd.NA] * 3, dtype=object, index=list("abcdefghijkl")),
         r"^y\[3\] \(index 'd'\) is <NA> \(NAType\): y contains pd\.NA"),
        (pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02", None] * 4)), r"^y\[2\] is NaT \(\w+\): y contains NaT"),
    ]
    for y, message in cases:
        with pytest.raises(ValueError, match=message):
            make().fit(X, y)


def test_a_series_index_equal_to_the_position_is_not_repeated(make):
    y = pd.Series([0, 1, 0, None] * 3, dtype=object)
    with pytest.raises(ValueError, match=r"^y\[3\] is None") as caught:
        make().fit(X, y)
    assert "index" not in str(caught.value)


def test_the_first_missing_row_is_named_when_there_are_several(make):
    y = np.array([0, 1, 0, 1, 0, 1, np.nan, 1, np.nan, 0, 1, np.nan])
    with pytest.raises(ValueError, match=r"^y\[6\] is nan"):
        make().fit(X, y)


# ---- mixed label types ------------------------------------------------------------------------------

# (first label, a label of another type, the two type names the message gives)
MIXES = [
    (1, "1", "int", "str"),
    (1, True, "int", "bool"),
    (True, 1, "bool", "int"),
    (0, False, "int", "bool"),
    ("a", b"a", "str", "bytes"),
    (b"a", "a", "bytes", "str"),
    (1.0, "1.0", "float", "str"),
    (np.int64(1), np.str_("1"), "int64", "str_"),
    (np.int32(1), np.bool_(True), "int32", type(np.bool_(True)).__name__),  # bool_ or, in NumPy 2, bool
    (1, (1,), "int", "tuple"),
]
MIX_CONTAINERS = {
    "list": lambda v: v,
    "object ndarray": lambda v: np.array(v, dtype=object),
    "object Series, str index": lambda v: pd.Series(v, dtype=object, index=[f"r{i}" for i in range(N_ROWS)]),
}


def _mixed(first, other):
    """Row 0 and 2 hold first; row BAD_ROW is the first label of the other type."""
    values = [first if i % 2 == 0 else other for i in range(N_ROWS)]
    values[1] = values[3] = first
    return values


def _mix_params():
    for container in MIX_CONTAINERS:
        for first, other, first_type, other_type in MIXES:
            yield pytest.param(container, first, other, first_type, other_type,
                               id=f"{container}-{first_type}-{other_type}-{other!r}")


def _mix_message(name, container, first_type, other_type):
    index = [f"r{i}" for i in range(N_ROWS)] if "index" in container else None
    return (
        rf"^{name} mixes labels of two types, {first_type} and {other_type}: "
        rf"{_where(name, index, 0)} is .* and {_where(name, index, BAD_ROW)} is .*, the first label of another type"
    )


@pytest.mark.parametrize("container, first, other, first_type, other_type", list(_mix_params()))
def test_mixed_label_types_are_refused_in_every_call(make, container, first, other, first_type, other_type):
    y = MIX_CONTAINERS[container](_mixed(first, other))
    message = _mix_message("y", container, first_type, other_type)
    fitted = make().fit(X, _labels("int"))
    before = snapshot(fitted)
    with pytest.raises(ValueError, match=message):
        fitted.fit(X, y)
    assert snapshot(fitted) == before
    with pytest.raises(ValueError, match=message):
        make().partial_fit(X, y, classes=[first])
    with pytest.raises(ValueError, match=_mix_message("classes", container, first_type, other_type)):
        make().partial_fit(X, [first] * N_ROWS, classes=y)


@pytest.mark.parametrize("container", ["Categorical", "Categorical Series"])
def test_a_categorical_of_mixed_categories_is_refused(make, container):
    values = _mixed(1, "1")
    y = pd.Categorical(values) if container == "Categorical" else pd.Series(pd.Categorical(values))
    with pytest.raises(ValueError, match=r"^y mixes labels of two types, int and str: y\[0\] is 1 and y\[5\] is '1'"):
        make().fit(X, y)


@pytest.mark.parametrize("classes, y, y_type, kind", [
    ([0, 1], [0, 1, True, 1] * 3, None, None),
    ([0, 1], ["0", "1"] * 6, "str", "number"),
    ([0, 1], [False, True] * 6, "bool", "number"),
    (["a", "b"], [b"a", b"b"] * 6, "bytes", "str"),
    ([False, True], [0, 1] * 6, "int", "bool"),
])
def test_a_later_partial_fit_must_use_the_type_of_classes_(make, classes, y, y_type, kind):
    model = make().partial_fit(X, classes * 6, classes=classes)
    before = snapshot(model)
    if y_type is None:
        message = r"^y mixes labels of two types, int and bool: y\[0\] is 0 and y\[2\] is True"
    else:
        message = (rf"^y\[0\] is {re.escape(repr(y[0]))}, a label not in classes_ {re.escape(repr(classes))}: "
                   rf"it is of type {y_type} and classes_ holds {kind} labels")
    with pytest.raises(ValueError, match=message):
        model.partial_fit(X, y)
    assert snapshot(model) == before


@pytest.mark.parametrize("classes, y, y_type, kind", [
    (["0", "1"], [0, 1] * 6, "int", "str"),
    ([False, True], [0, 1] * 6, "int", "bool"),
    ([0, 1], [False, True] * 6, "bool", "number"),
    (np.array([b"x", b"y"]), np.array(["x", "y"] * 6), "str_", "bytes"),
])
def test_the_first_partial_fit_refuses_y_of_another_type_than_classes(make, classes, y, y_type, kind):
    model = make()
    with pytest.raises(ValueError, match=rf"^y\[0\] is .*, a label not in classes .*: it is of type {y_type} and "
                                         rf"classes holds {kind} labels"):
        model.partial_fit(X, y, classes=classes)
    assert not hasattr(model, "classes_")


def test_classes_of_another_type_than_classes_are_refused_even_when_numpy_finds_them_equal(make):
    model = make().partial_fit(X, [0, 1] * 6, classes=[0, 1])
    before = snapshot(model)
    assert np.array_equal(np.unique([False, True]), model.classes_)  # what made this slip through before
    with pytest.raises(ValueError, match=r"^classes= holds bool labels, but classes_ \[0, 1\] fixed by the first "
                                         r"fit holds number labels"):
        model.partial_fit(X, [0, 1] * 6, classes=[False, True])
    assert snapshot(model) == before


# ---- what stays accepted ---------------------------------------------------------------------------

def test_ints_and_floats_are_one_type_and_equal_numbers_one_class(make):
    model = make().fit(X, [1, 2.0, 1.0, 2] * 3)
    assert model.classes_.tolist() == [1.0, 2.0]
    streamed = make().partial_fit(X, [1, 2] * 6, classes=[1, 2])
    streamed.partial_fit(X, np.array([1.0, 2.0] * 6))
    streamed.partial_fit(X, np.array([1, 2] * 6, dtype=np.uint8), classes=[1.0, 2.0])
    assert streamed.classes_.tolist() == [1, 2]


@pytest.mark.parametrize("y, classes", [
    (["a", np.str_("b")] * 6, ["a", "b"]),
    (pd.Series(["a", "b"] * 6, dtype="string"), ["a", "b"]),
    (pd.Series(["a", "b"] * 6, dtype=pd.StringDtype("python")), ["a", "b"]),
    (pd.Series([3, 7] * 6, dtype="Int64"), [3, 7]),
    (pd.Series([1.0, 3.0] * 6, dtype="Float64"), [1.0, 3.0]),
    (pd.Series([False, True] * 6, dtype="boolean"), [False, True]),
    (pd.Series(pd.Categorical(["x", "y"] * 6)), ["x", "y"]),
    (pd.Series(pd.to_datetime(["2020-01-01", "2021-01-01"] * 6)), list(pd.to_datetime(["2020-01-01", "2021-01-01"]))),
])
def test_every_container_without_bad_labels_still_trains(make, y, classes):
    model = make().fit(X, y)
    assert list(model.classes_) == classes
    streamed = make().partial_fit(X, y, classes=classes)
    streamed.partial_fit(X, y)
    assert list(streamed.classes_) == classes
    assert len(streamed.loss_curve_) == 2
