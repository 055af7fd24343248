"""The shortcuts fit takes to keep its Python side small give what the long way gave.

fit skips scikit-learn's check_classification_targets for labels it can only accept, remembers the seed of an
int random_state and the parameter names of each class; each test here holds one of them against the long way.
"""
import warnings
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.multiclass import check_classification_targets

from libembetter.finetune import ContrastiveFinetuner, ContrastiveTuner, FeedForwardFinetuner
from libembetter.finetune import _base


def _warnings_of(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return sorted((w.category.__name__, str(w.message)) for w in caught)


def _labels(n_samples, n_classes, kind):
    codes = np.arange(n_samples) % n_classes
    if kind == "int":
        return codes
    if kind == "uint8":
        return codes.astype(np.uint8)
    if kind == "str":
        return np.array([f"class {code}" for code in codes])
    if kind == "object str":
        return np.array([f"class {code}" for code in codes], dtype=object)
    if kind == "list str":
        return [f"class {code}" for code in codes]
    if kind == "pandas str":
        return pd.Series([f"class {code}" for code in codes])
    if kind == "bool":
        return codes.astype(bool)
    raise AssertionError(kind)


# Sample and class counts on both sides of scikit-learn's "more than half of the labels distinct" warning
# (1.6 and newer; older releases never warn, and then neither may fit).
COUNTS = [(20, 20), (21, 10), (21, 11), (21, 12), (40, 20), (40, 21), (30, 2), (30, 30)]
KINDS = ["int", "uint8", "str", "object str", "list str", "pandas str", "bool"]


@pytest.mark.parametrize("n_samples, n_classes", COUNTS)
@pytest.mark.parametrize("kind", KINDS)
def test_fit_warns_as_check_classification_targets(n_samples, n_classes, kind):
    y = _labels(n_samples, n_classes, kind)
    X = np.random.RandomState(0).normal(size=(n_samples, 4)).astype(np.float32)
    expected = _warnings_of(lambda: check_classification_targets(np.asarray(y)))
    model = FeedForwardFinetuner(hidden_dim=3, n_epochs=1, random_state=0)
    assert _warnings_of(lambda: model.fit(X, y)) == expected
    assert len(model.classes_) == len(np.unique(np.asarray(y)))
    # partial_fit takes its first and later calls' labels through the same check.
    first = FeedForwardFinetuner(hidden_dim=3, random_state=0)
    assert _warnings_of(lambda: first.partial_fit(X, y, classes=np.unique(np.asarray(y)))) == expected
    assert _warnings_of(lambda: first.partial_fit(X, y)) == expected


def test_many_classes_warning_reaches_the_caller_when_scikit_learn_gives_it():
    y = np.arange(30)
    X = np.random.RandomState(0).normal(size=(30, 4)).astype(np.float32)
    expected = _warnings_of(lambda: check_classification_targets(y))
    caught = _warnings_of(lambda: ContrastiveFinetuner(n_epochs=1, random_state=0).fit(X, y))
    assert caught == expected
    if expected:  # scikit-learn 1.6 and newer
        assert any("greater than 50% of the number of samples" in message for _, message in caught)


@pytest.mark.parametrize("y", [
    np.array([0.5, 1.5, 2.5, 0.5]),
    np.array([Decimal(1), Decimal(2), Decimal(1), Decimal(2)], dtype=object),
], ids=["floats", "decimals"])
def test_labels_off_the_shortcut_still_meet_scikit_learn(y):
    """Floats and objects other than strings go through check_classification_targets, as they always did."""
    X = np.random.RandomState(0).normal(size=(4, 3)).astype(np.float32)
    with pytest.raises(ValueError) as from_scikit_learn:
        check_classification_targets(y)
    with pytest.raises(ValueError) as from_fit:
        FeedForwardFinetuner(hidden_dim=2, n_epochs=1).fit(X, y)
    assert str(from_fit.value) == str(from_scikit_learn.value)
    assert "Unknown label type" in str(from_fit.value)


@pytest.mark.parametrize("random_state", [0, 7, 2**32 - 1, np.int64(7), np.uint32(7), np.int8(7)])
def test_int_seed_is_the_one_a_fresh_random_state_draws(random_state):
    drawn = _base._seed_from(np.random.RandomState(int(random_state)))
    assert _base._seed_of_int(random_state) == drawn
    assert _base._seed_of_int(random_state) == drawn  # from the cache this time


def test_int_random_state_of_numpy_type_fits_as_the_python_int(blobs):
    X, y = blobs
    as_int = ContrastiveTuner(epochs=2, random_state=11).fit(X, y).transform(X)
    as_numpy = ContrastiveTuner(epochs=2, random_state=np.int32(11)).fit(X, y).transform(X)
    np.testing.assert_array_equal(as_int, as_numpy)


def test_out_of_range_seed_is_still_refused_every_time(blobs):
    X, y = blobs
    for _ in range(2):  # the first refusal must not leave anything cached
        with pytest.raises(ValueError):
            ContrastiveTuner(epochs=1, random_state=2**32).fit(X, y)


def test_parameter_names_follow_each_class_and_a_replaced_init():
    class Narrow(FeedForwardFinetuner):
        def __init__(self, hidden_dim=4, random_state=None):
            super().__init__(hidden_dim=hidden_dim, random_state=random_state)

    assert sorted(FeedForwardFinetuner().get_params()) == [
        "batch_size", "hidden_dim", "learning_rate", "n_epochs", "random_state", "verbose"]
    assert sorted(Narrow().get_params()) == ["hidden_dim", "random_state"]
    assert sorted(ContrastiveTuner().get_params()) == [
        "epochs", "hidden_dim", "learning_rate", "n_neg", "random_state", "verbose"]

    def wider_init(self, hidden_dim=4, random_state=None, n_epochs=3):
        FeedForwardFinetuner.__init__(self, hidden_dim=hidden_dim, random_state=random_state, n_epochs=n_epochs)

    Narrow.__init__ = wider_init
    assert sorted(Narrow().get_params()) == ["hidden_dim", "n_epochs", "random_state"]


def test_varargs_init_is_still_refused_by_scikit_learn():
    class Loose(FeedForwardFinetuner):
        def __init__(self, *args, hidden_dim=4):
            super().__init__(hidden_dim=hidden_dim)

    for _ in range(2):
        with pytest.raises(RuntimeError, match="no varargs"):
            Loose().get_params()


def test_bad_parameters_keep_their_messages(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match=r"The 'n_neg' parameter of ContrastiveTuner must be"):
        ContrastiveTuner(n_neg=0).fit(X, y)
    with pytest.raises(ValueError, match=r"hidden_dim is 9223372036854775808, too large"):
        ContrastiveTuner(hidden_dim=2**63).fit(X, y)
