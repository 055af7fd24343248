"""The fortunes pairs on which ContrastiveLearner is compared with embetter 0.9's (test_contrastive_learner.py).

One definition for both sides: scripts/make_contrastive_learner_reference.py runs embetter 0.9.1 on these
pairs (in a venv with PyTorch) and records its quality in tests/fixtures/contrastive-learner/reference.json;
the test runs libembetter on the very same pairs. Only numpy and scikit-learn are needed here: the features
are scikit-learn's HashingVectorizer counts, which depend on nothing but the texts, so both environments
compute the same matrices without shipping them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "examples" / "python"))
import fortunes_data  # noqa: E402

# What both sides train with: a learning rate and epoch count at which the network moves well away from its
# initial weights (0.9's defaults, 2e-5 for one epoch, hardly change it, which would compare initialisations).
HYPERPARAMETERS = {"shape_out": 64, "batch_size": 16, "epochs": 8, "learning_rate": 1e-3}
SEEDS = (0, 1, 2, 3, 4)
ROWS_PER_CATEGORY = 60  # for training; as many again are held out
PAIRS_PER_ROW = 2  # positives, and as many negatives
N_FEATURES = 256
K_NEIGHBOURS = 5


def _features(texts):
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=N_FEATURES,
                                   alternate_sign=False, norm="l2")
    return vectorizer.transform(texts).toarray().astype(np.float32)


def category_pairs(labels, seed, per_row=PAIRS_PER_ROW):
    """Index pairs over rows with labels: per row, per_row of its category (1.0) and of others (0.0), shuffled.

    (left, right, similarity); benchmarks/vs_embetter.py draws its pairs with this too.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    left, right, target = [], [], []
    for row, label in enumerate(labels):
        same = np.flatnonzero((labels == label) & (np.arange(len(labels)) != row))
        other = np.flatnonzero(labels != label)
        for partner in rng.choice(same, per_row, replace=False):
            left.append(row), right.append(partner), target.append(1.0)
        for partner in rng.choice(other, per_row, replace=False):
            left.append(row), right.append(partner), target.append(0.0)
    order = rng.permutation(len(left))
    return np.array(left)[order], np.array(right)[order], np.array(target, dtype=np.float32)[order]


def load():
    """Train and held-out rows, labels and pairs: a dict of arrays, the same on every machine with fortunes."""
    texts, labels = fortunes_data.load_fortunes()
    rng = np.random.RandomState(0)
    train, test = [], []
    for category in fortunes_data.DEFAULT_CATEGORIES:
        rows = rng.permutation(np.flatnonzero(labels == category))
        train.extend(rows[:ROWS_PER_CATEGORY])
        test.extend(rows[ROWS_PER_CATEGORY:2 * ROWS_PER_CATEGORY])
    X = _features([texts[i] for i in train + test])
    X_train, X_test = X[:len(train)], X[len(train):]
    y_train, y_test = labels[train], labels[test]
    train_left, train_right, train_target = category_pairs(y_train, seed=1)
    test_left, test_right, test_target = category_pairs(y_test, seed=2)
    return {
        "X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test,
        "X1": X_train[train_left], "X2": X_train[train_right], "similarity": train_target,
        "X1_test": X_test[test_left], "X2_test": X_test[test_right], "similarity_test": test_target,
    }


def cosine(A, B):
    """Row-wise cosine of two embeddings, 0 where a row is all zeros (as the C library's predict)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    norms = np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1)
    dots = np.einsum("ij,ij->i", A, B)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def quality(data, transform, predicted_cosine):
    """(ROC AUC of the predicted cosine on the held-out pairs, 5-NN accuracy on the held-out rows' embedding)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import KNeighborsClassifier

    auc = roc_auc_score(data["similarity_test"], predicted_cosine)
    knn = KNeighborsClassifier(n_neighbors=K_NEIGHBOURS, metric="cosine")
    knn.fit(transform(data["X_train"]), data["y_train"])
    accuracy = knn.score(transform(data["X_test"]), data["y_test"])
    return float(auc), float(accuracy)
