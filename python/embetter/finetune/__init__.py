"""Finetuners: scikit-learn transformers that learn a new embedding from labelled rows."""
from embetter.finetune._contrastive import ContrastiveFinetuner
from embetter.finetune._feedforward import FeedForwardFinetuner, ForwardFinetuner
from embetter.finetune._persist import load
from embetter.finetune._tuners import ContrastiveTuner, FeedForwardTuner

__all__ = [
    "FeedForwardFinetuner",
    "ContrastiveFinetuner",
    "ForwardFinetuner",
    "FeedForwardTuner",
    "ContrastiveTuner",
    "load",
]
