"""What both finetuners share: input and label handling, training calls, pickling."""
import functools
import weakref
from contextlib import contextmanager
from numbers import Integral, Number, Real
from typing import Any, Optional, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted
from sklearn_compat.utils.validation import validate_data

from libembetter._binding import ModelLock, NativeModel, PathLike, as_float32_rows
from libembetter._progress import epoch_progress
from libembetter.finetune import _persist
# encode_labels and _plain stay importable from here, where they used to live.
from libembetter.finetune._labels import _plain, encode_labels, training_data  # noqa: F401

_Finetuner = TypeVar("_Finetuner", bound="FinetunerBase")

POSITIVE_INT = Interval(Integral, 1, None, closed="left")
POSITIVE_REAL = Interval(Real, 0, None, closed="neither")

# The C seed is a uint64; randint's exclusive upper bound keeps it one below 2**64.
_SEED_BOUND = np.iinfo(np.uint64).max

# Why some scikit-learn estimator checks cannot pass: scikit-learn 1.6 and newer take these as
# parametrize_with_checks(expected_failed_checks=...), older releases from the _xfail_checks tag.
_PARTIAL_FIT_NEEDS_CLASSES = (
    "partial_fit needs `classes` on its first call (as SGDClassifier does), but this check only "
    "passes classes to classifiers; test_partial_fit_checks_classes_and_width and "
    "test_partial_fit_checks_dataframe_column_names (tests/python/test_finetuners.py) cover what it checks"
)
EXPECTED_FAILED_CHECKS = {
    "check_n_features_in_after_fitting": _PARTIAL_FIT_NEEDS_CLASSES,
    "check_estimators_partial_fit_n_features": _PARTIAL_FIT_NEEDS_CLASSES,
    "check_dataframe_column_names_consistency": _PARTIAL_FIT_NEEDS_CLASSES,
}


def _first_non_number(X):
    """(index, value) of the first cell of X that float() refuses, or None."""
    if hasattr(X, "iloc") and hasattr(X, "to_numpy"):
        X = X.to_numpy(dtype=object)
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):  # sparse matrices have their own message
        return None
    try:
        cells = np.asarray(X, dtype=object)
    except (TypeError, ValueError):
        return None
    if cells.ndim == 0 or cells.size == 0 or np.asarray(X).dtype.kind not in "OUSV":
        return None  # an array of numbers holds nothing float() refuses
    for row_index, row in enumerate(cells.reshape(cells.shape[0], -1)):
        try:
            row.astype(np.float64)  # whole rows at numpy speed; only a failing row is looked at cell by cell
            continue
        except (TypeError, ValueError):
            pass
        for column_index, value in enumerate(row):
            try:
                float(value)
            except (TypeError, ValueError):
                # Complex numbers keep scikit-learn's own "Complex data not supported".
                if isinstance(value, (Number, np.number)):
                    return None
                index = np.unravel_index(row_index * row.size + column_index, cells.shape)
                return tuple(int(i) for i in index), value
    return None


# Each estimator's ModelLock, made on its first use. Kept beside the estimator rather than in its __dict__, so
# that it is no attribute at all: never a parameter, never pickled, copied or cloned, and scikit-learn's check
# that __init__ sets nothing but parameters holds although clone() calls get_params on the new estimator.
_LOCKS: "weakref.WeakKeyDictionary[Any, ModelLock]" = weakref.WeakKeyDictionary()

# Each estimator class's (__init__, parameter names), see FinetunerBase._get_param_names.
_PARAM_NAMES: "weakref.WeakKeyDictionary[type, tuple]" = weakref.WeakKeyDictionary()


def _seed_from(random_state):
    """The C library's seed for random_state (None, an int or a RandomState), drawn as scikit-learn would."""
    return int(check_random_state(random_state).randint(_SEED_BOUND, dtype=np.uint64))


# An int random_state always gives the same seed, and seeding a RandomState to draw it costs a tenth of a
# millisecond, as much as the rest of fit's Python side on small inputs; equal ints share an entry.
_seed_of_int = functools.lru_cache(maxsize=64)(_seed_from)


class FinetunerBase(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared machinery; subclasses set _native_kind and _min_classes and describe their settings.

    One estimator may be used from many threads. Its ModelLock (one per
    estimator, made on first use, see _LOCKS) is held exclusively by what changes it (fit,
    partial_fit, set_params, unpickling into it) and shared by what only reads
    it (transform, save, pickling, get_params, loss_curve_), so transforms run
    in parallel and every call sees the estimator between two changes, never
    during one. The lock is the estimator's rather than the C model's alone
    because fit swaps in a new C model and changes Python-side state
    (classes_, n_features_in_) together with it.
    """

    _native_kind: Optional[str] = None
    _min_classes = 1

    # ---- threads ---------------------------------------------------------------

    def _lock(self) -> ModelLock:
        lock = _LOCKS.get(self)
        if lock is None:
            # setdefault is one dict operation: of two threads racing here, both get the lock that went in first.
            lock = _LOCKS.setdefault(self, ModelLock())
        return lock

    def get_params(self, deep: bool = True) -> dict:
        """The parameters, as scikit-learn's get_params; never a mix of two concurrent set_params calls."""
        with self._lock().shared:
            return super().get_params(deep=deep)

    def set_params(self: "_Finetuner", **params: Any) -> "_Finetuner":
        """Set parameters, as scikit-learn's set_params; waits for a training call under way on another thread.

        All or nothing: an unknown name changes none of the parameters.
        """
        with self._lock().exclusive:
            self._change_aside(lambda stand_in: super(FinetunerBase, stand_in).set_params(**params), False)
        return self

    def _change_aside(self, change, publish_on_error):
        """change(stand_in) on a stand-in holding this estimator's attributes; then its attributes become ours.

        The caller holds the exclusive hold, which readers that take the lock respect; this is for those that
        read an attribute directly (est.n_features_in_, est.classes_) while fit runs: scikit-learn's validation
        sets n_features_in_ before training starts, and a fit that then fails puts it back. Working on a
        stand-in, each attribute changes once, when the call is over. publish_on_error: the change keeps its
        own state right on failure (fit and partial_fit restore it, and a partial_fit that was interrupted
        keeps its completed pass), so take it whatever happens.
        """
        stand_in = object.__new__(type(self))
        stand_in.__dict__.update(self.__dict__)
        published = False
        try:
            result = change(stand_in)
            published = True
        finally:
            if published or publish_on_error:
                new = stand_in.__dict__
                for name in [name for name in self.__dict__ if name not in new]:
                    del self.__dict__[name]
                self.__dict__.update(new)
        return self if result is stand_in else result

    # ---- hyper-parameters -------------------------------------------------

    def _hyperparameters(self):
        """The parameters under their canonical names; aliases with other names override this."""
        return {
            "hidden_dim": self.hidden_dim,
            "n_epochs": self.n_epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "random_state": self.random_state,
            "verbose": self.verbose,
        }

    def _native_settings(self, hyper, seed):
        """The C params-struct fields for validated hyper-parameters."""
        return {
            "hidden_dim": hyper["hidden_dim"],
            "n_epochs": hyper["n_epochs"],
            "learning_rate": float(hyper["learning_rate"]),
            "batch_size": 0 if hyper["batch_size"] is None else hyper["batch_size"],
            "seed": seed,
        }

    def _new_native_model(self, hyper):
        random_state = hyper["random_state"]
        if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
            seed = _seed_of_int(random_state)
        else:  # None and RandomState instances draw anew every time
            seed = _seed_from(random_state)
        return NativeModel.create(self._native_kind, self._native_settings(hyper, seed))

    @classmethod
    def _get_param_names(cls):
        # scikit-learn reads the names from inspect.signature(__init__) on every get_params, and fit calls
        # get_params; the names only change with __init__ itself.
        init = cls.__init__
        cached = _PARAM_NAMES.get(cls)
        if cached is None or cached[0] is not init:
            cached = (init, tuple(super()._get_param_names()))
            _PARAM_NAMES[cls] = cached
        return list(cached[1])

    def _validate_params(self):
        params = self.get_params(deep=False)
        # Integers beyond 64 bits cannot reach the C library, and scikit-learn's
        # interval checks raise a bare TypeError on them; name the parameter instead.
        for name, value in params.items():
            if isinstance(value, Integral) and not isinstance(value, bool) and abs(value) >= 2**63:
                raise ValueError(f"{name} is {value}, too large; it must be below 2**63")
        # What scikit-learn's BaseEstimator._validate_params does, without asking get_params a second time.
        validate_parameter_constraints(self._parameter_constraints, params, caller_name=type(self).__name__)
        # The C library trains in float32: a positive learning_rate that float32 rounds to 0 or to infinity
        # would reach it as that number, and its message would name the rounded value, not the one given.
        learning_rate = self._hyperparameters()["learning_rate"]
        with np.errstate(over="ignore", under="ignore"):
            as_float32 = np.float32(learning_rate)
        if not 0 < as_float32 < np.inf:
            raise ValueError(
                f"learning_rate is {learning_rate!r}, which is {as_float32} in float32 (what the C library trains "
                f"in); it must be between {np.finfo(np.float32).smallest_subnormal} and {np.finfo(np.float32).max}"
            )

    # ---- state --------------------------------------------------------------

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_native")

    @property
    def _n_features_out(self):
        with self._lock().shared:
            if not hasattr(self, "_native"):
                raise AttributeError("_n_features_out is only known once the model is fitted")
            return self._native.output_dim

    @property
    def loss_curve_(self):
        """Mean training loss of every epoch since the last fit; each partial_fit appends one."""
        with self._lock().shared:
            if not hasattr(self, "_native"):
                raise AttributeError(f"this {type(self).__name__} is not fitted yet, so it has no loss_curve_")
            return self._native.loss_history()

    @contextmanager
    def _unchanged_on_failure(self):
        """Undo every Python-side change when the body raises; the C library keeps its own side unchanged."""
        saved = dict(self.__dict__)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _checked_input(self, X, y="no_validation", reset=True):
        """scikit-learn's input validation to float32; NaN and infinity are left for the C library to name."""
        try:
            return validate_data(self, X, y, dtype=np.float32, ensure_all_finite=False, reset=reset)
        except (TypeError, ValueError) as error:
            cell = _first_non_number(X)
            if cell is None:
                raise
            index, value = cell
            # numpy's own message ("could not convert string to float") does not say where the value is.
            raise type(error)(
                f"X[{', '.join(map(str, index))}] is {value!r} (a {type(value).__name__}), not a number ({error}); "
                "X must hold numbers (encode texts or images first, e.g. with libembetter.text.HashingEncoder)"
            ) from None

    def _check_class_count(self, classes):
        if len(classes) < self._min_classes:
            def count(n):
                return "1 class" if n == 1 else f"{n} classes"

            raise ValueError(
                f"{type(self).__name__} needs at least {count(self._min_classes)} to learn from; "
                f"y has {count(len(classes))}"
            )

    @contextmanager
    def _progress(self, n_epochs, verbose):
        """A per-epoch listener that drives a progress bar (a widget in Jupyter), or None when not verbose."""
        if not verbose:
            yield None
            return
        with epoch_progress(n_epochs, type(self).__name__) as listener:
            yield listener

    # ---- training -------------------------------------------------------------

    def fit(self: "_Finetuner", X: ArrayLike, y: ArrayLike) -> "_Finetuner":
        """Learn the embedding from scratch on X (n_samples x n_features) and labels y of any one type.

        Replaces an earlier fit. Interrupting (KeyboardInterrupt) stops training
        after the current epoch and leaves the estimator as it was before fit.
        """
        with self._lock().exclusive:
            return self._change_aside(lambda stand_in: stand_in._fit(X, y), True)

    def _fit(self, X, y):
        """fit under the exclusive hold its caller took."""
        self._validate_params()
        hyper = self._hyperparameters()
        with self._unchanged_on_failure():
            X, classes, labels = training_data(self, X, y, first_call=True)
            native = self._new_native_model(hyper)
            with self._progress(hyper["n_epochs"], hyper["verbose"]) as listener:
                interrupted = native.fit(as_float32_rows(X), labels, len(classes), listener,
                                         _persist.names_for_fit(classes))
            if interrupted is not None:
                raise interrupted
            self.classes_ = classes
            self._native = native
        return self

    def partial_fit(
        self: "_Finetuner", X: ArrayLike, y: ArrayLike, classes: Optional[ArrayLike] = None
    ) -> "_Finetuner":
        """One pass over X, y, continuing from the current weights.

        classes (every label there will ever be) is required on the first call
        and fixes classes_; later calls may omit it or must repeat it. Every
        call trains with the current hyper-parameters (set_params between calls
        takes effect), except hidden_dim, which the first call fixes, and
        random_state, which only seeds the first call. The pass always
        completes; a KeyboardInterrupt during it is re-raised afterwards.
        """
        with self._lock().exclusive:
            return self._change_aside(lambda stand_in: stand_in._partial_fit(X, y, classes), True)

    def _partial_fit(self, X, y, classes):
        """partial_fit under the exclusive hold its caller took."""
        first_call = not hasattr(self, "_native")
        self._validate_params()
        hyper = self._hyperparameters()
        with self._unchanged_on_failure():
            if first_call:
                if classes is None:
                    raise ValueError(
                        "classes must be given on the first call to partial_fit: pass every label "
                        "the model will ever see, e.g. partial_fit(X, y, classes=np.unique(all_labels))"
                    )
                X, known_classes, labels = training_data(self, X, y, first_call=True, classes=classes)
                native = self._new_native_model(hyper)
                n_classes = len(known_classes)
                names = _persist.names_for_fit(known_classes)
            else:
                X, known_classes, labels = training_data(self, X, y, first_call=False, classes=classes)
                native = self._native
                n_classes = 0
                names = None
            interrupted = self._one_pass(
                native, hyper, first_call,
                lambda: native.partial_fit(as_float32_rows(X), labels, n_classes, names=names))
            self.classes_ = known_classes
            self._native = native
        if interrupted is not None:
            raise interrupted
        return self

    def _one_pass(self, native, hyper, first_call, train):
        """train() (one partial_fit pass on native) with the current hyper-parameters; a failed pass on a fitted
        model puts its previous parameters back, as the C library keeps its weights."""
        previous_params = None if first_call else self._continue_with(native, hyper)
        try:
            return train()
        except BaseException:
            if previous_params is not None:
                native.restore_params(previous_params)
            raise

    def _continue_with(self, native, hyper):
        """Carry the current hyper-parameters into a fitted C model before another pass; returns the old ones."""
        previous = native.params()
        problem = self._hidden_dim_problem(native)
        if problem is not None:
            raise ValueError(problem)
        native.update_settings(self._native_settings(hyper, seed=previous.seed))
        return previous

    def _hidden_dim_problem(self, native):
        """Why the current hidden_dim does not describe the fitted C model native, or None when it does.

        fit fixes the width of the model; set_params can change hidden_dim afterwards, and then neither
        partial_fit, save nor a load of such a save can go on with it.
        """
        hyper = self._hyperparameters()
        wanted = self._native_settings(hyper, seed=0)["hidden_dim"]
        fitted = native.params().hidden_dim
        if wanted == fitted:
            return None
        width = native.output_dim
        layer = (f"the fitted model's hidden layer has {width} units" if self._native_kind == "feedforward"
                 else f"the fitted model's embedding has {width} columns")
        # The value that set hidden_dim back: None when the model was fitted to the input's width.
        as_input = self._native_settings(dict(hyper, hidden_dim=None), seed=0)["hidden_dim"]
        back = None if as_input is not None and fitted == as_input else width
        given = "None (the input's width)" if hyper["hidden_dim"] is None else repr(hyper["hidden_dim"])
        return (f"hidden_dim is {given} but {layer}; fit decides the width and later calls keep it: "
                f"refit, or set hidden_dim back to {back!r}")

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The learned embedding of X, float32, one row per row of X.

        A large X (from about 100 million multiply-adds) is split into one
        block of rows per OpenBLAS thread, each transformed on a thread of its
        own; the result has the same bits as one call (docs/benchmarks.md, "Threads").
        """
        with self._lock().shared:
            check_is_fitted(self)
            X = self._checked_input(X, reset=False)
            return self._native.transform(as_float32_rows(X))

    def fit_transform(self, X: ArrayLike, y: Any = None, **fit_params: Any) -> np.ndarray:
        """fit(X, y), then the embedding of X by that fit (no other thread's training comes in between)."""
        if fit_params:
            raise TypeError(f"fit() got unexpected keyword arguments {sorted(fit_params)}")
        with self._lock().exclusive:
            return self._change_aside(lambda stand_in: stand_in._fit(X, y), True).transform(X)

    # ---- files -------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Write the fitted model to path: one file, the C library's model format (docs/model-format.md).

        path is a str, bytes or os.PathLike. C programs load the file too (eb_finetuner_load) and read the
        class names from it (eb_finetuner_class_labels: integers or UTF-8 strings). The file's metadata keeps
        what only Python knows: the class, the parameters as set, the dtype of classes_ (and the labels
        themselves when they are booleans or floats, which have no C label type), n_features_in_ and
        feature_names_in_. The file is replaced atomically, and anything save or a later load would refuse
        (labels of other types, parameters that no longer describe the fitted model) raises before it is
        touched. An unfitted estimator raises NotFittedError (there is nothing learned to save). Pickle
        keeps labels of any type. Saving only reads the estimator: it runs alongside transforms, and a
        training call on another thread waits for it (or it for the call).
        """
        with self._lock().shared:
            _persist.save(self, path)

    @classmethod
    def load(cls: "type[_Finetuner]", path: PathLike) -> "_Finetuner":
        """The fitted estimator saved at path by save(); it must be this class or a subclass of it."""
        return _persist.load(path, expected_class=cls)

    # ---- pickling ---------------------------------------------------------------

    def __getstate__(self):
        # Shared: the state is taken between two training calls, never across one (pickle, copy.deepcopy and
        # joblib all come through here). A fitted finetuner of this package's classes pickles as its model file
        # (what save() writes), plus classes_ when they are of a type the file cannot hold.
        with self._lock().shared:
            state = dict(super().__getstate__())
            native = state.pop("_native", None)
            if native is None:
                return state
            if not _persist.is_persistable(self):
                # A subclass of the user's own: its attributes, with the C model's bytes.
                state["_native_bytes"] = native.to_bytes()
                return state
            model, outside = _persist.file_model(self, f"pickling a {type(self).__name__}", for_pickle=True)
            pickled = {"model_file": model.to_bytes()}
            if outside is not None:
                pickled["classes_outside_file"] = outside
            if "_sklearn_version" in state:
                pickled["_sklearn_version"] = state["_sklearn_version"]
            return pickled

    def __setstate__(self, state):
        state = dict(state)
        model_file = state.pop("model_file", None)
        if model_file is not None:
            loaded = _persist.from_pickle(model_file, state.pop("classes_outside_file", None), type(self))
            with self._lock().exclusive:
                super().__setstate__(state)
                self.__dict__.update(loaded.__dict__)
            return
        # An unfitted estimator, a subclass of the user's, or a pickle of libembetter 0.1 (attributes + C bytes).
        saved_model = state.pop("_native_bytes", None)
        native = None if saved_model is None else NativeModel.from_bytes(self._native_kind, saved_model)
        with self._lock().exclusive:
            super().__setstate__(state)
            if native is not None:
                # As load() does with a file: the C model must be the one classes_ and n_features_in_ describe.
                _persist.check_unpickled(self, native)
                self._native = native

    @classmethod
    def _params_from_native(cls, params):
        """The parameters of an estimator for a C model saved without Python metadata (by a C program)."""
        return {
            "hidden_dim": int(params.hidden_dim),
            "n_epochs": int(params.n_epochs),
            "learning_rate": float(params.learning_rate),
            "batch_size": None if params.batch_size == 0 else int(params.batch_size),
        }

    # ---- scikit-learn tags ----------------------------------------------------------

    def __sklearn_tags__(self):
        # scikit-learn 1.6 and newer.
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _more_tags(self):
        # scikit-learn 1.2 to 1.5, which ignore __sklearn_tags__ (and 1.6+ ignores this).
        return {
            "requires_y": True,
            "preserves_dtype": [np.float32],
            "_xfail_checks": dict(EXPECTED_FAILED_CHECKS),
        }
