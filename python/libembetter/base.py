from typing import Any, TypeVar

from sklearn.base import BaseEstimator, TransformerMixin

_Step = TypeVar("_Step", bound="EmbetterBase")


class EmbetterBase(BaseEstimator, TransformerMixin):
    """Base of embetter's stateless pipeline steps: fit and partial_fit learn nothing."""

    def fit(self: _Step, X: Any, y: Any = None) -> _Step:
        """Nothing to learn; returns self so the step fits in a Pipeline."""
        return self

    def partial_fit(self: _Step, X: Any, y: Any = None) -> _Step:
        """Nothing to learn; returns self."""
        return self

    def _more_tags(self):
        return {"stateless": True, "requires_fit": False}
