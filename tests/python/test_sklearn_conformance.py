"""scikit-learn's own estimator checks, plus the meta-estimators people combine the finetuners with."""
import inspect

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import make_blobs_dataset
from libembetter.finetune import ContrastiveFinetuner, ContrastiveTuner, FeedForwardFinetuner, FeedForwardTuner
from libembetter.finetune._base import EXPECTED_FAILED_CHECKS

# Few epochs keep the whole check suite at a few seconds.
CHECKED = [
    FeedForwardFinetuner(hidden_dim=4, n_epochs=5, random_state=0),
    ContrastiveFinetuner(hidden_dim=3, n_epochs=3, random_state=0),
    FeedForwardTuner(hidden_dim=4, n_epochs=5, random_state=0),
    ContrastiveTuner(hidden_dim=3, epochs=3, random_state=0),
]

# scikit-learn 1.6 and newer take the expected failures here (and ignore the _xfail_checks tag);
# 1.2 to 1.5 have no such parameter and read the estimators' _xfail_checks tag instead.
TAKES_EXPECTED_FAILED_CHECKS = "expected_failed_checks" in inspect.signature(parametrize_with_checks).parameters

if TAKES_EXPECTED_FAILED_CHECKS:
    checks = parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
else:
    checks = parametrize_with_checks(CHECKED)


@checks
def test_sklearn_estimator_checks(estimator, check, monkeypatch):
    if getattr(check, "func", check).__name__.startswith("check_array_api"):
        # scikit-learn 1.9 skips its array API checks unless SCIPY_ARRAY_API is set; with the NumPy
        # namespace it checks (array_api_dispatch on, NumPy input) nothing else is needed to run it.
        monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


@pytest.mark.parametrize("estimator", CHECKED, ids=lambda e: type(e).__name__)
def test_declared_check_failures_fail_for_the_stated_reason(estimator):
    # The declaration must be true: these checks fail only because partial_fit demands classes
    # on its first call. (scikit-learn 1.2's parametrize_with_checks does not run them; newer
    # releases do, and so does this test on every release.)
    assert set(EXPECTED_FAILED_CHECKS) == {
        "check_n_features_in_after_fitting",
        "check_estimators_partial_fit_n_features",
        "check_dataframe_column_names_consistency",
    }
    if not TAKES_EXPECTED_FAILED_CHECKS:
        assert estimator._get_tags()["_xfail_checks"] == EXPECTED_FAILED_CHECKS
    for check_name, reason in EXPECTED_FAILED_CHECKS.items():
        assert "classes" in reason
        with pytest.raises(ValueError, match="classes must be given on the first call to partial_fit"):
            getattr(estimator_checks, check_name)(type(estimator).__name__, estimator)


@pytest.fixture
def split_blobs():
    X, y = make_blobs_dataset(n_per_class=40, n_features=10, n_classes=3, spread=1.5, seed=3)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


@pytest.mark.parametrize(
    "tuner",
    [
        FeedForwardFinetuner(hidden_dim=8, n_epochs=100, learning_rate=0.05, random_state=0),
        ContrastiveFinetuner(hidden_dim=8, n_epochs=30, learning_rate=0.01, random_state=0),
    ],
    ids=["feedforward", "contrastive"],
)
def test_pipeline_with_a_classifier(tuner, split_blobs):
    X_train, X_test, y_train, y_test = split_blobs
    pipe = make_pipeline(StandardScaler(), tuner, LogisticRegression(max_iter=1000))
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) > 0.9
    assert pipe[1].n_features_in_ == 10


def test_clone_copies_params_not_state(split_blobs):
    X_train, _, y_train, _ = split_blobs
    tuner = FeedForwardFinetuner(hidden_dim=5, n_epochs=7, batch_size=16, random_state=3).fit(X_train, y_train)
    twin = clone(tuner)
    assert twin.get_params() == tuner.get_params()
    assert not hasattr(twin, "classes_")
    np.testing.assert_array_equal(twin.fit(X_train, y_train).transform(X_train), tuner.transform(X_train))


def test_grid_search_over_hidden_dim(split_blobs):
    X_train, X_test, y_train, y_test = split_blobs
    pipe = Pipeline(
        [
            ("tune", FeedForwardFinetuner(n_epochs=60, learning_rate=0.05, random_state=0)),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    search = GridSearchCV(pipe, {"tune__hidden_dim": [1, 8]}, cv=3).fit(X_train, y_train)
    scores = dict(zip(search.cv_results_["param_tune__hidden_dim"], search.cv_results_["mean_test_score"]))
    assert set(scores) == {1, 8}
    assert search.best_params_ == {"tune__hidden_dim": 8}
    assert scores[8] > scores[1]  # one sigmoid unit cannot keep three classes apart
    assert search.best_estimator_["tune"].transform(X_test).shape == (len(X_test), 8)
    assert search.score(X_test, y_test) > 0.9


def test_grid_search_in_worker_processes(split_blobs):
    X_train, _, y_train, _ = split_blobs
    pipe = make_pipeline(ContrastiveFinetuner(n_epochs=10, random_state=0), LogisticRegression(max_iter=500))
    search = GridSearchCV(pipe, {"contrastivefinetuner__hidden_dim": [2, 6]}, cv=2, n_jobs=2)
    search.fit(X_train, y_train)
    serial = GridSearchCV(pipe, {"contrastivefinetuner__hidden_dim": [2, 6]}, cv=2).fit(X_train, y_train)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])


@pytest.mark.parametrize(
    "tuner",
    [
        FeedForwardFinetuner(hidden_dim=8, n_epochs=80, learning_rate=0.05, random_state=0),
        ContrastiveFinetuner(n_epochs=30, learning_rate=0.01, random_state=0),
    ],
    ids=["feedforward", "contrastive"],
)
def test_cross_val_score_with_logistic_regression(tuner):
    X, y = make_blobs_dataset(n_per_class=40, n_features=10, n_classes=3, spread=1.5, seed=3)
    scores = cross_val_score(make_pipeline(tuner, LogisticRegression(max_iter=1000)), X, y, cv=4)
    assert scores.shape == (4,)
    assert scores.mean() > 0.9
