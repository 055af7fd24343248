from libembetter.finetune._base import POSITIVE_INT, POSITIVE_REAL, FinetunerBase
from libembetter.finetune._persist import persistable


@persistable
class FeedForwardFinetuner(FinetunerBase):
    """Fine-tune embeddings toward labels with one sigmoid hidden layer.

    The network is input -> sigmoid(X W1 + b1) -> class scores, trained with
    softmax cross-entropy and Adam in libembetter. transform returns the
    hidden layer, so the output has hidden_dim columns.

    Parameters:
        hidden_dim: width of the hidden layer, i.e. of the new embedding.
        n_epochs: passes over the data in fit (partial_fit always makes one).
        learning_rate: Adam step size.
        batch_size: rows per minibatch, reshuffled every epoch; None trains on all rows at once.
        random_state: None, an int or a numpy RandomState; a fixed int gives identical results every fit.
        verbose: show a progress bar over the epochs of fit, with the current loss.

    Fitted attributes: classes_, n_features_in_, feature_names_in_ (DataFrame
    input only) and loss_curve_ (mean loss of every epoch since the last fit).
    """

    _native_kind = "feedforward"
    # A model file without Python metadata (saved by a C program) loads as this class.
    _loads_c_files = True
    _min_classes = 1
    _parameter_constraints = {
        "hidden_dim": [POSITIVE_INT],
        "n_epochs": [POSITIVE_INT],
        "learning_rate": [POSITIVE_REAL],
        "batch_size": [POSITIVE_INT, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self, hidden_dim=50, n_epochs=500, learning_rate=0.01, batch_size=None, random_state=None, verbose=False
    ):
        self.hidden_dim = hidden_dim
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose


# The name this estimator had in the seed of this project.
ForwardFinetuner = FeedForwardFinetuner
