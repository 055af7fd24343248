"""Finetuners: scikit-learn transformers that learn a new embedding from labelled rows."""
from libembetter.finetune._contrastive import ContrastiveFinetuner
from libembetter.finetune._feedforward import FeedForwardFinetuner, ForwardFinetuner
from libembetter.finetune._persist import load
from libembetter.finetune._tuners import ContrastiveTuner, FeedForwardTuner

__all__ = [
    "FeedForwardFinetuner",
    "ContrastiveFinetuner",
    "ForwardFinetuner",
    "FeedForwardTuner",
    "ContrastiveTuner",
    "load",
]
