from typing import Any, TypeVar

from sklearn.base import BaseEstimator, TransformerMixin

_Step = TypeVar("_Step", bound="EmbetterBase")


# The mixin comes first: scikit-learn 1.6+ collects tags along the MRO, and BaseEstimator ends that chain.
class EmbetterBase(TransformerMixin, BaseEstimator):
    """Base of embetter's stateless pipeline steps: fit and partial_fit learn nothing."""

    def fit(self: _Step, X: Any, y: Any = None) -> _Step:
        """Nothing to learn; returns self so the step fits in a Pipeline."""
        return self

    def partial_fit(self: _Step, X: Any, y: Any = None) -> _Step:
        """Nothing to learn; returns self."""
        return self

    def __sklearn_tags__(self):
        # scikit-learn 1.6 and newer.
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    def _more_tags(self):
        # scikit-learn 1.2 to 1.5, which ignore __sklearn_tags__ (and 1.6+ ignores this).
        return {"stateless": True, "requires_fit": False}
