"""ContrastiveLearner: embetter 0.9's learner on explicit pairs, backed by the C pair learner."""
from typing import Any

import numpy as np
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted
from sklearn_compat.utils.validation import check_array

from libembetter._binding import PathLike, as_float32_rows
from libembetter._native import lib
from libembetter.finetune._base import POSITIVE_INT, POSITIVE_REAL, FinetunerBase
from libembetter.finetune._persist import persistable

# The `layers` parameter's values and the C re-embedding each selects.
LAYERS = {"linear": lib.EB_PAIR_LINEAR, "linear-relu-linear": lib.EB_PAIR_LINEAR_RELU_LINEAR}
_LAYER_NAMES = {number: name for name, number in LAYERS.items()}


@persistable
class ContrastiveLearner(FinetunerBase):
    """Learn an embedding from pairs of rows and how similar each pair should be.

    fit(X1, X2, y) trains one re-embedding e(x), shared by both sides, so that the cosine of e(X1[i]) and
    e(X2[i]) approaches y[i], a similarity in [0, 1] (squared error, Adam, minibatches of batch_size pairs
    reshuffled every epoch), in libembetter. transform(X) returns e(X); predict(X1, X2) the cosine per pair.

    Parameters (embetter 0.9's, in its order, then libembetter's):
        shape_out: width of the new embedding.
        batch_size: pairs per minibatch; None trains on all pairs at once.
        epochs: passes over the pairs in fit (partial_fit makes one).
        learning_rate: Adam step size.
        random_state: None, an int or a numpy RandomState; a fixed int gives identical results every fit.
        verbose: show a progress bar over the epochs of fit, with the current loss.
        layers: "linear" (e(x) = x W + b) or "linear-relu-linear" (0.9's network: Linear, ReLU, Linear,
            each shape_out wide).

    Fitted attributes: n_features_in_, feature_names_in_ (when X1 is a DataFrame with string column
    names) and loss_curve_ (mean loss of every epoch since the last fit). Not a standard scikit-learn
    transformer: fit takes two matrices, so it has no fit_transform; a fitted learner transforms inside a
    Pipeline like any other step.
    """

    _native_kind = "pair_learner"
    # A model file without Python metadata (saved by a C program) loads as this class.
    _loads_c_files = True
    _parameter_constraints = {
        "shape_out": [POSITIVE_INT],
        "batch_size": [POSITIVE_INT, None],
        "epochs": [POSITIVE_INT],
        "learning_rate": [POSITIVE_REAL],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "layers": [StrOptions(set(LAYERS))],
    }

    def __init__(self, shape_out=300, batch_size=16, epochs=1, learning_rate=2e-05, random_state=None,
                 verbose=False, layers="linear"):
        self.shape_out = shape_out
        self.batch_size = batch_size
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose
        self.layers = layers

    # ---- parameters -------------------------------------------------------------------------------------

    def _hyperparameters(self):
        return {
            "hidden_dim": self.shape_out,
            "n_epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "random_state": self.random_state,
            "verbose": self.verbose,
        }

    def _native_settings(self, hyper, seed):
        settings = super()._native_settings(hyper, seed)
        settings["layers"] = LAYERS.get(self.layers, lib.EB_PAIR_LINEAR)
        return settings

    @classmethod
    def _params_from_native(cls, params):
        return {
            "shape_out": int(params.hidden_dim),
            "batch_size": None if params.batch_size == 0 else int(params.batch_size),
            "epochs": int(params.n_epochs),
            "learning_rate": float(params.learning_rate),
            "layers": _LAYER_NAMES.get(params.layers, "linear"),
        }

    def _hidden_dim_problem(self, native):
        """Why shape_out or layers no longer describe the fitted C model, or None when they do."""
        fitted = native.params()
        if self.shape_out != fitted.hidden_dim:
            return (f"shape_out is {self.shape_out!r} but the fitted model's embedding has {fitted.hidden_dim} "
                    f"columns; fit decides the width and later calls keep it: refit, or set shape_out back to "
                    f"{fitted.hidden_dim}")
        fitted_layers = _LAYER_NAMES.get(fitted.layers)
        if self.layers != fitted_layers:
            return (f"layers is {self.layers!r} but the fitted model's network is {fitted_layers!r}; fit decides "
                    f"the network and later calls keep it: refit, or set layers back to {fitted_layers!r}")
        return None

    # ---- input ---------------------------------------------------------------------------------------------

    def _pairs(self, X1, X2, y, first_call):
        """X1, X2 as float32 matrices and y as a float32 similarity per pair; the C library checks the rest.

        X1 sets n_features_in_ (and feature names) on a first call, as X does for the other finetuners; the
        C library then names a row-count or width mismatch of X2, and a y outside [0, 1] or NaN.
        """
        X1 = as_float32_rows(self._checked_input(X1, reset=first_call))
        X2 = as_float32_rows(check_array(X2, dtype=np.float32, ensure_all_finite=False, input_name="X2"))
        if y is None:
            raise ValueError("y is None; give the target similarity of every pair (X1[i], X2[i]), in [0, 1]")
        try:
            similarity = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"y must hold one number per pair, the target similarity in [0, 1]: {error}") from None
        if similarity.ndim != 1:
            raise ValueError(f"y has shape {similarity.shape}; it must be one-dimensional, one similarity per pair")
        if len(similarity) != X1.shape[0]:
            raise ValueError(f"y has {len(similarity)} similarities but X1 has {X1.shape[0]} rows; give one "
                             "similarity per pair (X1[i], X2[i])")
        with np.errstate(over="ignore"):
            as_float32 = np.ascontiguousarray(similarity, dtype=np.float32)
        # float32 rounds 1 + 1e-9 to 1.0: the C library would see a valid target that y does not hold.
        rounded_in = (similarity != as_float32) & ((similarity < 0) | (similarity > 1))
        if rounded_in.any():
            row = int(np.flatnonzero(rounded_in)[0])
            raise ValueError(f"y[{row}] is {float(similarity[row])!r}, outside [0, 1]; similarities must be in [0, 1]")
        return X1, X2, as_float32

    # ---- training ------------------------------------------------------------------------------------------

    def fit(self, X1: Any, X2: Any, y: Any) -> "ContrastiveLearner":
        """Learn the re-embedding from scratch on the pairs (X1[i], X2[i]) with target similarities y in [0, 1].

        Replaces an earlier fit. Interrupting (KeyboardInterrupt) stops training after the current epoch and
        leaves the learner as it was before fit.
        """
        with self._lock().exclusive:
            return self._change_aside(lambda stand_in: stand_in._fit_pairs(X1, X2, y), True)

    def _fit_pairs(self, X1, X2, y):
        self._validate_params()
        hyper = self._hyperparameters()
        with self._unchanged_on_failure():
            X1, X2, similarity = self._pairs(X1, X2, y, first_call=True)
            native = self._new_native_model(hyper)
            with self._progress(hyper["n_epochs"], hyper["verbose"]) as listener:
                interrupted = native.fit_pairs(X1, X2, similarity, listener)
            if interrupted is not None:
                raise interrupted
            self._native = native
        return self

    def partial_fit(self, X1: Any, X2: Any, y: Any) -> "ContrastiveLearner":
        """One epoch over the pairs, continuing from the current weights (the first call starts them).

        Every call trains with the current parameters (set_params between calls takes effect), except
        shape_out and layers, which the first call fixes, and random_state, which only seeds the first call.
        """
        with self._lock().exclusive:
            return self._change_aside(lambda stand_in: stand_in._partial_fit_pairs(X1, X2, y), True)

    def _partial_fit_pairs(self, X1, X2, y):
        first_call = not hasattr(self, "_native")
        self._validate_params()
        hyper = self._hyperparameters()
        with self._unchanged_on_failure():
            X1, X2, similarity = self._pairs(X1, X2, y, first_call=first_call)
            native = self._new_native_model(hyper) if first_call else self._native
            interrupted = self._one_pass(native, hyper, first_call,
                                         lambda: native.partial_fit_pairs(X1, X2, similarity))
            self._native = native
        if interrupted is not None:
            raise interrupted
        return self

    def fit_transform(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """Not available: fit takes pairs and transform one matrix, so no single call can do both."""
        raise TypeError(f"{type(self).__name__} learns from pairs: call fit(X1, X2, y), then transform(X)")

    # ---- using it ------------------------------------------------------------------------------------------

    def transform(self, X: Any, y: Any = None) -> np.ndarray:
        """The learned embedding of X, float32, shape_out columns; y is ignored (0.9's transform accepts it)."""
        return super().transform(X)

    def predict(self, X1: Any, X2: Any) -> np.ndarray:
        """The cosine of the embeddings of each pair (X1[i], X2[i]): a 1-D float32 array, one value per pair.

        A pair with an all-zero embedding has cosine 0.
        """
        with self._lock().shared:
            check_is_fitted(self)
            X1 = as_float32_rows(check_array(X1, dtype=np.float32, ensure_all_finite=False, input_name="X1"))
            X2 = as_float32_rows(check_array(X2, dtype=np.float32, ensure_all_finite=False, input_name="X2"))
            return self._native.predict_pairs(X1, X2)

    def to_disk(self, path: PathLike) -> None:
        """Save the fitted learner to path (0.9's name for it); the same file as save(path)."""
        self.save(path)

    @classmethod
    def from_disk(cls, path: PathLike) -> "ContrastiveLearner":
        """The learner to_disk (or save, or a C program) wrote at path."""
        return cls.load(path)
