"""save(path) / load(path): one C model file with class labels and Python metadata; C and 0.1 files; C reading it."""
import hashlib
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

import libembetter
import libembetter.finetune as finetune
from libembetter._binding import NativeModel
from libembetter._native import lib
from libembetter.finetune import (
    ContrastiveFinetuner,
    ContrastiveLearner,
    ContrastiveTuner,
    FeedForwardFinetuner,
    FeedForwardTuner,
    ForwardFinetuner,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

MAKERS = {
    "feedforward": lambda: FeedForwardFinetuner(hidden_dim=4, n_epochs=20, batch_size=16, random_state=1),
    "contrastive": lambda: ContrastiveFinetuner(hidden_dim=5, n_epochs=4, n_neg=2, random_state=2),
    "contrastive-as-input": lambda: ContrastiveFinetuner(n_epochs=3, learning_rate=0.003, random_state=3),
    "FeedForwardTuner": lambda: FeedForwardTuner(hidden_dim=3, n_epochs=5, random_state=4),
    "ContrastiveTuner": lambda: ContrastiveTuner(hidden_dim=6, epochs=3, random_state=5),
    "ForwardFinetuner": lambda: ForwardFinetuner(hidden_dim=2, n_epochs=3, learning_rate=0.0123, random_state=6),
}

LABELS = {
    "str": np.array(["ham", "spam", "eggs"]),
    "int": np.array([-7, 3, 10**12]),
    "float": np.array([-1.0, 1.0, 2.0]),
    "object-str": np.array(["x", "yy", "zzz"], dtype=object),
}


def same_state(a, b, X):
    """Everything a user can observe of a fitted finetuner agrees between a and b."""
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    np.testing.assert_array_equal(a.classes_, b.classes_)
    assert a.classes_.dtype == b.classes_.dtype
    assert a.n_features_in_ == b.n_features_in_
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    assert a.transform(X).tobytes() == b.transform(X).tobytes()


@pytest.mark.parametrize("labels", LABELS, ids=list(LABELS))
@pytest.mark.parametrize("make", MAKERS.values(), ids=list(MAKERS))
def test_save_then_load_restores_everything_and_keeps_training_alike(make, labels, blobs, tmp_path):
    X, y = blobs
    y = LABELS[labels][y]
    tuner = make().fit(X, y)
    path = tmp_path / "model.ebm"
    tuner.save(path)
    loaded = finetune.load(path)
    same_state(loaded, tuner, X)
    assert type(tuner).load(path).get_params() == tuner.get_params()

    # Weights, Adam state and the random generator came back too: further training stays bit-identical.
    for rows in (slice(0, 40), slice(20, 90)):
        loaded.partial_fit(X[rows], y[rows])
        tuner.partial_fit(X[rows], y[rows])
    same_state(loaded, tuner, X)


def test_feature_names_random_state_and_bool_labels_round_trip(blobs, tmp_path):
    X, y = blobs
    frame = pd.DataFrame(X, columns=[f"feature {i}" for i in range(X.shape[1])])
    generator = np.random.RandomState(11)
    tuner = FeedForwardFinetuner(hidden_dim=3, n_epochs=5, random_state=generator).fit(frame, y == 1)
    tuner.save(tmp_path / "m")
    loaded = finetune.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.feature_names_in_, tuner.feature_names_in_)
    assert loaded.classes_.dtype == np.bool_
    # The generator is restored in the state it had, so the next fit draws the same seed as the original's next fit.
    assert isinstance(loaded.random_state, np.random.RandomState)
    np.testing.assert_array_equal(loaded.fit(frame, y == 1).transform(frame), tuner.fit(frame, y == 1).transform(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.transform(frame.rename(columns={"feature 0": "renamed"}))


def metadata_of(path):
    """The Python metadata stored in the model file at path, parsed."""
    return json.loads(NativeModel.from_bytes(None, Path(path).read_bytes()).metadata())


def test_the_model_file_is_the_c_format_with_class_labels_and_json_metadata(blobs, tmp_path):
    X, y = blobs
    tuner = ContrastiveFinetuner(hidden_dim=3, n_epochs=2, random_state=0).fit(X, np.array(["a", "b", "c"])[y])
    path = tmp_path / "model.ebm"
    tuner.save(path)
    data = path.read_bytes()
    assert data[:8] == b"EMBETTER" and int.from_bytes(data[12:16], "little") == lib.EB_KIND_CONTRASTIVE
    assert int.from_bytes(data[8:12], "little") == lib.EB_MODEL_FORMAT_VERSION
    # What pickle carries is the very file.
    assert data == tuner.__getstate__()["model_file"]
    native = NativeModel.from_bytes(None, data)
    assert native.class_labels() == [b"a", b"b", b"c"]  # what eb_finetuner_class_labels gives a C program
    metadata = metadata_of(path)
    assert metadata["estimator"] == "ContrastiveFinetuner" and metadata["version"] == 2
    assert metadata["classes"] == {"dtype": "<U1"}  # the labels themselves are the file's class labels
    assert metadata["params"]["hidden_dim"] == 3 and metadata["params"]["learning_rate"] == 0.001
    assert metadata["params"]["random_state"] == 0 and metadata["params"]["verbose"] is False
    assert "model_sha256" not in metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ebm"]  # no sidecar, no temporary files left


@pytest.mark.parametrize("labels, c_labels, in_metadata", [
    (np.array([-7, 3, 10**12]), [-7, 3, 10**12], False),
    (np.array([1, 2, 3], dtype=np.int8), [1, 2, 3], False),
    (np.array(["x", "yy", "zzz"], dtype=object), [b"x", b"yy", b"zzz"], False),
    (np.array([-1.0, 1.0, 2.0]), None, True),
    (np.array([False, True, True]), None, True),
    (np.array([0, 2**63, 2**64 - 1], dtype=np.uint64), None, True),
], ids=["int64", "int8", "object-str", "float", "bool", "uint64-past-int64"])
def test_labels_go_to_the_c_file_when_it_can_name_them_and_to_the_metadata_otherwise(labels, c_labels, in_metadata,
                                                                                    blobs, tmp_path):
    X, y = blobs
    tuner = FeedForwardFinetuner(hidden_dim=2, n_epochs=2, random_state=0).fit(X, labels[y])
    path = tmp_path / "model.ebm"
    tuner.save(path)
    assert NativeModel.from_bytes(None, path.read_bytes()).class_labels() == c_labels
    classes = metadata_of(path)["classes"]
    assert classes["dtype"] == tuner.classes_.dtype.str if tuner.classes_.dtype != object else "object"
    assert ("values" in classes) == in_metadata
    loaded = finetune.load(path)
    assert loaded.classes_.dtype == tuner.classes_.dtype
    assert loaded.classes_.tolist() == tuner.classes_.tolist()


def test_saving_again_replaces_the_file(blobs, tmp_path):
    X, y = blobs
    path = tmp_path / "model.ebm"
    FeedForwardFinetuner(hidden_dim=2, n_epochs=2, random_state=0).fit(X, y).save(path)
    second = FeedForwardFinetuner(hidden_dim=3, n_epochs=2, random_state=0).fit(X, y)
    second.save(path)
    same_state(finetune.load(path), second, X)


@pytest.mark.parametrize("make", [FeedForwardFinetuner, ContrastiveFinetuner, FeedForwardTuner])
def test_an_unfitted_estimator_is_not_saved(make, tmp_path):
    with pytest.raises(NotFittedError, match="not fitted yet; save"):
        make().save(tmp_path / "model.ebm")
    assert list(tmp_path.iterdir()) == []


def test_labels_a_file_cannot_hold_are_refused_before_writing_and_pickle_keeps_them(blobs, tmp_path):
    X, y = blobs
    # Dates: labels every supported scikit-learn accepts (1.9 refuses bytes) and neither C nor JSON has a type for.
    dates = np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[D]")
    tuner = FeedForwardFinetuner(hidden_dim=2, n_epochs=2).fit(X, dates[y])
    with pytest.raises(TypeError, match=r"classes_ has dtype datetime64\[D\].*[Pp]ickle"):
        tuner.save(tmp_path / "model.ebm")
    assert list(tmp_path.iterdir()) == []
    # Pickle keeps any label type: the model file travels with classes_ beside it.
    state = tuner.__getstate__()
    assert state["classes_outside_file"] is tuner.classes_
    again = pickle.loads(pickle.dumps(tuner))
    np.testing.assert_array_equal(again.classes_, tuner.classes_)
    assert again.transform(X).tobytes() == tuner.transform(X).tobytes()


def test_a_save_into_a_missing_directory_is_an_oserror_naming_the_path(blobs, tmp_path):
    X, y = blobs
    tuner = FeedForwardFinetuner(hidden_dim=2, n_epochs=2).fit(X, y)
    with pytest.raises(OSError, match="no-such-dir"):
        tuner.save(tmp_path / "no-such-dir" / "model.ebm")


@pytest.fixture
def saved(blobs, tmp_path):
    X, y = blobs
    path = tmp_path / "model.ebm"
    FeedForwardFinetuner(hidden_dim=3, n_epochs=3, random_state=0).fit(X, y).save(path)
    return path


def test_no_sidecar_is_written_or_read_for_a_current_file(saved, blobs):
    X, _ = blobs
    sidecar = Path(str(saved) + ".json")
    assert not sidecar.exists()
    # A stray file where 0.1 kept its sidecar changes nothing: only a version-1 model file reads one.
    sidecar.write_text("not even JSON")
    assert finetune.load(saved).classes_.tolist() == [0, 1, 2]


def write_metadata(path, change):
    """Rewrite the metadata inside the model file at path with change(metadata dict) applied."""
    native = NativeModel.from_bytes(None, Path(path).read_bytes())
    metadata = json.loads(native.metadata())
    change(metadata)
    native.set_metadata(json.dumps(metadata).encode("utf-8"))
    Path(path).write_bytes(native.to_bytes())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(format="something else"), "metadata is not an embetter finetuner's"),
        (lambda m: m.update(version=3), "metadata: version is 3 .*reads metadata version 2"),
        (lambda m: m.update(estimator="os.system"), r"estimator names 'os\.system' \(a str\), which is not an embetter finetuner"),
        (lambda m: m.update(estimator="ContrastiveFinetuner"), "ContrastiveFinetuner, a contrastive model, but the file holds a feedforward"),
        (lambda m: m["classes"].update(values=[0, 1]), "classes has an unknown field 'values'"),
        (lambda m: m["classes"].update(dtype="<U3"), "classes.dtype is '<U3', which does not hold the file's integer class labels"),
        (lambda m: m["classes"].update(dtype="|i1"), None),
        (lambda m: m.update(n_features_in=7), "n_features_in is 7, the model was fitted on 8"),
        (lambda m: m["params"].update(hidden_dim=4), "hidden_dim is 4 but the fitted model's hidden layer has 3 units; .*set hidden_dim back to 3"),
        (lambda m: m["params"].update(n_epochs=0), "n_epochs"),
        (lambda m: m["params"].update(surprise=1), "params has an unknown field 'surprise'"),
        (lambda m: m.update(feature_names_in=["a"]), "feature_names_in must list 8 strings"),
        (lambda m: m.pop("classes"), "lacks the field 'classes'"),
        (lambda m: m.update(model_sha256="00"), "unknown field 'model_sha256'"),
    ],
)
def test_inconsistent_metadata_is_refused_with_the_reason(saved, change, message):
    write_metadata(saved, change)
    if message is None:  # int8 holds 0, 1 and 2: the classes come back with that dtype
        assert finetune.load(saved).classes_.dtype == np.int8
        return
    with pytest.raises(libembetter.ModelFormatError, match=message) as caught:
        finetune.load(saved)
    assert str(caught.value).startswith(f"{saved}: ")


def test_metadata_that_is_not_json_is_refused(saved):
    native = NativeModel.from_bytes(None, saved.read_bytes())
    native.set_metadata(b"\x00{not json")
    saved.write_bytes(native.to_bytes())
    with pytest.raises(ValueError, match="metadata is not valid JSON"):
        finetune.load(saved)


# ---- files without Python metadata: a C program's, and libembetter 0.1's with their sidecar -------------------

V1 = REPO_ROOT / "tests" / "fixtures" / "python-v1"


def v1_probe():
    """The probe scripts/make_python_v1_fixtures.py transformed with libembetter 0.1."""
    return np.random.RandomState(12).normal(size=(5, 6)).astype(np.float32)


@pytest.mark.parametrize("name, cls, classes, params", [
    ("feedforward", FeedForwardFinetuner, ["eggs", "ham", "spam"],
     {"hidden_dim": 4, "n_epochs": 30, "learning_rate": 0.05, "batch_size": None, "random_state": 3}),
    ("contrastive", ContrastiveFinetuner, [-7, 40],
     {"hidden_dim": 3, "n_epochs": 5, "batch_size": 16, "n_neg": 3, "random_state": 4}),
])
def test_a_libembetter_0_1_file_with_its_sidecar_loads_and_transforms_as_0_1_did(name, cls, classes, params,
                                                                                tmp_path):
    assert int.from_bytes((V1 / f"{name}.ebm").read_bytes()[8:12], "little") == 1  # made by the old code
    loaded = finetune.load(V1 / f"{name}.ebm")
    assert type(loaded) is cls
    assert loaded.classes_.tolist() == classes
    assert {key: loaded.get_params()[key] for key in params} == params
    assert loaded.transform(v1_probe()).tobytes() == np.load(V1 / f"{name}-probe.npy").tobytes()
    # Saved again, it is one current file, with the labels in it.
    loaded.save(tmp_path / "again.ebm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.ebm"]
    again = finetune.load(tmp_path / "again.ebm")
    assert again.classes_.tolist() == classes and again.get_params() == loaded.get_params()
    assert again.transform(v1_probe()).tobytes() == loaded.transform(v1_probe()).tobytes()
    assert NativeModel.from_bytes(None, (tmp_path / "again.ebm").read_bytes()).class_labels() == [
        label.encode() if isinstance(label, str) else label for label in classes]


def test_a_0_1_sidecar_of_another_model_file_is_refused(tmp_path):
    shutil.copy(V1 / "feedforward.ebm", tmp_path / "model.ebm")
    shutil.copy(V1 / "contrastive.ebm.json", tmp_path / "model.ebm.json")
    with pytest.raises(ValueError, match="does not belong to .*SHA-256"):
        finetune.load(tmp_path / "model.ebm")


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(version=2), "sidecar version 2"),
    (lambda m: m["classes"].update(values=["eggs", "ham"]), "lists 2 classes, the model was fitted on 3"),
    (lambda m: m["classes"].update(values=["spam", "ham", "eggs"]), "distinct and sorted"),
    (lambda m: m.update(n_features_in=7), "n_features_in is 7, the model was fitted on 6"),
    (lambda m: m["params"].update(hidden_dim=5), "hidden_dim is 5 but the fitted model's hidden layer has 4 units"),
])
def test_an_inconsistent_0_1_sidecar_is_refused_with_the_reason(tmp_path, change, message):
    shutil.copy(V1 / "feedforward.ebm", tmp_path / "model.ebm")
    metadata = json.loads((V1 / "feedforward.ebm.json").read_text())
    change(metadata)
    (tmp_path / "model.ebm.json").write_text(json.dumps(metadata))
    with pytest.raises(libembetter.ModelFormatError, match=message):
        finetune.load(tmp_path / "model.ebm")


@pytest.mark.parametrize("kind, cls", [("feedforward", FeedForwardFinetuner), ("contrastive", ContrastiveFinetuner),
                                       ("pair_learner", ContrastiveLearner)])
def test_a_file_saved_from_c_loads_as_the_estimator_of_its_kind(kind, cls, blobs, tmp_path):
    X, y = blobs
    settings = {"hidden_dim": 5, "n_epochs": 3, "learning_rate": 0.02, "batch_size": 8, "seed": 7}
    native = NativeModel.create(kind, settings)
    if kind == "pair_learner":
        native.fit_pairs(X[:40], X[40:80], (y[:40] == y[40:80]).astype(np.float32))
    else:
        native.fit(X, y.astype(np.int32), 3)
    native.save(tmp_path / "from-c.ebm")  # eb_finetuner_save: no metadata, no class names
    loaded = cls.load(tmp_path / "from-c.ebm")
    assert type(loaded) is cls
    expected = {"feedforward": {"hidden_dim": 5, "n_epochs": 3, "batch_size": 8},
                "contrastive": {"hidden_dim": 5, "n_epochs": 3, "batch_size": 8, "n_neg": 3},
                "pair_learner": {"shape_out": 5, "epochs": 3, "batch_size": 8, "layers": "linear"}}[kind]
    assert {key: loaded.get_params()[key] for key in expected} == expected
    assert loaded.get_params()["learning_rate"] == pytest.approx(0.02)
    assert loaded.get_params()["random_state"] is None and loaded.get_params()["verbose"] is False
    assert loaded.n_features_in_ == X.shape[1]
    if kind != "pair_learner":
        assert loaded.classes_.tolist() == [0, 1, 2]  # no names in the file: the class indices
    np.testing.assert_array_equal(loaded.transform(X), native.transform(X))
    # Named classes from C come back as classes_.
    if kind == "feedforward":
        native.set_class_labels([b"red", b"green", b"blue"])
        native.save(tmp_path / "named.ebm")
        assert finetune.load(tmp_path / "named.ebm").classes_.tolist() == ["red", "green", "blue"]
        native.set_class_labels([30, 10, 20])
        native.save(tmp_path / "numbered.ebm")
        numbered = finetune.load(tmp_path / "numbered.ebm")
        assert numbered.classes_.tolist() == [30, 10, 20]
        # Names in C's order, not sorted: partial_fit still maps each label to its class index.
        numbered.set_params(random_state=None).partial_fit(X, np.array([30, 10, 20])[y])
        native.partial_fit(X, y.astype(np.int32), 0)
        assert numbered.transform(X).tobytes() == native.transform(X).tobytes()
        with pytest.raises(ValueError, match="y\\[0\\] is 40, a label not in classes_ \\[30, 10, 20\\]"):
            numbered.partial_fit(X[:1], [40])


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    path = tmp_path / "model.ebm"
    path.write_bytes(b"PK\x03\x04 certainly not a model")
    with pytest.raises(ValueError, match=r"model\.ebm: saved model: not an embetter model") as caught:
        finetune.load(path)
    # The C library read the header: its status comes with the error.
    assert isinstance(caught.value, libembetter.ModelFormatError)
    assert caught.value.status == "EB_ERR_FORMAT"


def test_the_classmethod_refuses_another_finetuner(saved):
    with pytest.raises(TypeError, match="holds a FeedForwardFinetuner, not a ContrastiveFinetuner"):
        ContrastiveFinetuner.load(saved)
    with pytest.raises(TypeError, match="not a FeedForwardTuner"):
        FeedForwardTuner.load(saved)
    # The 0.9 alias is a subclass, so the base class's load accepts its files.
    assert isinstance(FeedForwardFinetuner.load(saved), FeedForwardFinetuner)


@pytest.mark.parametrize("make", [MAKERS["feedforward"], MAKERS["contrastive"]], ids=["feedforward", "contrastive"])
def test_pickle_and_joblib_carry_the_model_file(make, blobs, tmp_path):
    X, y = blobs
    tuner = make().fit(X, np.array(["a", "b", "c"])[y])
    state = tuner.__getstate__()
    assert set(state) <= {"model_file", "_sklearn_version"}
    tuner.save(tmp_path / "model.ebm")
    assert state["model_file"] == (tmp_path / "model.ebm").read_bytes()
    joblib.dump(tuner, tmp_path / "model.joblib")
    same_state(joblib.load(tmp_path / "model.joblib"), tuner, X)
    same_state(pickle.loads(pickle.dumps(tuner)), tuner, X)


def test_a_subclass_of_ones_own_pickles_its_attributes_with_the_c_bytes(blobs):
    X, y = blobs

    class Mine(FeedForwardFinetuner):
        pass

    tuner = Mine(hidden_dim=2, n_epochs=2, random_state=0).fit(X, y)
    tuner.note = "kept"
    state = tuner.__getstate__()
    assert state["_native_bytes"] == tuner._native.to_bytes()
    again = Mine.__new__(Mine)
    again.__setstate__(state)
    assert again.note == "kept" and again.transform(X).tobytes() == tuner.transform(X).tobytes()


# ---- the modules behind save and load -----------------------------------------------------------------------


def test_the_saveable_classes_registered_themselves():
    from libembetter.finetune import _persist

    assert _persist._ESTIMATORS == {cls.__name__: cls for cls in (
        FeedForwardFinetuner, ContrastiveFinetuner, ContrastiveLearner, FeedForwardTuner, ContrastiveTuner)}
    assert ForwardFinetuner is FeedForwardFinetuner  # the seed's name is the same class, saved under its name


def test_a_second_class_of_a_registered_name_is_refused():
    from libembetter.finetune import _persist

    with pytest.raises(TypeError, match="two persistable finetuner classes are named FeedForwardFinetuner"):
        _persist.persistable(type("FeedForwardFinetuner", (FeedForwardFinetuner,), {}))
    assert _persist._ESTIMATORS["FeedForwardFinetuner"] is FeedForwardFinetuner


def module_imports(path):
    """(modules imported at module level, (line, modules) of each import inside a function) of a Python file."""
    import ast

    def names(node):
        return [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]

    tree = ast.parse(path.read_text())
    top = {name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for name in names(node)}
    nested = [
        (inner.lineno, names(inner))
        for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        for inner in ast.walk(function) if isinstance(inner, (ast.Import, ast.ImportFrom))
    ]
    return top, nested


def test_no_import_circle_between_persistence_and_the_estimators():
    package = REPO_ROOT / "python" / "libembetter"
    persist_imports, _ = module_imports(package / "finetune" / "_persist.py")
    # _persist knows the binding and the errors, never an estimator module.
    assert not {name for name in persist_imports if name.startswith("libembetter.finetune")}
    for path in sorted((package / "finetune").glob("*.py")) + [package / "_binding.py", package / "_errors.py"]:
        _, nested = module_imports(path)
        assert nested == [], f"{path.name} imports inside a function: {nested}"
    # Importing persistence first, in a fresh interpreter, works and registers every class.
    run = subprocess.run([sys.executable, "-c", "import libembetter.finetune._persist as p; print(len(p._ESTIMATORS))"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == "5"


# ---- a C program loads what Python saved ----------------------------------------------------------------------


def _pkg_config(*modules):
    result = subprocess.run(["pkg-config", "--cflags", "--libs", *modules], capture_output=True, text=True, check=True)
    return shlex.split(result.stdout)


@pytest.fixture(scope="session")
def c_transform_check():
    """tests/python/c_transform_check.c linked to the static library as CMake builds it (system OpenBLAS).

    The binary is cached in the temporary directory under a hash of every file
    it is built from, so only the first run after a change pays for the compile.
    """
    compiler = shutil.which(os.environ.get("CC", "cc"))
    assert compiler is not None, "a C compiler (cc) is needed to build the cross-language check"
    cmake = shutil.which("cmake")
    assert cmake is not None, "CMake is needed to build the library for the cross-language check"
    program = REPO_ROOT / "tests" / "python" / "c_transform_check.c"
    inputs = sorted((REPO_ROOT / "src").glob("*")) + sorted((REPO_ROOT / "include" / "embetter").glob("*"))
    inputs += [REPO_ROOT / "CMakeLists.txt", *sorted((REPO_ROOT / "cmake").glob("*"))]
    digest = hashlib.sha256()
    for file in [program, *inputs]:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    cache = Path(tempfile.gettempdir()) / f"embetter-c-transform-check-{digest.hexdigest()[:16]}"
    binary = cache / "c_transform_check"
    if not binary.exists():
        cache.mkdir(exist_ok=True)
        build_dir = cache / f"build.{os.getpid()}"
        partial = cache / f"c_transform_check.{os.getpid()}"
        steps = [
            [cmake, "-S", str(REPO_ROOT), "-B", str(build_dir), f"-DCMAKE_C_COMPILER={compiler}",
             "-DCMAKE_BUILD_TYPE=Release", "-DEMBETTER_BUILD_TESTS=OFF", "-DEMBETTER_BUILD_EXAMPLES=OFF"],
            [cmake, "--build", str(build_dir), "--target", "embetter_static", "-j2"],
            [compiler, "-std=c11", "-O2", f"-I{REPO_ROOT / 'include'}", f"-I{build_dir / 'include'}",
             f"-I{REPO_ROOT / 'src'}", str(program), str(build_dir / "src" / "libembetter.a"),
             *_pkg_config("openblas", "zlib", "libutf8proc", "json-c"), "-lm", "-pthread", "-o", str(partial)],
        ]
        for command in steps:
            build = subprocess.run(command, capture_output=True, text=True)
            assert build.returncode == 0, f"building the C check failed:\n{shlex.join(command)}\n{build.stdout}{build.stderr}"
        os.replace(partial, binary)  # atomic, so a concurrent run never sees half a binary
        shutil.rmtree(build_dir, ignore_errors=True)
    return binary


@pytest.mark.parametrize(
    "make, kind",
    [(MAKERS["feedforward"], "feedforward"), (MAKERS["contrastive"], "contrastive"),
     (MAKERS["contrastive-as-input"], "contrastive"), (MAKERS["ContrastiveTuner"], "contrastive")],
    ids=["feedforward", "contrastive", "contrastive-as-input", "ContrastiveTuner"],
)
def test_a_c_program_transforms_like_python(make, kind, c_transform_check, blobs, tmp_path):
    X, y = blobs
    tuner = make().fit(X, np.array(["a", "b", "c"])[y])
    tuner.save(tmp_path / "model.ebm")
    rows = np.random.RandomState(0).normal(scale=2.0, size=(57, X.shape[1])).astype(np.float32)
    rows.tofile(tmp_path / "input.f32")
    run = subprocess.run(
        [str(c_transform_check), str(tmp_path / "model.ebm"), str(tmp_path / "input.f32"), str(rows.shape[0]),
         str(rows.shape[1]), str(tmp_path / "output.f32")],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    expected = tuner.transform(rows)
    assert run.stdout.split() == [kind, str(expected.shape[1])]
    from_c = np.fromfile(tmp_path / "output.f32", dtype=np.float32).reshape(expected.shape)
    np.testing.assert_allclose(from_c, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layers", ["linear", "linear-relu-linear"])
def test_a_c_program_transforms_a_pair_learner_like_python(layers, c_transform_check, blobs, tmp_path):
    X, y = blobs
    learner = ContrastiveLearner(shape_out=6, epochs=3, learning_rate=0.01, random_state=0, layers=layers)
    learner.fit(X[:45], X[45:], (y[:45] == y[45:]).astype(float))
    learner.to_disk(tmp_path / "model.ebm")
    rows = np.random.RandomState(1).normal(size=(33, X.shape[1])).astype(np.float32)
    rows.tofile(tmp_path / "input.f32")
    run = subprocess.run([str(c_transform_check), str(tmp_path / "model.ebm"), str(tmp_path / "input.f32"), "33",
                          str(X.shape[1]), str(tmp_path / "output.f32")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["pair_learner", "6"]
    from_c = np.fromfile(tmp_path / "output.f32", dtype=np.float32).reshape(33, 6)
    np.testing.assert_allclose(from_c, learner.transform(rows), rtol=0, atol=1e-6)


def test_the_c_program_reports_a_broken_file(c_transform_check, saved, tmp_path):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0xFF
    broken = tmp_path / "broken.ebm"
    broken.write_bytes(bytes(data))
    np.zeros((1, 8), dtype=np.float32).tofile(tmp_path / "input.f32")
    run = subprocess.run([str(c_transform_check), str(broken), str(tmp_path / "input.f32"), "1", "8",
                          str(tmp_path / "out.f32")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"EB_ERR_FORMAT: {broken}: saved model: checksum mismatch" in run.stderr
