from typing import Any

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
        clf_head: classifier to train on the differences, or None for the
            default; fit trains a clone of it, so the object passed in stays
            unfitted and can be shared.

    After fit, `model.clf_head` reads the fitted head, where embetter 0.9's
    documentation looks for it (also available as `clf_head_`). The
    parameter itself is unchanged: get_params, clone and repr still see the
    value given to the constructor (or to set_params).
    """

    def __init__(self, enc: Any, clf_head: Any = None) -> None:
        self.enc = enc
        self.clf_head = clf_head

    # clf_head is a data descriptor so that one name can serve both 0.9's readers (the fitted head)
    # and scikit-learn's parameter machinery (the constructor's value, see get_params).
    @property
    def clf_head(self):
        fitted = self.__dict__.get("clf_head_")
        return fitted if fitted is not None else self.__dict__.get("_clf_head_param")

    @clf_head.setter
    def clf_head(self, value):
        self.__dict__["_clf_head_param"] = value

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters; clf_head is the value given, never the fitted head."""
        params = {"enc": self.enc, "clf_head": self.__dict__.get("_clf_head_param")}
        if deep:
            for name, value in list(params.items()):
                if hasattr(value, "get_params") and not isinstance(value, type):
                    params.update((f"{name}__{key}", nested) for key, nested in value.get_params().items())
        return params

    def _difference_features(self, X1, X2):
        left = np.asarray(self.enc.transform(X1))
        right = np.asarray(self.enc.transform(X2))
        if left.shape != right.shape:
            raise ValueError(
                f"X1 and X2 must hold the same number of items; their embeddings are {left.shape} and {right.shape}"
            )
        return np.abs(left - right)

    def fit(self, X1: Any, X2: Any, y: Any) -> "DifferenceClassifier":
        param = self.__dict__.get("_clf_head_param")
        head = LogisticRegression(class_weight="balanced") if param is None else clone(param)
        head.fit(self._difference_features(X1, X2), y)
        self.clf_head_ = head
        self.classes_ = head.classes_
        return self

    def predict(self, X1: Any, X2: Any) -> np.ndarray:
        check_is_fitted(self)
        return self.clf_head_.predict(self._difference_features(X1, X2))

    def predict_proba(self, X1: Any, X2: Any) -> np.ndarray:
        check_is_fitted(self)
        return self.clf_head_.predict_proba(self._difference_features(X1, X2))
