"""The thin layer between numpy arrays and libembetter's C API.

Everything numeric happens in C. This module only builds matrix views of
arrays (copying solely when an array cannot be described as a row-major
float32 view), turns C statuses into Python exceptions (through
libembetter._errors), and routes the C per-epoch callback back into Python.
cffi's API mode releases the GIL during every C call, so transforms on
several threads run in parallel; the same release would let two threads
change one C model at once, which the C library leaves to its caller to
prevent (include/embetter/finetune.h, "Threads"). Every use of a C handle
therefore goes through a ModelLock: shared for what only reads the model
(transform, serialisation, accessors), exclusive for what changes it
(training, parameters).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Optional, Union

import numpy as np

from libembetter._config import single_blas_thread, training_team_threads, training_threads, transform_blocks
from libembetter._errors import error_for_status, raise_for_status, status_name
from libembetter._native import ffi, lib

__all__ = [
    "KIND_NAMES",
    "ModelLock",
    "NativeModel",
    "as_float32_rows",
    "error_for_status",
    "input_matrix",
    "label_pointer",
    "library_version",
    "output_matrix",
    "raise_for_status",
    "status_name",
]

FLOAT_SIZE = np.dtype(np.float32).itemsize

# Each finetuner kind's name, the C library's own (eb_finetuner_kind_name), by its kind number.
KIND_NAMES = {
    number: ffi.string(lib.eb_finetuner_kind_name(number)).decode("ascii")
    for number in (lib.EB_KIND_FEEDFORWARD, lib.EB_KIND_CONTRASTIVE, lib.EB_KIND_PAIR_LEARNER)
}
KIND_NUMBERS = {name: number for number, name in KIND_NAMES.items()}

# Class names as the C library keeps them: int64 integers or UTF-8 encoded strings.
ClassNames = Union[list[int], list[bytes]]
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
# What a training listener receives: the 1-based epoch and its mean loss.
EpochListener = Callable[[int, float], None]


def _address(array: np.ndarray) -> int:
    """The address of array's first element: from the array interface, which costs less than building
    array.ctypes (a Python object of its own) on every training and transform call."""
    return array.__array_interface__["data"][0]


def _is_float32_row_view(array: np.ndarray) -> bool:
    """True when the C API can read array in place: float32, rows of adjacent floats, aligned."""
    if array.dtype != np.float32 or array.ndim != 2:
        return False
    rows, cols = array.shape
    row_step, col_step = array.strides
    if cols > 1 and col_step != FLOAT_SIZE:
        return False
    if rows > 1 and (row_step <= 0 or row_step % FLOAT_SIZE != 0 or row_step < cols * FLOAT_SIZE):
        return False
    return _address(array) % FLOAT_SIZE == 0


def as_float32_rows(X: Any) -> np.ndarray:
    """X itself when C can read it in place, else a C-contiguous, aligned float32 copy."""
    array = np.asarray(X)
    if _is_float32_row_view(array):
        return array
    return np.require(array, dtype=np.float32, requirements=["C_CONTIGUOUS", "ALIGNED"])


def input_matrix(array: np.ndarray) -> Any:
    """An eb_matrix view of a 2-D array from as_float32_rows. The caller keeps array alive."""
    rows, cols = array.shape
    stride = array.strides[0] // FLOAT_SIZE if rows > 1 else cols
    return ffi.new(
        "eb_matrix *",
        {"data": ffi.cast("const float *", _address(array)), "rows": rows, "cols": cols, "stride": stride},
    )[0]


def output_matrix(array: np.ndarray) -> Any:
    """An eb_mut_matrix view of a C-contiguous float32 array."""
    rows, cols = array.shape
    return ffi.new(
        "eb_mut_matrix *",
        {"data": ffi.cast("float *", _address(array)), "rows": rows, "cols": cols, "stride": cols},
    )[0]


def label_pointer(labels: np.ndarray) -> Any:
    """A const int32_t * into labels, which must be a C-contiguous int32 array kept alive by the caller."""
    return ffi.cast("const int32_t *", _address(labels))


class EpochMonitor:
    """What the C per-epoch callback talks to.

    listener(epoch, loss) is set for the duration of one training call. Any
    exception raised while Python handles the callback (by the listener, or a
    KeyboardInterrupt delivered there) is kept in `pending` and training is
    stopped; the caller re-raises it once the C call has returned, because an
    exception cannot unwind through C frames.
    """

    def __init__(self) -> None:
        self.listener: Optional[EpochListener] = None
        self.pending: Optional[BaseException] = None

    def on_epoch(self, epoch: int, loss: float) -> int:
        if self.listener is not None:
            self.listener(epoch, loss)
        return 0


# The monitor of the training call running on each thread. The C library calls
# back on the thread that called it, so this finds the monitor even when the
# exception struck before the callback could look at its user_data.
_training = threading.local()


def _stop_on_error(exception_type, exception, traceback):
    monitor = getattr(_training, "monitor", None)
    if monitor is not None and monitor.pending is None:
        monitor.pending = exception
    return 1  # non-zero: the C library stops training


@ffi.def_extern(error=1, onerror=_stop_on_error)
def embetter_on_epoch(epoch, loss, user_data):
    return ffi.from_handle(user_data).on_epoch(epoch, loss)


class _Hold:
    """`with lock.shared:` / `with lock.exclusive:`: a plain object, cheaper than a generator context manager."""

    __slots__ = ("_acquire", "_release")

    def __init__(self, acquire: Callable[[], None], release: Callable[[], None]) -> None:
        self._acquire = acquire
        self._release = release

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self._release()


class ModelLock:
    """A reader-writer lock for one model: many shared holders at once, or one exclusive holder.

    Writer-preferring: once a writer waits, threads that come for a shared
    hold wait behind it, so a stream of transforms cannot starve training.
    Readers that were already waiting when a writer finishes go before the
    next writer, so a stream of training calls cannot starve transforms
    either (each waits at most for one writer after its arrival).

    Re-entrant for reading, because a thread holding the lock can come back
    to the same model: the per-epoch callback (a progress bar, or a signal
    handler that runs there) may read the model while its fit holds the lock
    exclusively, and an estimator's transform reads its model while already
    holding a shared hold; such nested shared holds are granted at once.
    A nested exclusive hold raises RuntimeError instead: inside a shared
    hold, waiting for the other readers (itself included) would never end,
    and inside an exclusive one, the change under way (a C training call
    waiting for its callback to return) would go on with state changed
    under it.
    Every hold is released in a finally, so an exception or a
    KeyboardInterrupt inside frees it, and one that interrupts the wait
    leaves nothing behind.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}  # thread ident -> depth of its shared holds
        self._writer: Optional[int] = None
        self._writer_depth = 0
        self._waiting_writers = 0
        self._waiting_readers = 0
        self._writes_done = 0  # finished exclusive holds: a reader waiting across one goes before the next writer
        # Readers that were waiting when the last writer finished and have not run yet. A writer waits for them:
        # else the one that just finished, still running, takes the lock again before they wake, every time.
        self._admissions_due = 0
        self.shared = _Hold(self.acquire_shared, self.release_shared)
        self.exclusive = _Hold(self.acquire_exclusive, self.release_exclusive)

    def acquire_shared(self) -> None:
        me = threading.get_ident()
        with self._condition:
            if self._writer == me:
                self._writer_depth += 1
                return
            depth = self._readers.get(me)
            if depth:
                self._readers[me] = depth + 1
                return
            arrived_at = self._writes_done
            self._waiting_readers += 1
            try:
                while self._writer is not None or (self._waiting_writers and self._writes_done == arrived_at):
                    self._condition.wait()
            finally:
                self._waiting_readers -= 1
                if self._writes_done != arrived_at:
                    self._admissions_due -= 1
                    if self._admissions_due == 0:
                        self._condition.notify_all()
            self._readers[me] = 1

    def release_shared(self) -> None:
        me = threading.get_ident()
        with self._condition:
            if self._writer == me:
                self._writer_depth -= 1
                return
            depth = self._readers[me] - 1
            if depth:
                self._readers[me] = depth
                return
            del self._readers[me]
            if not self._readers:
                self._condition.notify_all()

    def acquire_exclusive(self) -> None:
        me = threading.get_ident()
        with self._condition:
            if self._writer == me:
                # A change nested in a change of the same model, e.g. from the per-epoch callback inside
                # fit: the C training call under way would continue on state changed under its feet.
                raise RuntimeError(
                    "this thread is changing the model already (the call comes from inside a training call or "
                    "parameter change on it, e.g. from its per-epoch callback); make it after that call returns"
                )
            if me in self._readers:
                raise RuntimeError(
                    "this thread is reading the model (a transform, a save or pickling is under way on it) and "
                    "cannot change it from there; train or set parameters after that call returns"
                )
            self._waiting_writers += 1
            try:
                while self._writer is not None or self._readers or self._admissions_due:
                    self._condition.wait()
            except BaseException:
                # Readers held back only by this writer may go now.
                self._waiting_writers -= 1
                self._condition.notify_all()
                raise
            self._waiting_writers -= 1
            self._writer = me
            self._writer_depth = 1

    def release_exclusive(self) -> None:
        with self._condition:
            self._writer_depth -= 1
            if self._writer_depth == 0:
                self._writer = None
                self._writes_done += 1
                self._admissions_due = self._waiting_readers
                self._condition.notify_all()

    def is_free(self) -> bool:
        """No thread holds the lock or waits for it (for tests and assertions)."""
        with self._condition:
            return (self._writer is None and not self._readers and not self._waiting_writers
                    and not self._waiting_readers and not self._admissions_due)


class NativeModel:
    """One C finetuner (eb_finetuner, include/embetter/finetune.h) and the objects it points back to.

    kind is the C library's name of the finetuner's kind (eb_finetuner_kind_name: "feedforward",
    "contrastive" or "pair_learner"). Build one with create() or from_bytes(); save() writes the C model
    file. The C finetuner is freed when this object is collected.

    Safe to share between threads: every method holds self.lock, shared when the C call only reads the
    finetuner, exclusive when it writes anything in it (training, set_params, class labels, metadata,
    which also write its last_error).
    """

    def __init__(self, pointer: Any) -> None:
        self._model = ffi.gc(pointer, lib.eb_finetuner_free)
        self.kind = KIND_NAMES[lib.eb_finetuner_kind_of(self._model)]
        self.lock = ModelLock()
        self.monitor = EpochMonitor()
        # The C finetuner keeps callback_data for its whole life, so the handle must live as long.
        self._monitor_handle = ffi.new_handle(self.monitor)
        lib.eb_finetuner_set_callback(self._model, lib.embetter_on_epoch, self._monitor_handle)

    def _function(self, name: str) -> Any:
        return getattr(lib, f"eb_finetuner_{name}")

    @staticmethod
    def _params_struct(settings: dict[str, Any], base: Any) -> Any:
        """A new params struct: base's fields (a struct), then settings (field -> validated value) over them."""
        params = ffi.new("eb_finetuner_params *", base)
        for field, value in settings.items():
            try:
                setattr(params, field, value)
            except OverflowError:
                raise ValueError(f"{field} is {value!r}, too large for the C library") from None
        return params

    @classmethod
    def create(cls, kind: str, settings: dict[str, Any]) -> NativeModel:
        """An unfitted finetuner of kind; settings maps params-struct fields to values already validated."""
        params = cls._params_struct(settings, lib.eb_finetuner_default_params(KIND_NUMBERS[kind]))
        created = ffi.new("eb_finetuner **")
        error = ffi.new("eb_error *")
        status = lib.eb_finetuner_create(params, ffi.NULL, created, error)
        raise_for_status(status, _message(error))
        return cls(created[0])

    @staticmethod
    def saved_kind(data: bytes) -> str:
        """The kind of finetuner saved in data, read by the C library from the header.

        A ModelFormatError (a ValueError) says why bytes that are not a saved model are refused.
        """
        return NativeModel.saved_header(data)[0]

    @staticmethod
    def saved_header(data: bytes) -> tuple[str, int]:
        """(kind, payload length) from the header at the start of data, decoded and checked by the C library.

        data may be the header alone (EB_MODEL_HEADER_SIZE bytes): a loader reads it first to learn how many
        bytes the whole model takes before reading more. A ModelFormatError says why other bytes are refused.
        """
        header = NativeModel.read_header(data)
        return KIND_NAMES[header.kind], int(header.payload_size)

    @staticmethod
    def read_header(data: bytes) -> Any:
        """The eb_model_header at the start of data (format_version, kind, payload_size, payload_crc32)."""
        header = ffi.new("eb_model_header *")
        error = ffi.new("eb_error *")
        raise_for_status(lib.eb_model_read_header(data, len(data), header, error), _message(error))
        return header[0]

    @classmethod
    def from_bytes(cls, kind: Optional[str], data: bytes) -> NativeModel:
        """A finetuner rebuilt from to_bytes() output or a model file's bytes; the C library validates every byte.

        kind None takes the kind the bytes hold; a kind given must be the one they hold (ModelFormatError).
        """
        data = bytes(data)
        if kind is not None:
            held = cls.saved_kind(data)
            if held != kind:
                raise error_for_status(lib.EB_ERR_FORMAT, f"saved model: holds a {held} finetuner, not a {kind} one")
        loaded = ffi.new("eb_finetuner **")
        error = ffi.new("eb_error *")
        status = lib.eb_finetuner_load_from_buffer(data, len(data), ffi.NULL, loaded, error)
        raise_for_status(status, _message(error))
        return cls(loaded[0])

    def copy(self) -> NativeModel:
        """An independent finetuner with the same state (through the C format, which keeps every bit)."""
        return NativeModel.from_bytes(None, self.to_bytes())

    def check_savable(self) -> None:
        """Raise what eb_finetuner_save would refuse this finetuner with, without writing anything."""
        error = ffi.new("eb_error *")
        with self.lock.shared:
            status = lib.eb_finetuner_check_savable(self._model, error)
        raise_for_status(status, _message(error))

    def save(self, path: PathLike) -> None:
        """Write the model file (docs/model-format.md) to path atomically, as eb_finetuner_save does.

        A file that cannot be written raises FileAccessError (an OSError) naming the path and the reason.
        """
        encoded = os.fsencode(path)
        if b"\0" in encoded:
            # C would stop at the NUL and write to a shorter path than the one given.
            raise ValueError(f"path {os.fsdecode(encoded)!r} contains a NUL character")
        error = ffi.new("eb_error *")
        with self.lock.shared:
            status = lib.eb_finetuner_save(self._model, encoded, error)
        raise_for_status(status, _message(error))

    def to_bytes(self) -> bytes:
        """The whole finetuner (params, weights, optimiser and RNG state, loss history, class labels, metadata)."""
        with self.lock.shared:
            capacity = lib.eb_finetuner_saved_size(self._model)
            buffer = ffi.new("unsigned char[]", capacity)
            written = ffi.new("size_t *")
            error = ffi.new("eb_error *")
            status = lib.eb_finetuner_save_to_buffer(self._model, buffer, capacity, written, error)
        raise_for_status(status, _message(error))
        return ffi.buffer(buffer, written[0])[:]

    def update_settings(self, settings: dict[str, Any]) -> None:
        """Change params-struct fields (not the callback) for the next training call; the C side refuses a new
        hidden_dim or layers once fitted."""
        with self.lock.exclusive:
            params = self._params_struct(settings, self.params())
            raise_for_status(lib.eb_finetuner_set_params(self._model, params), self._last_error())

    def restore_params(self, params: Any) -> None:
        """Put back a params struct earlier returned by params() (after a failed training call)."""
        with self.lock.exclusive:
            raise_for_status(lib.eb_finetuner_set_params(self._model, ffi.new("eb_finetuner_params *", params)),
                             self._last_error())

    def _last_error(self) -> str:
        """The finetuner's message of its last failed change; only meaningful under the exclusive hold that failed."""
        return ffi.string(lib.eb_finetuner_last_error(self._model)).decode("utf-8", "replace")

    # ---- class labels and metadata ------------------------------------------------------------------

    def class_labels(self) -> Optional[list]:
        """The names of the classes: a list of int (EB_LABELS_INT64) or of bytes (EB_LABELS_UTF8), or None."""
        labels = ffi.new("eb_class_labels *")
        with self.lock.shared:
            raise_for_status(lib.eb_finetuner_class_labels(self._model, labels))
            if labels.type == lib.EB_LABELS_INT64:
                return [int(labels.integers[i]) for i in range(labels.count)]
            if labels.type == lib.EB_LABELS_UTF8:
                if labels.string_lengths == ffi.NULL:
                    return [ffi.string(labels.strings[i]) for i in range(labels.count)]
                return [ffi.buffer(labels.strings[i], labels.string_lengths[i])[:] for i in range(labels.count)]
        return None

    def set_class_labels(self, names: Optional[ClassNames]) -> None:
        """Name the classes of the fitted finetuner (None removes the names); the C library checks them."""
        with self.lock.exclusive:
            view = class_labels_view(names)
            # NULL would be refused here: a struct of type EB_LABELS_NONE is how the names are removed.
            struct = ffi.new("eb_class_labels *", {"type": lib.EB_LABELS_NONE}) if names is None else view.struct
            status = lib.eb_finetuner_set_class_labels(self._model, struct)
            raise_for_status(status, self._last_error())

    def metadata(self) -> bytes:
        """The binding's bytes stored with the finetuner (b"" when there are none)."""
        size = ffi.new("size_t *")
        with self.lock.shared:
            data = lib.eb_finetuner_metadata(self._model, size)
            return b"" if size[0] == 0 else ffi.buffer(data, size[0])[:]

    def set_metadata(self, data: bytes) -> None:
        with self.lock.exclusive:
            raise_for_status(lib.eb_finetuner_set_metadata(self._model, data, len(data)), self._last_error())

    # ---- training ------------------------------------------------------------------------------------

    def _train(self, function_name: str, X: np.ndarray, labels: np.ndarray, n_classes: int,
               listener: Optional[EpochListener], names: Optional[ClassNames] = None) -> Optional[BaseException]:
        with self.lock.exclusive:
            return self._train_exclusively(function_name, X, labels, n_classes, listener, names)

    def _train_exclusively(self, function_name: str, X: np.ndarray, labels: Any, n_classes: int,
                           listener: Optional[EpochListener], names: Optional[ClassNames] = None
                           ) -> Optional[BaseException]:
        """One C training call. For the pair learner X is the first matrix of the pairs, labels the
        (X2, similarity) of them and n_classes unused."""
        self.monitor.listener = listener
        self.monitor.pending = None
        outer_monitor = getattr(_training, "monitor", None)
        _training.monitor = self.monitor
        try:
            raise_for_status(lib.eb_finetuner_set_threads(self._model, training_team_threads()), self._last_error())
            with training_threads(self.kind, X.shape[0], X.shape[1], self.params()):
                if function_name.endswith("_pairs"):
                    X2, similarity = labels
                    pairs = lib.eb_pairs_aligned(input_matrix(X), input_matrix(X2),
                                                 ffi.cast("const float *", similarity.ctypes.data))
                    status = self._function(function_name)(self._model, pairs)
                else:
                    view = class_labels_view(names)
                    status = self._function(function_name)(self._model, input_matrix(X), label_pointer(labels),
                                                            n_classes, view.struct)
        finally:
            _training.monitor = outer_monitor
            self.monitor.listener = None
        raise_for_status(status, self._last_error())
        interrupted, self.monitor.pending = self.monitor.pending, None
        return interrupted

    def fit(self, X: np.ndarray, labels: np.ndarray, n_classes: int,
            listener: Optional[EpochListener] = None, names: Optional[ClassNames] = None) -> Optional[BaseException]:
        """Train from scratch, naming the classes names (or none). Returns the exception a listener raised
        (training stopped there), or None."""
        return self._train("fit", X, labels, n_classes, listener, names)

    def partial_fit(self, X: np.ndarray, labels: np.ndarray, n_classes: int,
                    listener: Optional[EpochListener] = None,
                    names: Optional[ClassNames] = None) -> Optional[BaseException]:
        """One pass; see fit for the return value."""
        return self._train("partial_fit", X, labels, n_classes, listener, names)

    def fit_pairs(self, X1: np.ndarray, X2: np.ndarray, similarity: np.ndarray,
                  listener: Optional[EpochListener] = None) -> Optional[BaseException]:
        """The pair learner from scratch on the row-aligned pairs (X1[i], X2[i]) with targets similarity
        (C-contiguous float32); see fit for the return value."""
        return self._train("fit_pairs", X1, (X2, similarity), 0, listener)

    def partial_fit_pairs(self, X1: np.ndarray, X2: np.ndarray, similarity: np.ndarray,
                          listener: Optional[EpochListener] = None) -> Optional[BaseException]:
        """One epoch over the pairs, continuing; see fit for the return value."""
        return self._train("partial_fit_pairs", X1, (X2, similarity), 0, listener)

    def predict_pairs(self, X1: np.ndarray, X2: np.ndarray) -> np.ndarray:
        """The cosine of the re-embedded rows of each pair (X1[i], X2[i]), float32."""
        out = np.empty(X1.shape[0], dtype=np.float32)
        error = ffi.new("eb_error *")
        with self.lock.shared:
            pairs = lib.eb_pairs_aligned(input_matrix(X1), input_matrix(X2), ffi.NULL)
            status = lib.eb_finetuner_predict_pairs(self._model, pairs, ffi.cast("float *", out.ctypes.data),
                                                    len(out), error)
        raise_for_status(status, _message(error))
        return out

    def transform(self, X: np.ndarray) -> np.ndarray:
        with self.lock.shared:
            return self._transform_shared(X)

    def _transform_shared(self, X: np.ndarray) -> np.ndarray:
        out = np.empty((X.shape[0], self.output_dim), dtype=np.float32)
        blocks = transform_blocks(X.shape[0], X.shape[1], self.output_dim)
        if len(blocks) > 1 and self._transform_in_blocks(X, out, blocks):
            return out
        # One call: also how a failed block learns its error, with rows numbered from the start of X.
        error = ffi.new("eb_error *")
        status = self._function("transform")(self._model, input_matrix(X), output_matrix(out), error)
        raise_for_status(status, _message(error))
        return out

    def _transform_in_blocks(self, X: np.ndarray, out: np.ndarray, blocks: list[tuple[int, int]]) -> bool:
        """Transform each (start, stop) block of rows on a thread of its own; False if any block failed.

        The caller's shared hold covers the helper threads, which call C directly: were they to ask for holds of
        their own, a writer arriving meanwhile would make them wait for it, and it for the caller, forever.
        """
        transform = self._function("transform")
        statuses = [None] * len(blocks)

        def run(index):
            start, stop = blocks[index]
            statuses[index] = transform(self._model, input_matrix(X[start:stop]), output_matrix(out[start:stop]),
                                        ffi.NULL)

        with single_blas_thread():
            helpers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, len(blocks))]
            for helper in helpers:
                helper.start()
            try:
                run(0)
            finally:
                for helper in helpers:
                    helper.join()
        return all(status == lib.EB_OK for status in statuses)

    def _read(self, name: str) -> Any:
        with self.lock.shared:
            return self._function(name)(self._model)

    @property
    def is_fitted(self) -> bool:
        return bool(self._read("is_fitted"))

    @property
    def n_features(self) -> int:
        return int(self._read("n_features"))

    @property
    def n_classes(self) -> int:
        return int(self._read("n_classes"))

    @property
    def output_dim(self) -> int:
        return int(self._read("output_dim"))

    def loss_history(self) -> np.ndarray:
        length = ffi.new("size_t *")
        # The C array lives until the next training call: copy it before letting one in.
        with self.lock.shared:
            values = lib.eb_finetuner_loss_history(self._model, length)
            if length[0] == 0:
                return np.empty(0, dtype=np.float64)
            return np.frombuffer(ffi.buffer(values, length[0] * ffi.sizeof("double")), dtype=np.float64).copy()

    def params(self) -> Any:
        return self._read("get_params")


class _LabelsView:
    """An eb_class_labels struct (or NULL) and the cffi objects its pointers point into, kept alive together."""

    def __init__(self, struct: Any, keep: list) -> None:
        self.struct = struct
        self._keep = keep


def class_labels_view(names: Optional[ClassNames]) -> _LabelsView:
    """The C view of class names: None (NULL), a list of int (int64) or a list of bytes (UTF-8 strings).

    The C library checks the names (distinct, valid UTF-8, length); this only lays them out.
    """
    if names is None:
        return _LabelsView(ffi.NULL, [])
    struct = ffi.new("eb_class_labels *")
    struct.count = len(names)
    if names and isinstance(names[0], bytes):
        strings = [ffi.new("char[]", name) for name in names]
        pointers = ffi.new("const char *[]", strings)
        lengths = ffi.new("size_t[]", [len(name) for name in names])
        struct.type = lib.EB_LABELS_UTF8
        struct.strings = pointers
        struct.string_lengths = lengths
        return _LabelsView(struct, [strings, pointers, lengths])
    integers = ffi.new("int64_t[]", [int(name) for name in names])
    struct.type = lib.EB_LABELS_INT64
    struct.integers = integers
    return _LabelsView(struct, [integers])


def _message(error: Any) -> str:
    return ffi.string(error.message).decode("utf-8", "replace")


def library_version() -> str:
    return ffi.string(lib.eb_version()).decode("ascii")
