"""Behaviour of FeedForwardFinetuner and ContrastiveFinetuner through their Python API."""
import copy
import math
import os
import re
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner

FAST = {
    FeedForwardFinetuner: dict(hidden_dim=6, n_epochs=30, learning_rate=0.05),
    ContrastiveFinetuner: dict(hidden_dim=5, n_epochs=10, learning_rate=0.01),
}


@pytest.fixture(params=[FeedForwardFinetuner, ContrastiveFinetuner], ids=lambda cls: cls.__name__)
def make(request):
    """Build the parametrised finetuner with fast settings; keyword arguments override them."""
    cls = request.param

    def build(**overrides):
        return cls(**{**FAST[cls], "random_state": 0, **overrides})

    build.cls = cls
    return build


def snapshot(estimator, X):
    """Everything observable about a fitted finetuner, to compare before and after a call."""
    return {
        "transform": estimator.transform(X).tobytes(),
        "loss_curve": np.asarray(estimator.loss_curve_).tobytes(),
        "classes": list(estimator.classes_),
        "n_features_in": estimator.n_features_in_,
        "feature_names_in": list(getattr(estimator, "feature_names_in_", [])),
        "params": estimator.get_params(),
    }


# ---- learning ---------------------------------------------------------------------


def test_feedforward_makes_xor_linearly_separable():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(600, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    X_train, y_train, X_test, y_test = X[:400], y[:400], X[400:], y[400:]
    raw_accuracy = LogisticRegression().fit(X_train, y_train).score(X_test, y_test)

    tuner = FeedForwardFinetuner(hidden_dim=16, n_epochs=500, learning_rate=0.05, random_state=0)
    tuner.fit(X_train, y_train)
    tuned_accuracy = (
        LogisticRegression().fit(tuner.transform(X_train), y_train).score(tuner.transform(X_test), y_test)
    )

    assert raw_accuracy < 0.65  # no line separates XOR in the raw space
    assert tuned_accuracy > 0.9
    assert tuner.loss_curve_[-1] < 0.25 * tuner.loss_curve_[0]


def test_contrastive_makes_cosine_neighbours_share_labels():
    rng = np.random.RandomState(0)
    n = 600
    y = rng.randint(0, 3, n)
    centres = 2 * rng.normal(size=(3, 2))
    # Two informative columns drowned by 18 loud noise columns: raw cosine similarity mostly sees noise.
    X = np.concatenate([centres[y] + 0.5 * rng.normal(size=(n, 2)), 3 * rng.normal(size=(n, 18))], axis=1)
    X = X.astype(np.float32)
    X_train, y_train, X_test, y_test = X[:400], y[:400], X[400:], y[400:]

    def cosine_knn_accuracy(train, test):
        return KNeighborsClassifier(5, metric="cosine").fit(train, y_train).score(test, y_test)

    tuner = ContrastiveFinetuner(n_epochs=100, learning_rate=0.01, random_state=0).fit(X_train, y_train)
    raw = cosine_knn_accuracy(X_train, X_test)
    tuned = cosine_knn_accuracy(tuner.transform(X_train), tuner.transform(X_test))

    assert tuned > 0.85
    assert tuned > raw + 0.2
    assert tuner.transform(X_test).shape == (200, 20)  # hidden_dim=None keeps the input width


def test_loss_curve_has_one_entry_per_epoch(make, blobs):
    X, y = blobs
    tuner = make(n_epochs=12).fit(X, y)
    curve = np.asarray(tuner.loss_curve_)
    assert curve.shape == (12,)
    assert np.all(np.isfinite(curve))
    assert curve[-1] < curve[0]


# ---- outputs ----------------------------------------------------------------------


def test_transform_shape_dtype_and_fit_transform(make, blobs):
    X, y = blobs
    tuner = make()
    Z = tuner.fit_transform(X, y)
    assert Z.dtype == np.float32
    assert Z.shape == (len(X), FAST[make.cls]["hidden_dim"])
    np.testing.assert_array_equal(Z, tuner.transform(X))


def test_feedforward_output_is_a_sigmoid_layer(blobs):
    X, y = blobs
    Z = FeedForwardFinetuner(hidden_dim=7, n_epochs=20, random_state=1).fit_transform(X, y)
    assert Z.shape == (len(X), 7)
    assert np.all((Z > 0) & (Z < 1))


def test_float64_and_list_inputs_match_float32(make, blobs):
    X, y = blobs
    tuner = make().fit(X.astype(np.float64), y)
    reference = make().fit(X, y)
    np.testing.assert_array_equal(tuner.transform(X.astype(np.float64)), reference.transform(X))
    np.testing.assert_array_equal(tuner.transform(X.tolist()), reference.transform(X))


def test_dataframe_feature_names_and_pandas_output(make, blobs):
    X, y = blobs
    frame = pd.DataFrame(X, columns=[f"dim_{i}" for i in range(X.shape[1])], index=np.arange(len(X)) * 10)
    tuner = make().fit(frame, y)
    assert list(tuner.feature_names_in_) == list(frame.columns)
    prefix = make.cls.__name__.lower()
    width = FAST[make.cls]["hidden_dim"]
    assert list(tuner.get_feature_names_out()) == [f"{prefix}{i}" for i in range(width)]

    tuner.set_output(transform="pandas")
    out = tuner.transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(tuner.get_feature_names_out())
    assert list(out.index) == list(frame.index)
    np.testing.assert_array_equal(out.to_numpy(), make().fit(X, y).transform(X))
    fitted_out = make().set_output(transform="pandas").fit_transform(frame, y)
    assert isinstance(fitted_out, pd.DataFrame)
    pd.testing.assert_frame_equal(fitted_out, out)


def test_contrastive_default_width_follows_the_input():
    X = np.random.RandomState(0).normal(size=(40, 9)).astype(np.float32)
    y = np.arange(40) % 2
    tuner = ContrastiveFinetuner(n_epochs=2, random_state=0).fit(X, y)
    assert tuner.transform(X).shape == (40, 9)
    assert len(tuner.get_feature_names_out()) == 9


# ---- labels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["spam", "ham", "eggs"]),
        np.array([30, 10, 20]),
        np.array([3.0, -1.0, 2.0]),
        np.array(["b", "a", "c"], dtype=object),
    ],
    ids=["str", "int", "float", "object"],
)
def test_labels_of_any_type_train_like_their_indices(make, blobs, labels):
    X, y = blobs
    sorted_labels = np.sort(labels)
    relabelled = sorted_labels[y]  # index i of the sorted labels plays class i
    tuner = make().fit(X, relabelled)
    np.testing.assert_array_equal(tuner.classes_, sorted_labels)
    np.testing.assert_array_equal(tuner.transform(X), make().fit(X, y).transform(X))


def test_boolean_labels(make, blobs):
    X, y = blobs
    tuner = make().fit(X, y == 0)
    np.testing.assert_array_equal(tuner.classes_, [False, True])
    np.testing.assert_array_equal(tuner.transform(X), make().fit(X, (y == 0).astype(int)).transform(X))


def test_continuous_targets_are_rejected(make, blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="continuous"):
        make().fit(X, np.linspace(0, 1, len(X)) + 0.01)


def test_contrastive_needs_two_classes(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="at least 2 classes.*y has 1 class"):
        ContrastiveFinetuner(n_epochs=2).fit(X, np.zeros(len(X)))


def test_feedforward_accepts_a_single_class(blobs):
    X, _ = blobs
    tuner = FeedForwardFinetuner(hidden_dim=3, n_epochs=3, random_state=0).fit(X, np.full(len(X), "only"))
    assert list(tuner.classes_) == ["only"]
    assert tuner.transform(X).shape == (len(X), 3)


# ---- random_state -------------------------------------------------------------------------


def test_fixed_seed_gives_identical_results(make, blobs):
    X, y = blobs
    first = make(random_state=7).fit(X, y).transform(X)
    again = make(random_state=7).fit(X, y).transform(X)
    refit = make(random_state=7)
    refit.fit(X, y)
    refit.fit(X, y)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, refit.transform(X))
    assert not np.array_equal(first, make(random_state=8).fit(X, y).transform(X))


def test_random_state_instance_matches_int_and_advances(make, blobs):
    X, y = blobs
    from_int = make(random_state=5).fit(X, y).transform(X)
    shared = np.random.RandomState(5)
    tuner = make(random_state=shared)
    first = tuner.fit(X, y).transform(X)
    second = tuner.fit(X, y).transform(X)
    np.testing.assert_array_equal(first, from_int)
    assert not np.array_equal(first, second)


def test_no_random_state_differs_between_fits(make, blobs):
    X, y = blobs
    tuner = make(random_state=None)
    assert not np.array_equal(tuner.fit(X, y).transform(X), tuner.fit(X, y).transform(X))


def test_minibatches_differ_from_full_batch_and_stay_deterministic(make, blobs):
    X, y = blobs
    full = make().fit(X, y).transform(X)
    batched = make(batch_size=16).fit(X, y).transform(X)
    assert not np.array_equal(full, batched)
    np.testing.assert_array_equal(batched, make(batch_size=16).fit(X, y).transform(X))


# ---- parameter validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "param, value",
    [
        ("hidden_dim", 0),
        ("hidden_dim", -3),
        ("hidden_dim", 2.5),
        ("hidden_dim", "wide"),
        ("n_epochs", 0),
        ("learning_rate", 0.0),
        ("learning_rate", -0.1),
        ("learning_rate", math.nan),
        ("learning_rate", math.inf),
        ("learning_rate", "fast"),
        ("batch_size", 0),
        ("batch_size", -1),
        ("random_state", "seed"),
    ],
)
def test_invalid_parameters_are_named_in_fit(make, blobs, param, value):
    X, y = blobs
    tuner = make(**{param: value})  # __init__ only stores
    assert tuner.get_params()[param] is value
    with pytest.raises(ValueError, match=param):
        tuner.fit(X, y)
    with pytest.raises(ValueError, match=param):
        make(**{param: value}).partial_fit(X, y, classes=np.unique(y))


@pytest.mark.parametrize("value, rounded", [(1e-50, "0.0"), (1e-60, "0.0"), (1e39, "inf")])
def test_learning_rate_that_float32_cannot_hold_is_named_as_given(make, blobs, value, rounded):
    # Once reported as "learning_rate is 0", the float32 the C library received, not the value given.
    X, y = blobs
    with pytest.raises(ValueError) as raised:
        make(learning_rate=value).fit(X, y)
    assert f"learning_rate is {value!r}, which is {rounded} in float32" in str(raised.value)
    with pytest.raises(ValueError, match=re.escape(f"learning_rate is {value!r}")):
        make(learning_rate=value).partial_fit(X, y, classes=np.unique(y))
    # The smallest positive float32 is still a (useless but valid) learning rate.
    make(learning_rate=1e-45, n_epochs=1).fit(X, y)


def test_contrastive_n_neg_is_validated(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="n_neg"):
        ContrastiveFinetuner(n_neg=0).fit(X, y)


def test_contrastive_hidden_dim_none_is_allowed_but_feedforward_needs_a_width(blobs):
    X, y = blobs
    assert ContrastiveFinetuner(hidden_dim=None, n_epochs=1).fit(X, y).transform(X).shape == X.shape
    with pytest.raises(ValueError, match="hidden_dim"):
        FeedForwardFinetuner(hidden_dim=None, n_epochs=1).fit(X, y)


def test_huge_values_are_reported_not_overflowed(make, blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="hidden_dim"):
        make(hidden_dim=2**70).fit(X, y)


# ---- input errors --------------------------------------------------------------------------------


def test_nan_and_inf_are_reported_with_row_and_column(make, blobs):
    X, y = blobs
    bad = X.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"X\[4, 2\] is NaN \(row 4, column 2\)"):
        make().fit(bad, y)
    fitted = make().fit(X, y)
    bad[4, 2] = -np.inf
    with pytest.raises(ValueError, match=r"X\[4, 2\] is -Inf.*NaN or infinity"):
        fitted.transform(bad)


def test_transform_before_fit_is_not_fitted_error(make, blobs):
    X, _ = blobs
    with pytest.raises(NotFittedError):
        make().transform(X)
    with pytest.raises(AttributeError):
        make().loss_curve_


def test_shape_errors(make, blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="Expected 2D array"):
        make().fit(X[:, 0], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        make().fit(X, y[:-1])
    with pytest.raises(ValueError, match="0 sample"):
        make().fit(X[:0], y[:0])
    fitted = make().fit(X, y)
    with pytest.raises(ValueError, match=f"X has 3 features, but {make.cls.__name__} is expecting 8"):
        fitted.transform(X[:, :3])
    with pytest.raises(ValueError, match="requires y"):
        make().fit(X, None)


# ---- a failed call leaves the model as it was ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_failed_calls_leave_a_fitted_model_unchanged(make, blobs):
    X, y = blobs
    frame = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    tuner = make().fit(frame, y)
    before = snapshot(tuner, frame)
    nan_X = X.copy()
    nan_X[1, 1] = np.nan
    failing_calls = [
        lambda: tuner.fit(nan_X, y),
        lambda: tuner.fit(X[:0], y[:0]),
        lambda: tuner.fit(X, y[:-1]),
        lambda: tuner.fit(X, np.linspace(0, 1, len(X)) + 0.5),
        lambda: tuner.partial_fit(frame, np.full(len(X), 99)),
        lambda: tuner.partial_fit(X[:, :5], y),
        lambda: tuner.partial_fit(pd.DataFrame(nan_X, columns=frame.columns), y),
        lambda: tuner.partial_fit(frame, y, classes=[0, 1, 2, 3]),
        lambda: tuner.transform(X[:, :2]),
    ]
    for call in failing_calls:
        with pytest.raises(ValueError):
            call()
        assert snapshot(tuner, frame) == before

    tuner.set_params(hidden_dim=0)
    with pytest.raises(ValueError, match="hidden_dim"):
        tuner.fit(frame, y)
    tuner.set_params(hidden_dim=FAST[make.cls]["hidden_dim"])
    assert snapshot(tuner, frame) == before


def test_failed_first_partial_fit_leaves_the_model_unfitted(make, blobs):
    X, y = blobs
    tuner = make()
    with pytest.raises(ValueError, match="classes must be given"):
        tuner.partial_fit(X, y)
    with pytest.raises(ValueError, match=r"y\[\d+\] is 2, a label not in classes_"):
        tuner.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(NotFittedError):
        tuner.transform(X)
    assert not hasattr(tuner, "n_features_in_")
    assert not hasattr(tuner, "classes_")


# ---- partial_fit --------------------------------------------------------------------------------------


def test_partial_fit_once_equals_fit_for_one_epoch(make, blobs):
    X, y = blobs
    streamed = make().partial_fit(X, y, classes=np.unique(y))
    fitted = make(n_epochs=1).fit(X, y)
    np.testing.assert_array_equal(streamed.transform(X), fitted.transform(X))
    assert len(streamed.loss_curve_) == 1


def test_partial_fit_continues_and_appends_to_the_loss_curve(make, blobs):
    X, y = blobs
    labels = np.array(["x", "y", "z"])[y]
    tuner = make().partial_fit(X[:40], labels[:40], classes=["z", "y", "x"])
    np.testing.assert_array_equal(tuner.classes_, ["x", "y", "z"])
    previous = tuner.transform(X)
    for round_ in range(2, 6):
        start = (round_ * 20) % len(X)
        tuner.partial_fit(X[start:start + 40], labels[start:start + 40])
        assert len(tuner.loss_curve_) == round_
        current = tuner.transform(X)
        assert not np.array_equal(current, previous)
        previous = current
    tuner.partial_fit(X, labels, classes=["x", "y", "z"])  # repeating the classes is allowed
    assert len(tuner.loss_curve_) == 6


def test_partial_fit_after_fit_keeps_classes_and_history(make, blobs):
    X, y = blobs
    tuner = make(n_epochs=4).fit(X, y)
    before = tuner.transform(X)
    tuner.partial_fit(X, y)
    assert len(tuner.loss_curve_) == 5
    np.testing.assert_array_equal(tuner.classes_, [0, 1, 2])
    assert not np.array_equal(before, tuner.transform(X))


def test_partial_fit_checks_classes_and_width(make, blobs):
    X, y = blobs
    tuner = make().partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"classes=\[0, 1\] differs from classes_ \[0, 1, 2, 3\]"):
        tuner.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"y\[0\] is 7, a label not in classes_"):
        tuner.partial_fit(X[:3], [7, 0, 1])
    with pytest.raises(ValueError, match="X has 7 features"):
        tuner.partial_fit(X[:, :7], y)
    with pytest.raises(ValueError, match=r"y\[0\] is 'a', a label not in classes_"):
        tuner.partial_fit(X[:3], ["a", "b", "c"])


def test_partial_fit_checks_dataframe_column_names(make, blobs):
    X, y = blobs
    columns = [f"c{i}" for i in range(X.shape[1])]
    tuner = make().partial_fit(pd.DataFrame(X, columns=columns), y, classes=np.unique(y))
    with pytest.raises(ValueError, match="feature names should match"):
        tuner.partial_fit(pd.DataFrame(X, columns=columns[::-1]), y)


def test_partial_fit_trains_with_the_current_hyperparameters(make, blobs):
    X, y = blobs
    slow, fast = make().partial_fit(X, y, classes=np.unique(y)), make().partial_fit(X, y, classes=np.unique(y))
    fast.set_params(learning_rate=fast.learning_rate * 10, batch_size=7)
    untouched = make().partial_fit(X, y, classes=np.unique(y))
    slow.partial_fit(X, y)
    fast.partial_fit(X, y)
    untouched.partial_fit(X, y)
    # Same weights before the second pass; only the new step size and batches tell them apart.
    np.testing.assert_array_equal(slow.transform(X), untouched.transform(X))
    assert not np.array_equal(slow.transform(X), fast.transform(X))
    # The same change through a fresh model gives the same result: the new settings are exactly the ones used.
    replay = make().partial_fit(X, y, classes=np.unique(y))
    replay.set_params(learning_rate=replay.learning_rate * 10, batch_size=7)
    replay.partial_fit(X, y)
    np.testing.assert_array_equal(replay.transform(X), fast.transform(X))


def test_partial_fit_refuses_a_new_hidden_dim_and_stays_unchanged(make, blobs):
    X, y = blobs
    tuner = make().partial_fit(X, y, classes=np.unique(y))
    before = snapshot(tuner, X)
    tuner.set_params(hidden_dim=3)
    with pytest.raises(ValueError, match="hidden_dim is 3 but the fitted model's .*set hidden_dim back to"):
        tuner.partial_fit(X, y)
    tuner.set_params(hidden_dim=FAST[make.cls]["hidden_dim"])
    assert snapshot(tuner, X) == before
    with pytest.raises(ValueError, match="learning_rate"):
        tuner.set_params(learning_rate=-1.0).partial_fit(X, y)
    tuner.set_params(learning_rate=FAST[make.cls]["learning_rate"])
    assert snapshot(tuner, X) == before


def test_contrastive_partial_fit_needs_two_classes_declared(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="at least 2 classes"):
        ContrastiveFinetuner().partial_fit(X, np.zeros(len(X)), classes=[0])
    tuner = ContrastiveFinetuner(n_epochs=1, random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    tuner.partial_fit(X[y == 1], y[y == 1])  # later batches may hold one label
    assert len(tuner.loss_curve_) == 2


# ---- progress and interruption --------------------------------------------------------------------------


def test_verbose_shows_a_progress_bar_with_the_loss(make, blobs, capsys):
    X, y = blobs
    make(n_epochs=9, verbose=True).fit(X, y)
    err = capsys.readouterr().err
    assert make.cls.__name__ in err
    assert "9/9" in err
    assert "loss=" in err
    make(n_epochs=9).fit(X, y)
    assert capsys.readouterr().err == ""


class InterruptingBar:
    """Stands in for tqdm and raises KeyboardInterrupt on its third update, as Ctrl-C would."""

    instances = []

    def __init__(self, total, **kwargs):
        self.total = total
        self.updates = 0
        self.n = 0  # tqdm's count of completed steps
        self.closed = False
        InterruptingBar.instances.append(self)

    def set_postfix(self, **kwargs):
        pass

    def update(self, n):
        self.updates += n
        self.n += n
        if self.updates == 3:
            raise KeyboardInterrupt

    def close(self):
        self.closed = True


def test_an_exception_in_the_progress_callback_stops_training(make, blobs, monkeypatch):
    import tqdm.std

    X, y = blobs
    # Outside Jupyter the bar is tqdm's text bar.
    monkeypatch.setattr(tqdm.std, "tqdm", InterruptingBar)
    InterruptingBar.instances.clear()
    tuner = make(n_epochs=3).fit(X, y)
    before = snapshot(tuner, X)

    tuner.set_params(n_epochs=200, verbose=True)
    with pytest.raises(KeyboardInterrupt):
        tuner.fit(X, y)
    bar = InterruptingBar.instances[-1]
    assert bar.total == 200
    assert bar.updates == 3  # the C loop stopped when the callback said so
    assert bar.closed
    tuner.set_params(n_epochs=3, verbose=False)
    assert snapshot(tuner, X) == before

    fresh = make(n_epochs=200, verbose=True)
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(X, y)
    with pytest.raises(NotFittedError):
        fresh.transform(X)


def test_ctrl_c_interrupts_a_long_fit(make):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 16)).astype(np.float32)
    y = np.arange(200) % 2
    tuner = make(n_epochs=10**9)  # days of training unless the interrupt works
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGINT))
    # A shell starts background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            tuner.fit(X, y)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous_handler)
    assert time.monotonic() - started < 30
    with pytest.raises(NotFittedError):
        tuner.transform(X)


# ---- copies ---------------------------------------------------------------------------------------------


def test_deepcopy_is_independent(make, blobs):
    X, y = blobs
    tuner = make().fit(X, y)
    twin = copy.deepcopy(tuner)
    np.testing.assert_array_equal(twin.transform(X), tuner.transform(X))
    twin.partial_fit(X, y)
    tuner.partial_fit(X, y)
    np.testing.assert_array_equal(twin.transform(X), tuner.transform(X))
    twin.partial_fit(X, y)
    assert not np.array_equal(twin.transform(X), tuner.transform(X))
