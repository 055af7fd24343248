"""libembetter.grab, libembetter.utils and libembetter.model."""
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from libembetter.finetune import FeedForwardFinetuner
from libembetter.grab import ColumnGrabber, KeyGrabber
from libembetter.model import DifferenceClassifier
from libembetter.utils import batched, cached, calc_distances


class LetterCounts(BaseEstimator, TransformerMixin):
    """A tiny text encoder: counts of a, b and c; counts how many texts it has embedded."""

    def __init__(self):
        self.calls = []

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = list(X)
        self.calls.append(X)
        return np.array([[text.count(letter) for letter in "abc"] for text in X], dtype=float)


# ---- grab -------------------------------------------------------------------------------


def test_column_grabber_returns_a_list_and_fits_in_a_pipeline():
    frame = pd.DataFrame({"text": ["aab", "ccc", "abc"], "other": [1, 2, 3]})
    grabber = ColumnGrabber("text")
    assert grabber.fit(frame).transform(frame) == ["aab", "ccc", "abc"]
    assert make_pipeline(ColumnGrabber("text"), LetterCounts()).fit_transform(frame).tolist() == [
        [2, 1, 0],
        [0, 0, 3],
        [1, 1, 1],
    ]
    with pytest.raises(KeyError, match="no column 'txt'"):
        ColumnGrabber("txt").transform(frame)
    assert ColumnGrabber("text").partial_fit(frame) is not None


def test_key_grabber_on_dicts_and_generators():
    rows = [{"text": "a", "id": 1}, {"text": "bb", "id": 2}]
    assert KeyGrabber("text").transform(rows) == ["a", "bb"]
    assert KeyGrabber("id").transform(row for row in rows) == [1, 2]
    assert KeyGrabber("text").transform({"text": ["x", "y"]}) == ["x", "y"]
    with pytest.raises(KeyError, match="item 1 has no key 'text'"):
        KeyGrabber("text").transform([{"text": "a"}, {"id": 3}])
    assert KeyGrabber("text").get_params() == {"colname": "text"}


# ---- utils ----------------------------------------------------------------------------------


def test_batched_yields_consecutive_chunks():
    assert list(batched(range(7), n=3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched(iter("abcd"), n=2)) == [["a", "b"], ["c", "d"]]
    assert list(batched([], n=4)) == []
    assert sum(len(b) for b in batched(range(1000))) == 1000
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            list(batched([1, 2], n=bad))


def test_calc_distances_aggregates_over_anchors():
    encoder = LetterCounts()
    inputs = ["aaa", "bbb", "ab"]
    anchors = ["a", "b"]
    nearest = calc_distances(inputs, anchors, encoder, aggregate=np.min)
    np.testing.assert_allclose(nearest, [0.0, 0.0, 1 - np.sqrt(0.5)], atol=1e-12)
    farthest = calc_distances(inputs, anchors, encoder, metric="euclidean", aggregate=np.max)
    np.testing.assert_allclose(farthest, [np.sqrt(9 + 1), np.sqrt(1 + 9), np.sqrt(1 + 0)])


def test_calc_distances_can_embed_anchors_differently():
    class Doubled(LetterCounts):
        def transform(self, X):
            return 2 * super().transform(X)

    distances = calc_distances(["a"], ["a"], LetterCounts(), anchor_pipeline=Doubled(), metric="euclidean")
    np.testing.assert_allclose(distances, [1.0])


def test_cached_computes_each_new_item_once_and_keeps_order(tmp_path):
    encoder = cached(str(tmp_path / "cache"), LetterCounts())
    first = encoder.transform(["ab", "cc", "ab"])
    np.testing.assert_array_equal(first, [[1, 1, 0], [0, 0, 2], [1, 1, 0]])
    assert encoder.calls == [["ab", "cc"]]
    second = encoder.transform(["cc", "abc", "ab"])
    np.testing.assert_array_equal(second, [[0, 0, 2], [1, 1, 1], [1, 1, 0]])
    assert encoder.calls == [["ab", "cc"], ["abc"]]
    encoder.transform(["abc", "cc"])
    assert len(encoder.calls) == 2  # everything came from the cache

    # The cache lives on disk: a fresh encoder with the same name reuses it.
    again = cached(str(tmp_path / "cache"), LetterCounts())
    np.testing.assert_array_equal(again.transform(["abc"]), [[1, 1, 1]])
    assert again.calls == []


def test_cached_rejects_a_transform_that_loses_rows(tmp_path):
    class Lossy(LetterCounts):
        def transform(self, X):
            return super().transform(X)[:1]

    with pytest.raises(ValueError, match="returned 1 rows for 2 inputs"):
        cached(str(tmp_path / "c"), Lossy()).transform(["a", "b"])


# ---- model --------------------------------------------------------------------------------------


def test_difference_classifier_learns_similarity():
    rng = np.random.RandomState(0)
    words = ["aaa", "bbb", "ccc", "aab", "bbc", "cca"]
    left = [words[i] for i in rng.randint(0, 6, 300)]
    right = [words[i] for i in rng.randint(0, 6, 300)]
    similar = np.array([a == b for a, b in zip(left, right)])
    model = DifferenceClassifier(enc=LetterCounts()).fit(left, right, similar)
    assert isinstance(model.clf_head_, LogisticRegression)
    assert model.clf_head_.class_weight == "balanced"
    assert (model.predict(left, right) == similar).mean() > 0.95
    proba = model.predict_proba(["aaa", "aaa"], ["aaa", "ccc"])
    assert proba.shape == (2, 2)
    assert proba[0, 1] > 0.5 > proba[1, 1]


def test_difference_classifier_uses_a_clone_of_the_given_head():
    head = LogisticRegression(C=0.5)
    model = DifferenceClassifier(enc=LetterCounts(), clf_head=head).fit(["a", "b"] * 5, ["a", "a"] * 5, [1, 0] * 5)
    assert model.clf_head_ is not head and model.clf_head_.C == 0.5
    assert not hasattr(head, "coef_")
    with pytest.raises(ValueError, match="same number of items"):
        model.predict(["a", "b"], ["a"])


def test_difference_classifier_on_finetuned_embeddings(blobs):
    X, y = blobs
    tuner = FeedForwardFinetuner(hidden_dim=6, n_epochs=60, learning_rate=0.05, random_state=0).fit(X, y)
    rng = np.random.RandomState(1)
    i, j = rng.randint(0, len(X), 400), rng.randint(0, len(X), 400)
    model = DifferenceClassifier(enc=tuner).fit(X[i], X[j], y[i] == y[j])
    assert (model.predict(X[i], X[j]) == (y[i] == y[j])).mean() > 0.9
