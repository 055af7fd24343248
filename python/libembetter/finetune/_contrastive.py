from libembetter._native import lib
from libembetter.finetune._base import POSITIVE_INT, POSITIVE_REAL, FinetunerBase
from libembetter.finetune._persist import persistable


@persistable
class ContrastiveFinetuner(FinetunerBase):
    """Fine-tune embeddings so that cosine similarity follows whether labels agree.

    One shared linear layer e = X W + b is trained in libembetter: every epoch
    pairs each row with a row of its own label (target similarity 1) and n_neg
    rows of other labels (target 0), and Adam minimises the squared error of
    the pairs' cosine similarity. transform returns e.

    Parameters:
        hidden_dim: width of the new embedding; None keeps the input's width.
        n_neg: negative pairs drawn per row and epoch.
        n_epochs: passes in fit, each with freshly drawn pairs (partial_fit makes one).
        learning_rate: Adam step size.
        batch_size: pairs per minibatch; None trains on all pairs of an epoch at once.
        random_state: None, an int or a numpy RandomState; a fixed int gives identical results every fit.
        verbose: show a progress bar over the epochs of fit, with the current loss.

    Needs at least two classes. Fitted attributes as for FeedForwardFinetuner.
    """

    _native_kind = "contrastive"
    # A model file without Python metadata (saved by a C program) loads as this class.
    _loads_c_files = True
    _min_classes = 2
    _parameter_constraints = {
        "hidden_dim": [POSITIVE_INT, None],
        "n_neg": [POSITIVE_INT],
        "n_epochs": [POSITIVE_INT],
        "learning_rate": [POSITIVE_REAL],
        "batch_size": [POSITIVE_INT, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        hidden_dim=None,
        n_neg=3,
        n_epochs=20,
        learning_rate=0.001,
        batch_size=None,
        random_state=None,
        verbose=False,
    ):
        self.hidden_dim = hidden_dim
        self.n_neg = n_neg
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def _hyperparameters(self):
        return dict(super()._hyperparameters(), n_neg=self.n_neg)

    def _native_settings(self, hyper, seed):
        settings = super()._native_settings(hyper, seed)
        if hyper["hidden_dim"] is None:
            settings["hidden_dim"] = lib.EB_HIDDEN_DIM_AS_INPUT
        settings["n_neg"] = hyper["n_neg"]
        return settings

    @classmethod
    def _params_from_native(cls, params):
        settings = super()._params_from_native(params)
        if params.hidden_dim == lib.EB_HIDDEN_DIM_AS_INPUT:
            settings["hidden_dim"] = None
        settings["n_neg"] = int(params.n_neg)
        return settings
