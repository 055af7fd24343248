from embetter.model._difference import DifferenceClassifier

__all__ = ["DifferenceClassifier"]
