"""The cffi layer: API coverage, version, errors, zero-copy views, the GIL, pickling."""
import ctypes
import importlib.metadata
import pickle
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import libembetter
import libembetter._binding as binding
import libembetter._native
from libembetter._native import ffi, lib
from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner

TUNERS = [
    pytest.param(lambda: FeedForwardFinetuner(hidden_dim=6, n_epochs=20, random_state=0), id="feedforward"),
    pytest.param(lambda: ContrastiveFinetuner(hidden_dim=5, n_epochs=8, random_state=0), id="contrastive"),
]


def public_headers(repo_root):
    """embetter.h and every embetter/ header it includes, transitively (version.h as its CMake template)."""
    pending, seen = ["embetter/embetter.h"], []
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.append(name)
        text = header_source(repo_root, name).read_text()
        pending += re.findall(r'^\s*#\s*include\s+"(embetter/[^"]+)"', text, flags=re.MULTILINE)
    return [header_source(repo_root, name) for name in seen]


def header_source(repo_root, name):
    path = repo_root / "include" / name
    return path if path.exists() else path.with_name(path.name + ".in")


def test_every_public_function_is_bound(repo_root):
    declared = set()
    for header in public_headers(repo_root):
        text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.DOTALL)
        declared.update(re.findall(r"\bEB_API\b[^;(]*?\b(eb_\w+)\s*\(", text))
    assert len(declared) > 40
    unbound = sorted(name for name in declared if not hasattr(lib, name))
    # The build leaves out only declarations whose C definition does not exist yet, so
    # nothing unbound may be among the symbols the compiled library exports.
    exported = ctypes.CDLL(libembetter._native.__file__)
    assert [name for name in unbound if hasattr(exported, name)] == []
    assert len(unbound) < len(declared) // 4


def test_header_constants_are_exposed(repo_root):
    header = (repo_root / "include" / "embetter" / "common.h").read_text()
    status_count = int(re.search(r"#define EB_STATUS_COUNT (\d+)", header).group(1))
    assert lib.EB_STATUS_COUNT == status_count
    assert lib.EB_HIDDEN_DIM_AS_INPUT == int(ffi.cast("size_t", -1))
    assert lib.EB_ERROR_MESSAGE_SIZE == ffi.sizeof(ffi.new("eb_error *").message)


def test_version_comes_from_the_library(repo_root):
    # Written once, in CMakeLists.txt; version.h and the package metadata are generated from it.
    cmake_lists = (repo_root / "CMakeLists.txt").read_text()
    expected = re.search(r"project\(embetter\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+)", cmake_lists).group(1)
    assert libembetter.__version__ == expected
    assert importlib.metadata.version("libembetter") == expected


# ---- statuses become exceptions ----------------------------------------------------------


def test_every_status_maps_to_an_exception_with_the_c_message():
    # The builtin each status raises (EB_ERR_IO was turned into OSError by each caller before the
    # hierarchy; now the status itself is). tests/python/test_errors.py checks the classes.
    expected_types = {
        lib.EB_ERR_NOT_FITTED: NotFittedError,
        lib.EB_ERR_NOMEM: MemoryError,
        lib.EB_ERR_NULL_POINTER: TypeError,
        lib.EB_ERR_WRONG_KIND: TypeError,
        lib.EB_ERR_IO: OSError,
    }
    for status in range(1, lib.EB_STATUS_COUNT):
        error = binding.error_for_status(status, "detail from C")
        assert isinstance(error, expected_types.get(status, ValueError)), binding.status_name(status)
        assert isinstance(error, libembetter.EmbetterError)
        assert str(error) == "detail from C"
        assert error.status == binding.status_name(status)
        assert error.status.startswith("EB_ERR_")
    binding.raise_for_status(lib.EB_OK, "")  # success raises nothing


def test_c_errors_arrive_with_their_message(blobs):
    X, y = blobs
    model = binding.NativeModel.create("feedforward", {"hidden_dim": 3, "n_epochs": 2})
    with pytest.raises(NotFittedError, match="not fitted"):
        model.transform(X)
    with pytest.raises(ValueError, match=r"y\[0\] is 5, outside the 3 classes") as caught:
        model.fit(X, np.full(len(X), 5, dtype=np.int32), 3)
    assert caught.value.status == "EB_ERR_LABEL_OUT_OF_RANGE"
    with pytest.raises(ValueError, match="hidden_dim is 0") as caught:
        binding.NativeModel.create("contrastive", {"hidden_dim": 0})
    assert caught.value.status == "EB_ERR_INVALID_PARAM"


def test_corrupt_saved_bytes_are_rejected():
    saved = binding.NativeModel.create("feedforward", {"hidden_dim": 3}).to_bytes()
    with pytest.raises(ValueError) as caught:
        binding.NativeModel.from_bytes("feedforward", saved[:-3])
    assert caught.value.status == "EB_ERR_FORMAT"
    with pytest.raises(libembetter.ModelFormatError, match="holds a feedforward finetuner, not a contrastive one"):
        binding.NativeModel.from_bytes("contrastive", saved)  # the other kind of model


def test_kind_names_and_numbers_are_the_c_librarys():
    assert binding.KIND_NAMES == {lib.EB_KIND_FEEDFORWARD: "feedforward", lib.EB_KIND_CONTRASTIVE: "contrastive",
                                  lib.EB_KIND_PAIR_LEARNER: "pair_learner"}
    for number, name in binding.KIND_NAMES.items():
        assert ffi.string(lib.eb_finetuner_kind_name(number)).decode() == name
        assert binding.NativeModel.create(name, {}).kind == name
        assert lib.eb_finetuner_kind_of(binding.NativeModel.create(name, {})._model) == number


def test_new_statuses_arrive_as_their_classes():
    pairs_on_feedforward = binding.NativeModel.create("feedforward", {"hidden_dim": 3})
    X = np.ones((4, 2), dtype=np.float32)
    with pytest.raises(libembetter.WrongKindError) as caught:
        pairs_on_feedforward.fit_pairs(X, X, np.ones(4, dtype=np.float32))
    assert isinstance(caught.value, TypeError) and caught.value.status == "EB_ERR_WRONG_KIND"
    # A buffer one float short of the pairs: the C library refuses it instead of writing past it.
    tuner = FeedForwardFinetuner(hidden_dim=3, n_epochs=2, random_state=0).fit(X, [0, 1, 0, 1])
    out = np.empty(3, dtype=np.float32)
    error = ffi.new("eb_error *")
    pairs = lib.eb_pairs_aligned(binding.input_matrix(X), binding.input_matrix(X), ffi.NULL)
    status = lib.eb_finetuner_predict_pairs(tuner._native._model, pairs, ffi.cast("float *", out.ctypes.data), 3,
                                            error)
    with pytest.raises(libembetter.BufferTooSmallError) as caught:
        binding.raise_for_status(status, ffi.string(error.message).decode())
    assert isinstance(caught.value, ValueError) and "4" in str(caught.value)
    # Zeroed memory was never a finetuner: its magic is wrong, which the C library reports.
    not_a_handle = ffi.cast("eb_finetuner *", ffi.new("uint64_t[64]"))
    error = ffi.new("eb_error *")
    status = lib.eb_finetuner_check_savable(not_a_handle, error)
    with pytest.raises(libembetter.InvalidHandleError) as caught:
        binding.raise_for_status(status, ffi.string(error.message).decode())
    assert isinstance(caught.value, ValueError) and caught.value.status == "EB_ERR_INVALID_HANDLE"


# ---- what the binding asks the C library instead of knowing it --------------------------------------------


@pytest.mark.parametrize("kind", ["feedforward", "contrastive", "pair_learner"])
def test_the_kind_of_saved_bytes_comes_from_the_c_header_reader(kind, tmp_path):
    model = binding.NativeModel.create(kind, {"hidden_dim": 3})
    data = model.to_bytes()
    assert binding.NativeModel.read_header(data).format_version == lib.EB_MODEL_FORMAT_VERSION
    assert binding.NativeModel.saved_kind(data) == kind
    assert binding.NativeModel.saved_kind(data[:lib.EB_MODEL_HEADER_SIZE]) == kind  # the header is enough
    assert binding.NativeModel.from_bytes(None, data).kind == kind
    # save() is the C library's atomic file save of the same bytes.
    model.save(tmp_path / "model.ebm")
    assert (tmp_path / "model.ebm").read_bytes() == data


@pytest.mark.parametrize("change, message", [
    (lambda data: b"PK" + data[2:], "not an embetter model"),
    (lambda data: data[:8] + bytes([lib.EB_MODEL_FORMAT_VERSION + 1, 0, 0, 0]) + data[12:], "is newer than"),
    (lambda data: data[:12] + bytes([7, 0, 0, 0]) + data[16:], "unknown kind 7"),
    (lambda data: data[:20], "20 bytes is shorter than the 28-byte header"),
])
def test_a_header_the_loaders_refuse_is_refused_with_their_message(change, message):
    data = change(binding.NativeModel.create("feedforward", {"hidden_dim": 3}).to_bytes())
    with pytest.raises(libembetter.ModelFormatError, match=message) as from_header:
        binding.NativeModel.saved_kind(data)
    with pytest.raises(libembetter.ModelFormatError) as from_loader:
        binding.NativeModel.from_bytes("feedforward", data)
    assert str(from_header.value) == str(from_loader.value)


def test_transform_slices_and_training_step_rows_are_the_c_librarys():
    from libembetter import _config

    assert _config.TRANSFORM_SLICE_ROWS == lib.EB_TRANSFORM_SLICE_ROWS
    # 2 pairs per batch over 5 rows: 2 is not below 5 // 2, so the step uses all 5 rows, not 4.
    assert _config.training_product_size("contrastive", 5, 10, 3, 2) == 5 * 10 * 3
    assert _config.training_product_size("contrastive", 5, 10, 3, 1) == 2 * 10 * 3
    assert _config.training_product_size("feedforward", 200, 10, 3, 32) == 32 * 10 * 3
    assert _config.training_product_size("feedforward", 200, 10, 3, 0) == 200 * 10 * 3


# ---- zero-copy views ---------------------------------------------------------------------------


def data_pointer(array):
    return array.__array_interface__["data"][0]


@pytest.mark.parametrize(
    "view",
    [
        lambda X: X,
        lambda X: X[::3],
        lambda X: X[5:40],
        lambda X: X[:, 2:7],
        lambda X: X[1::2, :4],
        lambda X: X[7:8],
    ],
    ids=["contiguous", "every-third-row", "row-range", "column-range", "rows-and-columns", "one-row"],
)
def test_float32_row_views_reach_c_without_a_copy(blobs, monkeypatch, view):
    X, y = blobs
    tuner = FeedForwardFinetuner(hidden_dim=4, n_epochs=3, random_state=0)
    part = view(X)
    seen = []
    real_input_matrix = binding.input_matrix

    def recording_input_matrix(array):
        matrix = real_input_matrix(array)
        seen.append((int(ffi.cast("uintptr_t", matrix.data)), matrix.rows, matrix.cols, matrix.stride))
        return matrix

    monkeypatch.setattr(binding, "input_matrix", recording_input_matrix)
    labels = np.arange(part.shape[0]) % 2
    tuner.fit(part, labels)
    out = tuner.transform(part)
    expected_stride = part.strides[0] // 4 if part.shape[0] > 1 else part.shape[1]
    assert seen == [(data_pointer(part), part.shape[0], part.shape[1], expected_stride)] * 2

    copy = np.ascontiguousarray(part)
    reference = FeedForwardFinetuner(hidden_dim=4, n_epochs=3, random_state=0).fit(copy, labels)
    np.testing.assert_array_equal(out, reference.transform(copy))


@pytest.mark.parametrize(
    "make_input",
    [
        lambda X: X.astype(np.float64),
        lambda X: np.asfortranarray(X),
        lambda X: X[::-1],
        lambda X: X[:, ::2],
    ],
    ids=["float64", "fortran", "reversed-rows", "strided-columns"],
)
def test_other_layouts_are_copied_once_to_c_order(blobs, make_input):
    X, _ = blobs
    source = make_input(X)
    converted = binding.as_float32_rows(source)
    assert converted.dtype == np.float32 and converted.flags.c_contiguous
    assert not np.shares_memory(converted, source)
    np.testing.assert_array_equal(converted, source.astype(np.float32))


def test_unaligned_float32_data_is_copied():
    raw = np.zeros(4 * 20 + 1, dtype=np.uint8)
    unaligned = raw[1:].view(np.float32).reshape(4, 5)
    assert binding.as_float32_rows(unaligned) is not unaligned
    aligned = np.zeros((4, 5), dtype=np.float32)
    assert binding.as_float32_rows(aligned) is aligned


def test_readonly_input_is_read_in_place(blobs):
    X, y = blobs
    frozen = X.copy()
    frozen.setflags(write=False)
    tuner = ContrastiveFinetuner(n_epochs=2, random_state=0).fit(frozen, y)
    np.testing.assert_array_equal(tuner.transform(frozen), tuner.transform(X))


# ---- the GIL is released: threads run transforms side by side ---------------------------------------------


@pytest.mark.parametrize("make_tuner", TUNERS)
def test_threaded_transforms_equal_serial(make_tuner):
    rng = np.random.RandomState(1)
    X = rng.normal(size=(4000, 32)).astype(np.float32)
    y = rng.randint(0, 4, size=len(X))
    tuner = make_tuner().fit(X[:300], y[:300])
    chunks = np.array_split(X, 16)
    serial = [tuner.transform(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            threaded = list(pool.map(tuner.transform, chunks))
            for a, b in zip(serial, threaded):
                np.testing.assert_array_equal(a, b)


def test_python_threads_run_while_a_transform_is_in_c():
    rng = np.random.RandomState(2)
    X = rng.normal(size=(20000, 128)).astype(np.float32)
    tuner = FeedForwardFinetuner(hidden_dim=512, n_epochs=1, random_state=0).fit(X[:50], np.arange(50) % 2)
    native = tuner._native
    out = np.empty((len(X), 512), dtype=np.float32)
    args = (native._model, binding.input_matrix(X), binding.output_matrix(out), ffi.NULL)
    window = {}
    finished = threading.Event()

    def call_c():
        window["start"] = time.perf_counter()
        window["status"] = lib.eb_finetuner_transform(*args)
        window["end"] = time.perf_counter()
        finished.set()

    worker = threading.Thread(target=call_c)
    ticks = []
    worker.start()
    while not finished.is_set():
        ticks.append(time.perf_counter())
    worker.join()

    assert window["status"] == lib.EB_OK
    np.testing.assert_array_equal(out, tuner.transform(X))
    # Had the C call kept the GIL, this thread could not have run a single bytecode meanwhile.
    during_call = [t for t in ticks if window["start"] < t < window["end"]]
    assert len(during_call) > 100, (len(during_call), window["end"] - window["start"])


# ---- pickling -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_tuner", TUNERS)
@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), ("joblib", "joblib")], ids=["pickle", "joblib"])
def test_pickled_models_transform_identically_and_keep_training(make_tuner, dumps, loads, blobs, tmp_path):
    X, y = blobs
    labels = np.array(["a", "b", "c"])[y]
    tuner = make_tuner().fit(X, labels)
    if dumps == "joblib":
        joblib.dump(tuner, tmp_path / "model.joblib")
        restored = joblib.load(tmp_path / "model.joblib")
    else:
        restored = loads(dumps(tuner))
    np.testing.assert_array_equal(restored.transform(X), tuner.transform(X))
    np.testing.assert_array_equal(restored.classes_, tuner.classes_)
    np.testing.assert_array_equal(restored.loss_curve_, tuner.loss_curve_)
    assert restored.get_params() == tuner.get_params()

    for rows in (slice(0, 50), slice(30, 90)):
        restored.partial_fit(X[rows], labels[rows])
        tuner.partial_fit(X[rows], labels[rows])
    np.testing.assert_array_equal(restored.transform(X), tuner.transform(X))
    np.testing.assert_array_equal(restored.loss_curve_, tuner.loss_curve_)


@pytest.mark.parametrize("make_tuner", TUNERS)
def test_unfitted_models_pickle(make_tuner, blobs):
    X, y = blobs
    restored = pickle.loads(pickle.dumps(make_tuner()))
    with pytest.raises(NotFittedError):
        restored.transform(X)
    np.testing.assert_array_equal(restored.fit(X, y).transform(X), make_tuner().fit(X, y).transform(X))


def test_verbose_progress_works_after_unpickling(blobs, capsys):
    X, y = blobs
    tuner = pickle.loads(pickle.dumps(FeedForwardFinetuner(hidden_dim=3, n_epochs=4, verbose=True).fit(X, y)))
    capsys.readouterr()
    tuner.fit(X, y)
    assert "4/4" in capsys.readouterr().err
