"""The names existing code already uses: ForwardFinetuner and embetter 0.9's FeedForwardTuner / ContrastiveTuner."""
import inspect

import numpy as np
import pytest
from sklearn.base import clone

from libembetter.finetune import (
    ContrastiveFinetuner,
    ContrastiveTuner,
    FeedForwardFinetuner,
    FeedForwardTuner,
    ForwardFinetuner,
)


def defaults(cls):
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}


def test_forward_finetuner_is_the_feedforward_finetuner():
    assert ForwardFinetuner is FeedForwardFinetuner


def test_signatures_of_the_current_finetuners():
    assert defaults(FeedForwardFinetuner) == dict(
        hidden_dim=50, n_epochs=500, learning_rate=0.01, batch_size=None, random_state=None, verbose=False
    )
    assert defaults(ContrastiveFinetuner) == dict(
        hidden_dim=None, n_neg=3, n_epochs=20, learning_rate=0.001, batch_size=None, random_state=None,
        verbose=False,
    )


def test_signatures_match_embetter_0_9_in_order_and_defaults():
    ff = list(defaults(FeedForwardTuner).items())
    assert ff[:4] == [("hidden_dim", 50), ("n_epochs", 500), ("learning_rate", 0.01), ("batch_size", 32)]
    contrastive = list(defaults(ContrastiveTuner).items())
    assert contrastive[:4] == [("hidden_dim", 50), ("n_neg", 3), ("epochs", 20), ("learning_rate", 0.001)]
    assert ff[4:] == contrastive[4:] == [("random_state", None), ("verbose", False)]


def test_positional_arguments_keep_0_9_meaning(blobs):
    X, y = blobs
    tuner = FeedForwardTuner(7, 4, 0.05, 10, 0).fit(X, y)
    assert tuner.get_params() == dict(
        hidden_dim=7, n_epochs=4, learning_rate=0.05, batch_size=10, random_state=0, verbose=False
    )
    assert tuner.transform(X).shape == (len(X), 7)
    assert len(tuner.loss_curve_) == 4


def test_feedforward_tuner_trains_like_the_finetuner_with_the_same_settings(blobs):
    X, y = blobs
    old = FeedForwardTuner(hidden_dim=5, n_epochs=6, random_state=2).fit(X, y)
    new = FeedForwardFinetuner(hidden_dim=5, n_epochs=6, batch_size=32, random_state=2).fit(X, y)
    np.testing.assert_array_equal(old.transform(X), new.transform(X))
    assert old.get_feature_names_out()[0] == "feedforwardtuner0"


def test_contrastive_tuner_epochs_and_fixed_pair_batches(blobs):
    X, y = blobs
    tuner = ContrastiveTuner(hidden_dim=4, epochs=7, random_state=1).fit(X, y)
    assert len(tuner.loss_curve_) == 7
    assert tuner.transform(X).shape == (len(X), 4)
    assert tuner._native.params().batch_size == ContrastiveTuner.PAIRS_PER_BATCH == 256
    same = ContrastiveFinetuner(hidden_dim=4, n_epochs=7, batch_size=256, random_state=1).fit(X, y)
    np.testing.assert_array_equal(tuner.transform(X), same.transform(X))


def test_contrastive_tuner_validates_epochs_by_its_own_name(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="'epochs'"):
        ContrastiveTuner(epochs=0).fit(X, y)
    assert "n_epochs" not in ContrastiveTuner().get_params()


@pytest.mark.parametrize("tuner", [FeedForwardTuner(n_epochs=3, hidden_dim=2), ContrastiveTuner(epochs=2, n_neg=1)])
def test_clone_and_set_params(tuner, blobs):
    X, y = blobs
    twin = clone(tuner)
    assert type(twin) is type(tuner)
    assert twin.get_params() == tuner.get_params()
    twin.set_params(hidden_dim=3, random_state=4)
    assert twin.fit(X, y).transform(X).shape == (len(X), 3)
    assert tuner.get_params()["hidden_dim"] != 3
