"""One model, many threads: every mix of calls is safe and equals some serial order of the same calls.

Each stress test runs one mix for a bounded time (STRESS_SECONDS) and count.
A recording wrapper around the training call (it runs inside the model's
exclusive hold, so its records come in the order the calls held the lock)
keeps the C model's bytes, a probe matrix's transform and the loss curve
after every training call. Every concurrent result must then equal one of
those states bit for bit, and replaying the training calls serially in the
recorded order must reproduce every recorded state and the final one.
Without the locks these mixes abort the process (heap corruption in the loss
history), return transforms of half-updated weights, or pickle bytes that do
not load.
"""
import copy
import pickle
import threading
import time

import joblib
import numpy as np
import pytest

from libembetter import _binding, _config
from libembetter._binding import ModelLock, NativeModel
from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner
from libembetter.finetune import _base

STRESS_SECONDS = 1.0
MAX_CALLS = 400  # per thread and mix: a bound on the count as well as on the time
JOIN_SECONDS = 60  # a thread still running by then is a deadlock


def _dataset(seed, rows=48, features=6, classes=3):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    y = np.arange(rows) % classes
    X[np.arange(rows), y] += 2.0
    return X, y


BATCHES = [_dataset(seed) for seed in range(8)]
X_FULL, Y_FULL = _dataset(100, rows=96)
# 1100 rows: more than two of the C library's transform slices, so the blocked transform splits it.
PROBE = np.random.RandomState(7).normal(size=(1100, 6)).astype(np.float32)


def _new_model(kind):
    if kind == "feedforward":
        return FeedForwardFinetuner(hidden_dim=5, n_epochs=3, learning_rate=0.05, random_state=0)
    return ContrastiveFinetuner(hidden_dim=5, n_epochs=2, learning_rate=0.01, random_state=0)


class Recorder:
    """The states the model passes through, in the order the training calls held its lock."""

    def __init__(self):
        self.labels = []  # what each training call trained on, as the calling thread named it
        self.states = []  # C bytes after each call
        self.probes = []  # transform(PROBE) bytes after each call
        self.curves = []  # loss_curve_ bytes after each call
        self.params = []  # (learning_rate, n_epochs) each call trained with
        self.current = threading.local()

    def record(self, native):
        self.labels.append(getattr(self.current, "label", None))
        self.states.append(native.to_bytes())
        self.probes.append(native.transform(PROBE).tobytes())
        self.curves.append(native.loss_history().tobytes())
        params = native.params()
        self.params.append((np.float32(params.learning_rate), int(params.n_epochs)))

    def record_estimator(self, model):
        """The estimator's current state as one more known state (taken under its exclusive hold)."""
        with model._lock().exclusive:
            self.record(model._native)


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    original = NativeModel._train_exclusively

    def recording(native, *args):
        result = original(native, *args)
        rec.record(native)
        return result

    monkeypatch.setattr(NativeModel, "_train_exclusively", recording)
    # The blocked transform (one block of rows per thread) for PROBE-sized inputs on any machine with 2 cores.
    monkeypatch.setattr(_config, "PARALLEL_TRANSFORM_MIN_MACS", 1)
    monkeypatch.setattr(_binding, "transform_blocks",
                        lambda rows, cols, width: _config.transform_blocks(rows, cols, width, threads=2))
    return rec


def _run_threads(workers):
    """Start every worker at once, each looping body(i) until the time or count runs out; re-raise any error."""
    errors = []
    start = threading.Barrier(len(workers))
    deadline = [None]

    def loop(body):
        try:
            start.wait()
            if deadline[0] is None:
                deadline[0] = time.monotonic() + STRESS_SECONDS
            for i in range(MAX_CALLS):
                if time.monotonic() > deadline[0]:
                    break
                body(i)
        except BaseException as error:  # noqa: B902 - handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=loop, args=(body,), daemon=True) for body in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
        assert not thread.is_alive(), "a thread did not finish: deadlock"
    if errors:
        raise errors[0]


def _trainer(model, rec, name):
    def body(i):
        rec.current.label = (name, i % len(BATCHES))
        X, y = BATCHES[i % len(BATCHES)]
        model.partial_fit(X, y)

    return body


def _fitted(kind, rec):
    model = _new_model(kind)
    X, y = BATCHES[0]
    model.partial_fit(X, y, classes=[0, 1, 2])
    rec.labels.clear(), rec.states.clear(), rec.probes.clear(), rec.curves.clear(), rec.params.clear()
    rec.record_estimator(model)
    return model, pickle.dumps(model)


def _trained_state(native):
    """The C bytes of a model without the metadata a save or pickle adds: what training alone left in it."""
    copy = native.copy()
    copy.set_metadata(b"")
    return copy.to_bytes()


def _assert_serial_replay(rec, initial_pickle, final_model):
    """Replaying the recorded partial_fit calls in their recorded order passes through every recorded state."""
    labels, states = list(rec.labels), list(rec.states)  # the replay's own calls are recorded too
    replay = pickle.loads(initial_pickle)
    # A pickle carries the model file, whose metadata the live C model (which only training touched) lacks.
    replay._native.set_metadata(b"")
    assert replay._native.to_bytes() == states[0]
    for step, label in enumerate(labels[1:], start=1):
        X, y = BATCHES[label[1]]
        replay._native.partial_fit(X, _base.encode_labels(y, replay.classes_), 0)
        assert replay._native.to_bytes() == states[step], f"training call {step} ({label}) is not serial"
    assert final_model._native.to_bytes() == states[-1]
    np.testing.assert_array_equal(final_model.transform(PROBE), replay.transform(PROBE))


@pytest.mark.parametrize("kind", ["feedforward", "contrastive"])
def test_partial_fit_from_three_threads_equals_their_serial_order(recorder, kind):
    model, initial = _fitted(kind, recorder)
    _run_threads([_trainer(model, recorder, name) for name in "abc"])
    calls = len(recorder.labels) - 1
    assert calls >= 3 and {label[0] for label in recorder.labels[1:]} == set("abc")
    _assert_serial_replay(recorder, initial, model)
    assert len(model.loss_curve_) == 1 + calls  # one entry per pass, none lost or doubled


def test_the_native_model_alone_serialises_its_c_handle(recorder):
    """NativeModel's own lock, without the estimator's: two trainers and a transformer on one C handle."""
    model, initial = _fitted("contrastive", recorder)
    native = model._native
    labels = {index: _base.encode_labels(y, model.classes_) for index, (_, y) in enumerate(BATCHES)}
    outputs = []

    def trainer(name):
        def body(i):
            recorder.current.label = (name, i % len(BATCHES))
            native.partial_fit(BATCHES[i % len(BATCHES)][0], labels[i % len(BATCHES)], 0)

        return body

    _run_threads([trainer("a"), trainer("b"), lambda i: outputs.append(native.transform(PROBE).tobytes())])
    assert len(outputs) > 3 and set(outputs) <= set(recorder.probes)
    _assert_serial_replay(recorder, initial, model)


def test_eight_transforms_and_the_accessors_during_partial_fit_see_whole_states(recorder):
    model, initial = _fitted("feedforward", recorder)
    outputs, curves, widths = [], [], []

    def transformer(i):
        outputs.append(model.transform(PROBE).tobytes())

    def reader(i):
        curves.append(model.loss_curve_.tobytes())
        widths.append((model.n_features_in_, len(model.classes_), len(model.get_feature_names_out())))

    _run_threads([_trainer(model, recorder, "t")] + [transformer] * 8 + [reader])
    assert len(recorder.labels) > 3 and len(outputs) > 8
    known = set(recorder.probes)
    assert all(output in known for output in outputs), "a transform matched no state of the model"
    assert len(set(outputs)) > 1, "the transforms never overlapped training; the test proved nothing"
    assert set(curves) <= set(recorder.curves)
    assert set(widths) == {(6, 3, 5)}
    _assert_serial_replay(recorder, initial, model)


def test_pickles_taken_during_partial_fit_load_to_a_state_of_the_model(recorder):
    model, initial = _fitted("contrastive", recorder)
    dumps = []
    _run_threads([_trainer(model, recorder, "t"), lambda i: dumps.append(pickle.dumps(model))])
    assert len(dumps) > 3
    states = set(recorder.states)
    for data in dumps:
        loaded = pickle.loads(data)
        assert _trained_state(loaded._native) in states
        np.testing.assert_array_equal(loaded.classes_, [0, 1, 2])
    _assert_serial_replay(recorder, initial, model)


def test_deepcopy_and_joblib_during_partial_fit_copy_a_state_of_the_model(recorder, tmp_path):
    model, initial = _fitted("feedforward", recorder)
    copies = []

    def copier(i):
        copies.append(copy.deepcopy(model))
        if i % 10 == 0:
            path = tmp_path / f"model-{i}.joblib"
            joblib.dump(model, path)
            copies.append(joblib.load(path))

    _run_threads([_trainer(model, recorder, "t"), copier])
    states = set(recorder.states)
    assert len(copies) > 3 and all(_trained_state(c._native) in states for c in copies)
    assert all(c._lock() is not model._lock() for c in copies)
    _assert_serial_replay(recorder, initial, model)


def test_saves_during_partial_fit_each_hold_one_state_whole(recorder, tmp_path):
    model, initial = _fitted("feedforward", recorder)
    paths = []

    def saver(i):
        path = tmp_path / f"model-{i}.embetter"
        model.save(path)
        paths.append(path)

    _run_threads([_trainer(model, recorder, "t"), saver])
    states = set(recorder.states)
    assert len(paths) > 3
    for path in paths:
        assert _trained_state(FeedForwardFinetuner.load(path)._native) in states
    _assert_serial_replay(recorder, initial, model)


def test_set_params_fit_and_transform_from_many_threads_equal_a_serial_order(recorder):
    model = _new_model("feedforward")
    model.fit(X_FULL, Y_FULL)
    recorder.record_estimator(model)
    # set_params changes two parameters at once: a fit must see both of one call, never one of each.
    settings = [dict(learning_rate=0.05, n_epochs=3), dict(learning_rate=0.02, n_epochs=4)]
    outputs = []

    def setter(i):
        model.set_params(**settings[i % 2])

    def fitter(i):
        model.fit(X_FULL, Y_FULL)

    def transformer(i):
        outputs.append(model.transform(PROBE).tobytes())

    _run_threads([setter, fitter, fitter, transformer, transformer])
    assert model._native.to_bytes() == recorder.states[-1]
    params, states, probes = list(recorder.params), list(recorder.states), set(recorder.probes)
    allowed = {(np.float32(s["learning_rate"]), s["n_epochs"]) for s in settings}
    assert len(params) > 2 and set(params) <= allowed, "a fit mixed two set_params calls"
    # Every fit equals a fit made alone with the parameters it recorded.
    expected = {}
    for (rate, epochs), state in zip(params, states):
        if (rate, epochs) not in expected:
            alone = _new_model("feedforward").set_params(learning_rate=float(rate), n_epochs=epochs)
            expected[(rate, epochs)] = alone.fit(X_FULL, Y_FULL)._native.to_bytes()
        assert state == expected[(rate, epochs)]
    assert all(output in probes for output in outputs)


def test_attributes_read_without_the_lock_never_show_a_fit_under_way_or_failed(monkeypatch):
    """n_features_in_ and classes_ change once, when a fit is over: never the values of one that failed."""
    model = _new_model("feedforward").fit(X_FULL, Y_FULL)
    # Validation sets n_features_in_ = 9 and the new classes, training runs in C with the GIL released, and an
    # interrupt at its last epoch makes the fit fail.
    wide = np.random.RandomState(1).normal(size=(2000, 9)).astype(np.float32)
    seen = set()

    def interrupt(epoch, loss):
        if epoch == 5:
            raise KeyboardInterrupt

    _Listener(monkeypatch, interrupt)

    def failing_fit(i):
        with pytest.raises(KeyboardInterrupt):
            model.set_params(verbose=True, n_epochs=5).fit(wide, np.arange(2000) % 4 + 10)

    def read(i):
        for _ in range(100):  # reads are quick: spread them over the fits' time
            seen.add((model.n_features_in_, tuple(model.classes_)))
            time.sleep(0.0001)

    _run_threads([failing_fit, read, read])
    assert seen == {(6, (0, 1, 2))}


def test_a_failed_set_params_changes_nothing():
    model = _new_model("feedforward")
    with pytest.raises(ValueError):
        model.set_params(n_epochs=7, no_such_parameter=1)
    assert model.n_epochs == 3


def test_two_transforms_overlap_in_time(monkeypatch):
    """Transforms share the lock: their C calls run at the same time on two threads."""
    model = _new_model("feedforward").fit(X_FULL, Y_FULL)
    X = np.random.RandomState(3).normal(size=(20000, 6)).astype(np.float32)
    intervals = []
    original = NativeModel._function

    def timed_function(native, name):
        function = original(native, name)
        if name != "transform":
            return function

        def timed(*args):
            start = time.perf_counter()
            status = function(*args)
            intervals.append((threading.get_ident(), start, time.perf_counter()))
            return status

        return timed

    monkeypatch.setattr(NativeModel, "_function", timed_function)

    def overlapping():
        return any(a_thread != b_thread and a_start < b_end and b_start < a_end
                   for a_thread, a_start, a_end in intervals for b_thread, b_start, b_end in intervals)

    deadline = time.monotonic() + 10
    while not overlapping() and time.monotonic() < deadline:
        intervals.clear()
        barrier = threading.Barrier(2)

        def work():
            barrier.wait()
            for _ in range(5):
                model.transform(X)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(JOIN_SECONDS)
    assert overlapping(), "no two transforms were ever inside C at the same time"


def _started(target):
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_readers_share_the_lock_and_a_waiting_writer_goes_before_new_readers():
    model = _new_model("feedforward").fit(X_FULL, Y_FULL)
    before = model.transform(PROBE)
    lock = model._lock()
    order = []
    with lock.shared:
        # Another reader is not held up by this one.
        reader = _started(lambda: order.append(("early reader", model.transform(PROBE))))
        reader.join(JOIN_SECONDS)
        assert not reader.is_alive()
        writer = _started(lambda: order.append(("writer", model.partial_fit(X_FULL, Y_FULL))))
        deadline = time.monotonic() + 10
        while lock._waiting_writers == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lock._waiting_writers == 1 and writer.is_alive()
        late_reader = _started(lambda: order.append(("late reader", model.transform(PROBE))))
        time.sleep(0.2)
        assert late_reader.is_alive(), "a reader overtook a waiting writer"
    writer.join(JOIN_SECONDS)
    late_reader.join(JOIN_SECONDS)
    assert [name for name, _ in order] == ["early reader", "writer", "late reader"]
    np.testing.assert_array_equal(order[0][1], before)
    np.testing.assert_array_equal(order[2][1], model.transform(PROBE))
    assert not np.array_equal(order[2][1], before)
    assert lock.is_free()


class _Listener:
    """A progress bar stand-in: epoch_progress replaced by one that calls `action` on each epoch."""

    def __init__(self, monkeypatch, action):
        from contextlib import contextmanager

        @contextmanager
        def progress(total, description):
            yield action

        monkeypatch.setattr(_base, "epoch_progress", progress)


def test_keyboard_interrupt_inside_fit_releases_both_locks(monkeypatch):
    model = _new_model("feedforward").fit(X_FULL, Y_FULL)
    before = model._native.to_bytes()
    old_native = model._native

    def interrupt(epoch, loss):
        if epoch == 2:
            raise KeyboardInterrupt

    _Listener(monkeypatch, interrupt)
    model.set_params(verbose=True, n_epochs=5)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X_FULL, Y_FULL)
    assert model._lock().is_free() and model._native.lock.is_free()
    assert model._native is old_native and model._native.to_bytes() == before
    # Another thread can now take it exclusively.
    other = _started(lambda: model.set_params(verbose=False).partial_fit(X_FULL, Y_FULL))
    other.join(JOIN_SECONDS)
    assert not other.is_alive() and model._native.to_bytes() != before


def test_an_error_inside_a_shared_hold_releases_it():
    model = _new_model("feedforward").fit(X_FULL, Y_FULL)
    with pytest.raises(ValueError):
        model.transform(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError):
        model.transform(np.full((3, 6), np.nan, dtype=np.float32))
    assert model._lock().is_free() and model._native.lock.is_free()


def test_the_epoch_callback_reads_its_own_model_without_deadlock(monkeypatch):
    model = _new_model("feedforward").fit(X_FULL, Y_FULL)
    seen = []

    def read_during_fit(epoch, loss):
        # The fitting thread holds the lock exclusively; reads from it come straight in.
        seen.append((len(model.loss_curve_), model.transform(PROBE[:4]).shape, model.get_params()["n_epochs"],
                     len(pickle.dumps(model)) > 0))

    _Listener(monkeypatch, read_during_fit)
    model.set_params(verbose=True)
    worker = _started(lambda: model.fit(X_FULL, Y_FULL))
    worker.join(JOIN_SECONDS)
    assert not worker.is_alive(), "the callback deadlocked on its own model"
    assert len(seen) == 3 and model._lock().is_free()


def test_training_from_inside_the_callback_or_a_read_is_refused_not_deadlocked(monkeypatch):
    model = _new_model("feedforward").fit(X_FULL, Y_FULL)
    native = model._native
    before = native.to_bytes()
    labels = _base.encode_labels(Y_FULL, model.classes_)

    def train_again(epoch, loss):
        native.partial_fit(X_FULL, labels, 0)

    # A listener's exception stops training and comes back from fit (the estimator re-raises it).
    stopped = native.fit(X_FULL, labels, 3, listener=train_again)
    assert isinstance(stopped, RuntimeError) and "changing the model already" in str(stopped)
    assert native.lock.is_free() and len(native.loss_history()) == 1  # stopped after the first epoch
    native.partial_fit(X_FULL, labels, 0)  # and the model trains again afterwards

    # The same through the estimator: its fit holds its own lock while the callback runs.
    model = _new_model("feedforward").fit(X_FULL, Y_FULL)
    assert model._native.to_bytes() == before
    _Listener(monkeypatch, lambda epoch, loss: model.partial_fit(X_FULL, Y_FULL))
    with pytest.raises(RuntimeError, match="changing the model already"):
        model.set_params(verbose=True).fit(X_FULL, Y_FULL)
    assert model._native.to_bytes() == before and model._lock().is_free()
    # A thread that holds the lock shared (as transform or pickling does) cannot upgrade it.
    with model._lock().shared:
        with pytest.raises(RuntimeError, match="cannot change it"):
            model.set_params(n_epochs=4)
    assert model.n_epochs == 3 and model._lock().is_free()


def test_the_lock_is_no_attribute_and_is_neither_pickled_nor_cloned():
    from sklearn.base import clone

    model = _new_model("feedforward").fit(X_FULL, Y_FULL)
    lock = model._lock()
    assert lock is model._lock() and all(value is not lock for value in vars(model).values())
    assert all(value is not lock for value in model.__getstate__().values())
    assert clone(model)._lock() is not lock and pickle.loads(pickle.dumps(model))._lock() is not lock
    # A failed fit puts the Python state back and keeps the lock others may be waiting on.
    with pytest.raises(ValueError):
        model.fit(X_FULL, Y_FULL[:5])
    assert model._lock() is lock and lock.is_free()


def test_the_first_use_from_many_threads_makes_one_lock():
    for _ in range(20):
        model = _new_model("feedforward")
        barrier = threading.Barrier(4)
        locks = []

        def first_use():
            barrier.wait()
            locks.append(model._lock())

        threads = [_started(first_use) for _ in range(4)]
        for thread in threads:
            thread.join(JOIN_SECONDS)
        assert len(locks) == 4 and all(lock is locks[0] for lock in locks)


def test_model_lock_is_reentrant_for_reads_and_counts_its_holds():
    lock = ModelLock()
    with lock.exclusive:
        with lock.shared, lock.shared:
            pass
        with pytest.raises(RuntimeError):
            lock.acquire_exclusive()
        assert not lock.is_free()
    with lock.shared, lock.shared:
        with pytest.raises(RuntimeError):
            lock.acquire_exclusive()
        assert not lock.is_free()
    assert lock.is_free()
