"""Model files under hostile conditions: special files, racing saves, refused saves, corrupted metadata, pickles.

Each test here stands for a defect a red-team pass found (issue 12, "Files" and "Messages"): loads that block
on a FIFO or read /dev/zero until memory runs out, two saves to one path leaving one model's weights with the
other's labels, saves that replace a good file and then refuse, and hand-edited metadata (in the model file, or
in the sidecar of a libembetter 0.1 file) that raises TypeError or RecursionError instead of naming the field.
"""
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import libembetter
import libembetter.finetune as finetune
from libembetter._binding import NativeModel
from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner

HEADER = 28
V1 = Path(__file__).resolve().parents[1] / "fixtures" / "python-v1"


def files_of(path):
    """{name: bytes} of every file in path's directory: the model and anything left behind."""
    return {entry.name: entry.read_bytes() for entry in Path(path).parent.iterdir()}


@pytest.fixture
def saved(blobs, tmp_path):
    X, y = blobs
    path = tmp_path / "model.ebm"
    tuner = FeedForwardFinetuner(hidden_dim=3, n_epochs=3, random_state=0).fit(X, np.array(["a", "b", "c"])[y])
    tuner.save(path)
    return path, tuner


# ---- loaders never block and read no more than a bound known first ---------------------------------------------

# Runs in a child process with a capped address space, so a loader that blocks fails by timeout and one that reads
# without bound fails with MemoryError, instead of hanging or exhausting this process.
_SPECIAL_FILES_SCRIPT = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
import libembetter.finetune as finetune
results = {}
for path in sys.argv[1:]:
    start = time.monotonic()
    try:
        finetune.load(path)
        results[path] = ["loaded", "", 0.0]
    except BaseException as error:
        results[path] = [type(error).__name__, str(error), time.monotonic() - start]
print(json.dumps(results))
"""


def load_in_child(*paths):
    run = subprocess.run([sys.executable, "-c", _SPECIAL_FILES_SCRIPT, *map(str, paths)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_special_files_are_refused_at_once_naming_the_path_and_what_it_is(saved, tmp_path):
    path, _ = saved
    fifo_model = tmp_path / "fifo.ebm"
    os.mkfifo(fifo_model)
    # A 0.1 model whose sidecar is a FIFO: the sidecar reader must not block either.
    (tmp_path / "fifo-sidecar.ebm").write_bytes((V1 / "feedforward.ebm").read_bytes())
    os.mkfifo(tmp_path / "fifo-sidecar.ebm.json")
    directory = tmp_path / "a-directory"
    directory.mkdir()
    results = load_in_child(fifo_model, tmp_path / "fifo-sidecar.ebm", "/dev/zero", "/dev/null", directory)
    expected = {
        str(fifo_model): "a FIFO",
        str(tmp_path / "fifo-sidecar.ebm"): "a FIFO",
        "/dev/zero": "a character device",
        "/dev/null": "a character device",
        str(directory): "a directory",
    }
    for name, what in expected.items():
        kind, message, seconds = results[name]
        assert kind == "FileAccessError", (name, kind, message)
        assert "is not a regular file: it is " + what in message
        assert name in message
        assert seconds < 5
    assert str(tmp_path / "fifo-sidecar.ebm.json") in results[str(tmp_path / "fifo-sidecar.ebm")][1]


def test_a_directory_raises_oserror_naming_it(tmp_path):
    # Only a directory here: a FIFO or /dev/zero in this process would hang it or exhaust memory on a regression;
    # the child process above tries those.
    with pytest.raises(OSError, match=f"{tmp_path} is not a regular file: it is a directory") as caught:
        finetune.load(tmp_path)
    assert isinstance(caught.value, libembetter.FileAccessError)


def test_huge_sparse_files_are_refused_before_they_are_read(saved, tmp_path):
    path, _ = saved
    huge = 1 << 36  # 64 GiB, sparse: costs nothing on disk, would take all memory to read
    zeros = tmp_path / "zeros.ebm"
    with open(zeros, "wb") as file:
        file.truncate(huge)
    long_model = tmp_path / "long.ebm"
    long_model.write_bytes(path.read_bytes())
    os.truncate(long_model, huge)
    huge_sidecar = tmp_path / "huge-sidecar.ebm"
    huge_sidecar.write_bytes((V1 / "feedforward.ebm").read_bytes())
    Path(str(huge_sidecar) + ".json").write_bytes((V1 / "feedforward.ebm.json").read_bytes())
    os.truncate(str(huge_sidecar) + ".json", huge)
    results = load_in_child(zeros, long_model, huge_sidecar)
    kind, message, seconds = results[str(zeros)]
    assert (kind, seconds < 5) == ("ModelFormatError", True) and "not an embetter model" in message
    assert str(zeros) in message
    kind, message, seconds = results[str(long_model)]
    assert (kind, seconds < 5) == ("ModelFormatError", True), message
    assert f"the header announces {path.stat().st_size - HEADER} payload bytes, the file holds {huge - HEADER}" \
           in message and str(long_model) in message
    kind, message, seconds = results[str(huge_sidecar)]
    assert (kind, seconds < 5) == ("ModelFormatError", True), message
    assert f"{huge_sidecar}.json is {huge} bytes, more than the" in message


def test_a_model_file_shorter_than_its_header_announces_is_refused(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"model\.ebm: saved model: the header announces \d+ payload bytes"):
        finetune.load(path)


# ---- racing saves: every load is one model whole -----------------------------------------------------------------

_SAVER_SCRIPT = r"""
import pickle, sys
with open(sys.argv[1], "rb") as file:
    tuner = pickle.load(file)
for _ in range(int(sys.argv[3])):
    tuner.save(sys.argv[2])
"""


def racing_models(blobs):
    """Two models that load() cannot tell apart by shape: same class, width, classes count and columns."""
    X, y = blobs
    first = FeedForwardFinetuner(hidden_dim=4, n_epochs=3, random_state=1).fit(X, np.array(["a", "b", "c"])[y])
    second = FeedForwardFinetuner(hidden_dim=4, n_epochs=3, random_state=2).fit(X, np.array(["x", "y", "z"])[y])
    return first, second


def which_model(loaded, candidates, X):
    """The index of the candidate loaded equals in classes and transform; fails on a mix of two."""
    output = loaded.transform(X).tobytes()
    for index, candidate in enumerate(candidates):
        if list(loaded.classes_) == list(candidate.classes_) and output == candidate.transform(X).tobytes():
            return index
    pytest.fail(f"loaded a mix: classes {list(loaded.classes_)} with weights of neither model whole")


def check_loads_while(running, path, candidates, X):
    """Load path until running() is false; every load must be one candidate whole (each save renames one complete
    file, labels included, into place)."""
    seen = [0] * len(candidates)
    while True:
        still_running = running()
        seen[which_model(finetune.load(path), candidates, X)] += 1
        if not still_running:
            return seen


def test_two_processes_saving_to_one_path_never_leave_a_mix_that_loads(blobs, tmp_path):
    X, _ = blobs
    models = racing_models(blobs)
    path = tmp_path / "model.ebm"
    models[0].save(path)
    savers = []
    for index, model in enumerate(models):
        pickled = tmp_path / f"model{index}.pickle"
        pickled.write_bytes(pickle.dumps(model))
        savers.append(subprocess.Popen([sys.executable, "-c", _SAVER_SCRIPT, str(pickled), str(path), "60"],
                                       stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 120
    seen = check_loads_while(lambda: any(s.poll() is None for s in savers) and time.monotonic() < deadline,
                             path, models, X)
    for saver in savers:
        assert saver.wait(timeout=60) == 0, saver.stderr.read()
    assert sum(seen) > 0, seen
    # What the race leaves is the file of the save that renamed last: one model whole.
    which_model(finetune.load(path), models, X)
    # Only the model file is left: every temporary file was renamed into place.
    assert sorted(entry.name for entry in tmp_path.iterdir() if not entry.name.endswith(".pickle")) == ["model.ebm"]


def test_two_threads_saving_to_one_path_never_leave_a_mix_that_loads(blobs, tmp_path):
    X, _ = blobs
    models = racing_models(blobs)
    path = tmp_path / "model.ebm"
    models[0].save(path)
    failures = []

    def save_repeatedly(model):
        try:
            for _ in range(80):
                model.save(path)
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=save_repeatedly, args=(model,)) for model in models]
    for thread in threads:
        thread.start()
    seen = check_loads_while(lambda: any(t.is_alive() for t in threads), path, models, X)
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(seen) > 0, seen
    which_model(finetune.load(path), models, X)


def test_a_0_1_sidecar_that_met_another_model_file_is_refused(tmp_path):
    # The state two racing 0.1 saves could leave: one's model file, the other's sidecar.
    path = tmp_path / "model.ebm"
    path.write_bytes((V1 / "contrastive.ebm").read_bytes())
    Path(str(path) + ".json").write_bytes((V1 / "feedforward.ebm.json").read_bytes())
    with pytest.raises(ValueError) as caught:
        finetune.load(path)
    assert f"{path}.json does not belong to {path}" in str(caught.value)
    assert isinstance(caught.value, libembetter.EmbetterError)


# ---- save refuses before touching anything, and never writes what load refuses -------------------------------


def _set(name, value):
    def change(tuner):
        setattr(tuner, name, value)
    return change


REFUSED_SAVES = {
    "nan class": (_set("classes_", np.array([np.nan, 1.0, 2.0])), r"classes_\[0\] is nan; JSON has no NaN"),
    "inf class": (_set("classes_", np.array([1.0, 2.0, np.inf])), r"classes_\[2\] is inf"),
    "lone surrogate": (_set("classes_", np.array(["a", "b\ud800", "c"])), r"classes_\[1\] holds a lone surrogate"),
    "lone surrogate object": (_set("classes_", np.array(["a", "b", "\udcff"], dtype=object)),
                              r"classes_\[2\] holds a lone surrogate"),
    "dates": (_set("classes_", np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[D]")),
              r"classes_ has dtype datetime64\[D\]"),
    "bytes labels": (_set("classes_", np.array([b"a", b"b", b"c"], dtype=object)), r"classes_\[0\] is a bytes"),
    "hidden_dim changed": (lambda t: t.set_params(hidden_dim=50),
                           "hidden_dim is 50 but the fitted model's hidden layer has 3 units; .*back to 3"),
    "n_epochs 0": (lambda t: t.set_params(n_epochs=0), "n_epochs"),
    "nan learning_rate": (lambda t: t.set_params(learning_rate=float("nan")), "learning_rate is nan"),
    "random_state object": (lambda t: t.set_params(random_state=np.random.default_rng(0)), "random_state is a"),
    "classes not sorted": (_set("classes_", np.array(["c", "b", "a"])), "distinct and sorted"),
    "wrong class count": (_set("classes_", np.array(["a", "b"])), "2 .* 3"),
    "wrong class count in metadata": (_set("classes_", np.array([1.5, 2.5])),
                                      "lists 2 classes, the model was fitted on 3"),
    "labels that do not compare": (_set("classes_", np.array([1, 2.5, "x"], dtype=object)), "cannot be compared"),
    "n_features_in_": (_set("n_features_in_", 7), "n_features_in is 7, the model was fitted on 8"),
    "huge labels": (_set("classes_", np.array(["a" * (1 << 21), "b", "c"])), "label 0 .*65536"),
}


@pytest.mark.parametrize("case", REFUSED_SAVES)
def test_a_refused_save_leaves_the_existing_save_byte_identical(saved, case):
    path, tuner = saved
    before = files_of(path)
    change, message = REFUSED_SAVES[case]
    broken = pickle.loads(pickle.dumps(tuner))
    change(broken)
    with pytest.raises((TypeError, ValueError), match=message):
        broken.save(path)
    assert files_of(path) == before
    assert finetune.load(path).classes_.tolist() == ["a", "b", "c"]


_FULL_DISK_SCRIPT = r"""
import pickle, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
with open(sys.argv[1], "rb") as file:
    tuner = pickle.load(file)
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    tuner.save(sys.argv[2])
except OSError as error:
    print(type(error).__name__, error)
"""


def test_a_save_that_fails_midway_leaves_no_temporary_file(saved, blobs, tmp_path):
    path, _ = saved
    X, y = blobs
    bigger = FeedForwardFinetuner(hidden_dim=40, n_epochs=2, random_state=0).fit(X, y)
    pickled = tmp_path / "bigger.pickle"
    pickled.write_bytes(pickle.dumps(bigger))
    before = files_of(path)
    # Room for half of the new file: the write fails with EFBIG, as on a full disk.
    limit = len(bigger.__getstate__()["model_file"]) // 2
    run = subprocess.run([sys.executable, "-c", _FULL_DISK_SCRIPT, str(pickled), str(path), str(limit)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("FileAccessError") and str(path) in run.stdout, run.stdout
    # The new file is written in full before it is renamed into place: nothing left behind, the old file loads.
    assert {name: data for name, data in files_of(path).items() if name != "bigger.pickle"} == \
           {name: data for name, data in before.items() if name != "bigger.pickle"}
    assert finetune.load(path).classes_.tolist() == ["a", "b", "c"]


def test_the_file_gets_the_permissions_the_umask_gives_a_new_file(saved):
    path, tuner = saved
    mask = os.umask(0o027)
    try:
        tuner.save(path)
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o640


def test_an_unfitted_model_file_with_metadata_is_refused_naming_it(saved):
    path, _ = saved
    metadata = NativeModel.from_bytes(None, path.read_bytes()).metadata()
    unfitted = FeedForwardFinetuner(hidden_dim=3)._new_native_model(FeedForwardFinetuner(hidden_dim=3)
                                                                    ._hyperparameters())
    unfitted.set_metadata(metadata)  # metadata made to match: the model decides
    path.write_bytes(unfitted.to_bytes())
    with pytest.raises(ValueError, match=f"{path} holds an unfitted model"):
        finetune.load(path)


@pytest.mark.parametrize("kind", ["str", "bytes", "Path", "PathLike-bytes"])
def test_save_and_load_take_str_bytes_and_pathlike_paths(saved, blobs, tmp_path, kind):
    X, _ = blobs
    _, tuner = saved
    target = tmp_path / "élan" / "model.ebm"
    target.parent.mkdir()

    class BytesPath:
        def __fspath__(self):
            return os.fsencode(target)

    path = {"str": str(target), "bytes": os.fsencode(target), "Path": target, "PathLike-bytes": BytesPath()}[kind]
    tuner.save(path)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.ebm"]
    loaded = finetune.load(path)
    assert loaded.transform(X).tobytes() == tuner.transform(X).tobytes()
    assert type(tuner).load(path).classes_.tolist() == ["a", "b", "c"]


@pytest.mark.parametrize("path, error, message", [
    (3, TypeError, "path is a int; pass a str, bytes or os.PathLike path"),
    (None, TypeError, "path is a NoneType"),
    ("", ValueError, "path is empty"),
    ("a\0b", ValueError, "contains a NUL character"),
])
def test_unusable_paths_are_refused_clearly(saved, path, error, message):
    _, tuner = saved
    with pytest.raises(error, match=message):
        tuner.save(path)
    with pytest.raises(error, match=message):
        finetune.load(path)


def test_the_binding_refuses_a_path_c_would_cut_at_a_nul(saved, tmp_path):
    _, tuner = saved
    with pytest.raises(ValueError, match="contains a NUL character"):
        tuner._native.save(str(tmp_path / "a\0b"))
    assert not (tmp_path / "a").exists()


EDGE_LABELS = {
    "empty and unicode strings": np.array(["", "é", "日本", "🙂"]),
    "int64 extremes": np.array([-2**63, 0, 2**63 - 1]),
    "uint64 max": np.array([0, 2**64 - 1], dtype=np.uint64),
    "float extremes": np.array([-1.7976931348623157e308, -5e-324, 0.0, 1.7976931348623157e308]),
    "float32": np.array([-1.5, 0.25, 3.4028235e38], dtype=np.float32),
    "bools": np.array([False, True]),
    "int8": np.array([-128, 127], dtype=np.int8),
    "object numbers and bools": np.array([False, 2, 2.5], dtype=object),
    "object strings": np.array(["a", "b", "c"], dtype=object),
    "json-looking strings": np.array(['"}', "\\", "\n", "\u2028"]),
}


@pytest.mark.parametrize("labels", EDGE_LABELS)
@pytest.mark.parametrize("make", [
    lambda: FeedForwardFinetuner(hidden_dim=3, n_epochs=2, random_state=np.random.RandomState(5)),
    lambda: ContrastiveFinetuner(n_epochs=2, learning_rate=1e-30, random_state=2**32 - 1),
], ids=["feedforward", "contrastive-as-input"])
def test_what_save_accepts_load_takes_back_whole(make, labels, blobs, tmp_path):
    X, y = blobs
    classes = EDGE_LABELS[labels]
    n_classes = min(len(classes), 3)
    tuner = make().fit(X, y % n_classes)
    # Labels set directly cover values and types fit would not produce from y alone (fit stores them sorted).
    tuner.classes_ = np.sort(classes[:n_classes])
    tuner.save(tmp_path / "model.ebm")
    loaded = finetune.load(tmp_path / "model.ebm")
    assert loaded.classes_.dtype == tuner.classes_.dtype
    assert loaded.classes_.tolist() == tuner.classes_.tolist()
    assert loaded.transform(X).tobytes() == tuner.transform(X).tobytes()
    assert loaded.get_params()["learning_rate"] == tuner.get_params()["learning_rate"]


# ---- corrupted metadata names the file and the field ----------------------------------------------------------

def _edit(change):
    def apply(text):
        metadata = json.loads(text)
        change(metadata)
        return json.dumps(metadata).encode("utf-8")
    return apply


def _put(field, value):
    def change(metadata):
        *parents, last = field.split(".")
        target = metadata
        for parent in parents:
            target = target[parent]
        target[last] = value
    return _edit(change)


WRONG_VALUES = [None, True, "x", 1.5, [], {}, [[[]]], -1, 2**64]
FIELDS = {
    "version": [None, "1", 1.0, [], {}, 2**64, True],
    "estimator": [None, 1, [], {}, "FeedForward", "os.system"],
    "params": [None, 1, "x", [], [1, 2]],
    "classes": [None, 1, "x", [], {}, {"dtype": "<f8"}, {"values": [-1.0, 1.0, 2.0]}],
    "classes.dtype": [None, 1, [], "<M8[D]", "|V8", "not a dtype", "<U1", "object\x00", "<i8"],
    "classes.values": [None, "abc", {}, ["a", "b", "c"], [-1.0, None, 2.0], [-1.0, [1.0], 2.0], [-1.0, 1.0]],
    "n_features_in": [None, "8", 8.0, [], True, 2**64, -8, 0],
    "feature_names_in": [1, "abc", {}, [1] * 8, ["a"] * 7],
    "model_sha256": [None, "00" * 32],
    "params.hidden_dim": [None, "3", 3.5, [], {}, 2**64, 0, True, 4],
    "params.n_epochs": [None, "3", [], 0, 2**64],
    "params.learning_rate": [None, "0.1", [], 0, -1.0, 1e-60],
    "params.batch_size": ["3", [], 0, 1.5],
    "params.verbose": [[], {}],
    "params.random_state": ["x", 1.5, [], -1, 2**40, {}, {"RandomState": 1}, {"RandomState": {}}, {"other": 1}],
}
METADATA_MUTATIONS = {
    f"{field}={value!r}"[:60]: (_put(field, value), field.split(".")[-1])
    for field, values in FIELDS.items() for value in values
}
METADATA_MUTATIONS.update({
    "unknown top-level field": (_put("surprise", 1), "surprise"),
    "unknown parameter": (_put("params.surprise", 1), "surprise"),
    "random_state keys": (_edit(lambda m: m["params"].update(random_state={"RandomState": {
        "bit_generator": "MT19937", "keys": [1] * 623, "position": 0, "has_gauss": 0, "cached_gaussian": 0.0}})),
        "keys"),
    "random_state key too large": (_edit(lambda m: m["params"].update(random_state={"RandomState": {
        "bit_generator": "MT19937", "keys": [2**32] * 624, "position": 0, "has_gauss": 0, "cached_gaussian": 0.0}})),
        "keys[0]"),
    "random_state generator": (_edit(lambda m: m["params"].update(random_state={"RandomState": {
        "bit_generator": "PCG64", "keys": [1] * 624, "position": 0, "has_gauss": 0, "cached_gaussian": 0.0}})),
        "bit_generator"),
    "deeply nested": (lambda text: text.replace(b'"batch_size": null', b'"batch_size": ' + b"[" * 200000
                                                + b"]" * 200000), "nests too deeply"),
    "integer of 5000 digits": (lambda text: text.replace(b'"n_features_in": 8', b'"n_features_in": ' + b"9" * 5000),
                               "n_features_in is an integer of 5000 digits"),
    "NaN literal": (lambda text: text.replace(b'"learning_rate": 0.01', b'"learning_rate": NaN'),
                    "learning_rate is NaN"),
    "Infinity literal": (lambda text: text.replace(b'"n_features_in": 8', b'"n_features_in": -Infinity'),
                         "n_features_in is -Infinity"),
    "1e400": (lambda text: text.replace(b'"learning_rate": 0.01', b'"learning_rate": 1e400'),
              "learning_rate is the number 1e400"),
    "duplicate key": (lambda text: text.replace(b'"n_features_in": 8', b'"n_features_in": 8, "n_features_in": 8'),
                      "field 'n_features_in' appears twice"),
    "duplicate nested key": (lambda text: text.replace(b'"hidden_dim": 3', b'"hidden_dim": 3, "hidden_dim": 9'),
                             "field 'hidden_dim' appears twice"),
    "non-UTF-8 byte": (lambda text: text.replace(b'"FeedForwardFinetuner"', b'"\xff"'), "is not UTF-8"),
    "byte-order mark": (lambda text: b"\xef\xbb\xbf" + text, "byte-order mark"),
    "lone surrogate estimator": (lambda text: text.replace(b'"FeedForwardFinetuner"', b'"\\ud800"'), "estimator"),
    "truncated": (lambda text: text[: len(text) // 2], "not valid JSON"),
    "blank": (lambda text: b" ", "not valid JSON"),
    "a list": (lambda text: b"[1, 2]", "not an embetter finetuner's"),
    "float32 overflow": (_edit(lambda m: m.update(classes={"dtype": "<f4", "values": [-1.0, 1.0, 1e39]})),
                         "values[2] is 1e+39 (a float), beyond what dtype <f4 holds"),
})


@pytest.fixture
def saved_floats(blobs, tmp_path):
    """A saved model whose labels (floats, which C cannot name) are listed in its metadata."""
    X, y = blobs
    path = tmp_path / "model.ebm"
    FeedForwardFinetuner(hidden_dim=3, n_epochs=3, random_state=0).fit(X, np.array([-1.0, 1.0, 2.0])[y]).save(path)
    return path


def replace_metadata(path, raw):
    native = NativeModel.from_bytes(None, path.read_bytes())
    native.set_metadata(raw)
    path.write_bytes(native.to_bytes())


@pytest.mark.parametrize("mutation", METADATA_MUTATIONS)
def test_corrupted_metadata_names_the_file_and_the_field(saved_floats, mutation):
    path = saved_floats
    text = json.dumps(json.loads(NativeModel.from_bytes(None, path.read_bytes()).metadata()), indent=1).encode()
    mutate, field = METADATA_MUTATIONS[mutation]
    changed = mutate(text)
    assert changed != text, "the mutation changed nothing"
    replace_metadata(path, changed)
    with pytest.raises(Exception) as caught:
        finetune.load(path)
    error = caught.value
    assert isinstance(error, libembetter.EmbetterError) and isinstance(error, ValueError), repr(error)
    assert f"{path}: " in str(error)
    assert field in str(error), str(error)


SIDECAR_MUTATIONS = {
    "deeply nested": (lambda text: text.replace(b'"batch_size": null', b'"batch_size": ' + b"[" * 200000
                                                + b"]" * 200000), "nests too deeply"),
    "duplicate key": (lambda text: text.replace(b'"n_features_in": 6', b'"n_features_in": 6, "n_features_in": 6'),
                      "field 'n_features_in' appears twice"),
    "NaN literal": (lambda text: text.replace(b'"learning_rate": 0.05', b'"learning_rate": NaN'),
                    "learning_rate is NaN"),
    "lone surrogate label": (lambda text: text.replace(b'"eggs"', b'"\\ud800"'), "values[0] holds a lone surrogate"),
    "label too long for dtype": (lambda text: text.replace(b'"eggs"', b'"eggs!"'), "values[0] is longer than dtype"),
    "byte-order mark": (lambda text: b"\xef\xbb\xbf" + text, "byte-order mark"),
    "unknown field": (_put("surprise", 1), "surprise"),
    "random_state": (_put("params.random_state", 2**40), "random_state"),
    "a list": (lambda text: b"[1, 2]", "not an embetter finetuner sidecar"),
}


@pytest.mark.parametrize("mutation", SIDECAR_MUTATIONS)
def test_a_corrupted_0_1_sidecar_names_the_file_and_the_field(tmp_path, mutation):
    path = tmp_path / "model.ebm"
    path.write_bytes((V1 / "feedforward.ebm").read_bytes())
    sidecar = Path(str(path) + ".json")
    text = json.dumps(json.loads((V1 / "feedforward.ebm.json").read_text()), indent=1).encode("utf-8")
    mutate, field = SIDECAR_MUTATIONS[mutation]
    changed = mutate(text)
    assert changed != text, "the mutation changed nothing"
    sidecar.write_bytes(changed)
    with pytest.raises(libembetter.ModelFormatError) as caught:
        finetune.load(path)
    assert str(sidecar) in str(caught.value)
    assert field in str(caught.value), str(caught.value)


# ---- messages: hidden_dim after set_params, and tampered pickles ---------------------------------------------


def test_save_refuses_what_load_would_refuse_with_loads_message_and_keeps_the_old_file(blobs, tmp_path):
    X, y = blobs
    path = tmp_path / "model.ebm"
    tuner = FeedForwardFinetuner(hidden_dim=3, n_epochs=2, random_state=0).fit(X, y)
    tuner.save(path)
    good = path.read_bytes()
    tuner.set_params(hidden_dim=7)
    with pytest.raises(libembetter.ModelFormatError) as refused_save:
        tuner.save(path)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["model.ebm"]
    # The file such a save would have written: the fitted model with hidden_dim 7 in its metadata.
    native = NativeModel.from_bytes(None, good)
    metadata = json.loads(native.metadata())
    metadata["params"]["hidden_dim"] = 7
    native.set_metadata(json.dumps(metadata).encode())
    path.write_bytes(native.to_bytes())
    with pytest.raises(libembetter.ModelFormatError) as refused_load:
        finetune.load(path)
    assert str(refused_save.value) == str(refused_load.value)
    assert str(refused_load.value) == (f"{path}: params: hidden_dim is 7 but the fitted model's hidden layer has 3 "
                                       "units; fit decides the width and later calls keep it: refit, or set "
                                       "hidden_dim back to 3")


def test_a_hidden_dim_changed_after_fit_says_which_numbers_disagree(blobs):
    X, y = blobs
    tuner = FeedForwardFinetuner(hidden_dim=32, n_epochs=2, random_state=0).fit(X, y)
    tuner.set_params(hidden_dim=50)
    expected = ("hidden_dim is 50 but the fitted model's hidden layer has 32 units; fit decides the width and later "
                "calls keep it: refit, or set hidden_dim back to 32")
    with pytest.raises(ValueError) as caught:
        tuner.partial_fit(X, y)
    assert str(caught.value) == expected
    with pytest.raises(ValueError) as caught:
        tuner.save("never-written.ebm")
    assert str(caught.value) == "never-written.ebm: params: " + expected
    assert not Path("never-written.ebm").exists()

    contrastive = ContrastiveFinetuner(n_epochs=2, random_state=0).fit(X, y)
    contrastive.set_params(hidden_dim=4)
    with pytest.raises(ValueError, match=f"hidden_dim is 4 but the fitted model's embedding has {X.shape[1]} "
                                         "columns; .* set hidden_dim back to None"):
        contrastive.partial_fit(X, y)
    contrastive.set_params(hidden_dim=None)
    contrastive.partial_fit(X, y)


def state_of_0_1(tuner):
    """The pickle state libembetter 0.1 wrote: the estimator's attributes and the C model's bytes."""
    state = {name: value for name, value in tuner.__dict__.items() if name != "_native"}
    state["_native_bytes"] = tuner._native.to_bytes()
    return state


@pytest.mark.parametrize("tamper, message", [
    (lambda state, other: state.update(n_features_in_=7), "n_features_in_ is 7, the C model was fitted on 8"),
    (lambda state, other: state.update(classes_=np.array(["a", "b"])), "classes_ lists 2 labels, the C model was "
                                                                      "fitted on 3 classes"),
    (lambda state, other: state.update(_native_bytes=other), "classes_ lists 3 labels, the C model was fitted on 2"),
    (lambda state, other: state.update(hidden_dim=9), "hidden_dim is 9 but the fitted model's hidden layer has 3"),
    (lambda state, other: state.pop("classes_"), "holds a fitted C model but no classes_"),
])
def test_unpickling_a_0_1_pickle_cross_checks_the_c_model_against_the_attributes(saved, blobs, tamper, message):
    X, y = blobs
    _, tuner = saved
    other = FeedForwardFinetuner(hidden_dim=3, n_epochs=2).fit(X, y % 2)._native.to_bytes()
    fresh = FeedForwardFinetuner.__new__(FeedForwardFinetuner)
    fresh.__setstate__(state_of_0_1(tuner))  # untampered, it loads
    assert fresh.transform(X).tobytes() == tuner.transform(X).tobytes()
    state = state_of_0_1(tuner)
    tamper(state, other)
    fresh = FeedForwardFinetuner.__new__(FeedForwardFinetuner)
    with pytest.raises(ValueError, match=message) as caught:
        fresh.__setstate__(state)
    assert isinstance(caught.value, libembetter.EmbetterError)
    assert "unpickling a FeedForwardFinetuner" in str(caught.value)


@pytest.mark.parametrize("tamper, message", [
    (lambda state, other: state.update(model_file=other), "holds a contrastive finetuner, not a feedforward one"),
    (lambda state, other: state.update(model_file=state["model_file"][:-1]), "saved model"),
    (lambda state, other: state.update(classes_outside_file=np.array(["a", "b", "c"])),
     "classes is given both in the metadata and by the pickle"),
])
def test_unpickling_checks_the_model_file_as_load_does(saved, blobs, tamper, message):
    X, y = blobs
    _, tuner = saved
    other = ContrastiveFinetuner(n_epochs=1).fit(X, y).__getstate__()["model_file"]
    state = tuner.__getstate__()
    tamper(state, other)
    fresh = FeedForwardFinetuner.__new__(FeedForwardFinetuner)
    with pytest.raises((TypeError, ValueError), match=message) as caught:
        fresh.__setstate__(state)
    assert "unpickling a FeedForwardFinetuner" in str(caught.value)
    # Through pickle itself too: a tampered attribute is caught where the file is checked.
    tampered = pickle.loads(pickle.dumps(tuner))
    tampered.n_features_in_ = 7
    with pytest.raises(ValueError, match="pickling a FeedForwardFinetuner: metadata: n_features_in is 7"):
        pickle.dumps(tampered)
