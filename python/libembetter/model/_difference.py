import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted


class DifferenceClassifier(BaseEstimator):
    """Predict whether two inputs are alike from |enc(X1) - enc(X2)|.

    enc is any ready-to-use transformer (it is not fitted here); a classifier
    head (by default LogisticRegression(class_weight="balanced")) learns from
    the element-wise absolute difference of the two embeddings.

    Parameters:
        enc: transformer applied to both inputs.
        clf_head: classifier to train on the differences; cloned in fit. The
            fitted one is clf_head_.
    """

    def __init__(self, enc, clf_head=None):
        self.enc = enc
        self.clf_head = clf_head

    def _difference_features(self, X1, X2):
        left = np.asarray(self.enc.transform(X1))
        right = np.asarray(self.enc.transform(X2))
        if left.shape != right.shape:
            raise ValueError(
                f"X1 and X2 must hold the same number of items; their embeddings are {left.shape} and {right.shape}"
            )
        return np.abs(left - right)

    def fit(self, X1, X2, y):
        head = LogisticRegression(class_weight="balanced") if self.clf_head is None else clone(self.clf_head)
        self.clf_head_ = head.fit(self._difference_features(X1, X2), y)
        self.classes_ = self.clf_head_.classes_
        return self

    def predict(self, X1, X2):
        check_is_fitted(self)
        return self.clf_head_.predict(self._difference_features(X1, X2))

    def predict_proba(self, X1, X2):
        check_is_fitted(self)
        return self.clf_head_.predict_proba(self._difference_features(X1, X2))
