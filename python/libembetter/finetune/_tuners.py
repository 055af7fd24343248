"""The finetuners under the names and signatures of embetter 0.9, for existing code.

FeedForwardTuner and ContrastiveTuner keep 0.9's parameters (ContrastiveTuner
calls its epoch count `epochs`) and add random_state and verbose at the end;
transform takes 0.9's unused y too (tests/python/test_parity_embetter.py checks all of it).
They run on libembetter like the new classes; two differences from 0.9's
PyTorch models: partial_fit makes one pass instead of n_epochs, and the
contrastive network is one linear layer.
"""
from libembetter.finetune._base import POSITIVE_INT, POSITIVE_REAL
from libembetter.finetune._contrastive import ContrastiveFinetuner
from libembetter.finetune._feedforward import FeedForwardFinetuner
from libembetter.finetune._persist import persistable


@persistable
class FeedForwardTuner(FeedForwardFinetuner):
    """embetter 0.9's FeedForwardTuner: FeedForwardFinetuner with minibatches of 32 rows by default."""

    def __init__(self, hidden_dim=50, n_epochs=500, learning_rate=0.01, batch_size=32, random_state=None,
                 verbose=False):
        super().__init__(
            hidden_dim=hidden_dim,
            n_epochs=n_epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            random_state=random_state,
            verbose=verbose,
        )

    def transform(self, X, y=None):
        """The n x hidden_dim float32 embedding of X; y is ignored (0.9's transform accepts it)."""
        return super().transform(X)


@persistable
class ContrastiveTuner(ContrastiveFinetuner):
    """embetter 0.9's ContrastiveTuner: a 50-wide ContrastiveFinetuner whose epoch count is `epochs`."""

    # 0.9 trained on minibatches of 256 pairs and offered no parameter for it.
    PAIRS_PER_BATCH = 256

    _parameter_constraints = {
        "hidden_dim": [POSITIVE_INT, None],
        "n_neg": [POSITIVE_INT],
        "epochs": [POSITIVE_INT],
        "learning_rate": [POSITIVE_REAL],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, hidden_dim=50, n_neg=3, epochs=20, learning_rate=0.001, random_state=None, verbose=False):
        self.hidden_dim = hidden_dim
        self.n_neg = n_neg
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose

    @classmethod
    def _params_from_native(cls, params):
        settings = super()._params_from_native(params)
        settings["epochs"] = settings.pop("n_epochs")
        del settings["batch_size"]  # fixed at PAIRS_PER_BATCH
        return settings

    def _hyperparameters(self):
        return {
            "hidden_dim": self.hidden_dim,
            "n_neg": self.n_neg,
            "n_epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.PAIRS_PER_BATCH,
            "random_state": self.random_state,
            "verbose": self.verbose,
        }

    def transform(self, X, y=None):
        """The n x hidden_dim float32 embedding of X; y is ignored (0.9's transform accepts it)."""
        return super().transform(X)
