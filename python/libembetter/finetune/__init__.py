"""Finetuners: scikit-learn transformers that learn a new embedding from labelled rows or from pairs."""
from libembetter._binding import PathLike
from libembetter.finetune._base import FinetunerBase
from libembetter.finetune._contrastive import ContrastiveFinetuner
from libembetter.finetune._feedforward import FeedForwardFinetuner, ForwardFinetuner
from libembetter.finetune._learner import ContrastiveLearner
from libembetter.finetune._tuners import ContrastiveTuner, FeedForwardTuner


def load(path: PathLike) -> FinetunerBase:
    """The fitted finetuner saved at path by save(), of whichever class the file holds."""
    return FinetunerBase.load(path)


__all__ = [
    "FeedForwardFinetuner",
    "ContrastiveFinetuner",
    "ForwardFinetuner",
    "FeedForwardTuner",
    "ContrastiveTuner",
    "ContrastiveLearner",
    "load",
]
