from libembetter.model._difference import DifferenceClassifier

__all__ = ["DifferenceClassifier"]
