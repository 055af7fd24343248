from sklearn.base import BaseEstimator, TransformerMixin


class EmbetterBase(BaseEstimator, TransformerMixin):
    """Base of embetter's stateless pipeline steps: fit and partial_fit learn nothing."""

    def fit(self, X, y=None):
        """Nothing to learn; returns self so the step fits in a Pipeline."""
        return self

    def partial_fit(self, X, y=None):
        """Nothing to learn; returns self."""
        return self

    def _more_tags(self):
        return {"stateless": True, "requires_fit": False}
