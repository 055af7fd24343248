"""save(path) / load(path): the C model file plus the JSON sidecar, and a C program reading Python's file."""
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
from libembetter.finetune import (
    ContrastiveFinetuner,
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


def test_the_model_file_is_exactly_the_c_format_and_the_sidecar_is_plain_json(blobs, tmp_path):
    X, y = blobs
    tuner = ContrastiveFinetuner(hidden_dim=3, n_epochs=2, random_state=0).fit(X, np.array(["a", "b", "c"])[y])
    path = tmp_path / "model.ebm"
    tuner.save(path)
    data = path.read_bytes()
    assert data[:8] == b"EMBETTER" and int.from_bytes(data[12:16], "little") == 2
    assert data == tuner._native.to_bytes() == pickle.loads(pickle.dumps(tuner))._native.to_bytes()
    sidecar = json.loads((tmp_path / "model.ebm.json").read_text())
    assert sidecar["estimator"] == "ContrastiveFinetuner"
    assert sidecar["classes"] == {"dtype": "<U1", "values": ["a", "b", "c"]}
    assert sidecar["params"]["hidden_dim"] == 3 and sidecar["params"]["learning_rate"] == 0.001
    assert sidecar["model_sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ebm", "model.ebm.json"]  # no temporary files left


def test_saving_again_replaces_both_files(blobs, tmp_path):
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


def test_labels_json_cannot_hold_are_refused_before_writing(blobs, tmp_path):
    X, y = blobs
    # Dates: labels every supported scikit-learn accepts (1.9 refuses bytes) and JSON has no type for.
    dates = np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[D]")
    tuner = FeedForwardFinetuner(hidden_dim=2, n_epochs=2).fit(X, dates[y])
    with pytest.raises(TypeError, match=r"classes_ has dtype datetime64\[D\].*pickle"):
        tuner.save(tmp_path / "model.ebm")
    assert list(tmp_path.iterdir()) == []
    # Pickle keeps any label type.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(tuner)).classes_, tuner.classes_)


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


def test_load_needs_the_sidecar(saved):
    os.unlink(str(saved) + ".json")
    with pytest.raises(FileNotFoundError, match=r"model\.ebm\.json is missing"):
        finetune.load(saved)


def test_a_sidecar_of_another_model_file_is_refused(saved, blobs, tmp_path):
    X, y = blobs
    other = tmp_path / "other.ebm"
    FeedForwardFinetuner(hidden_dim=3, n_epochs=4, random_state=0).fit(X, y).save(other)
    shutil.copy(str(other) + ".json", str(saved) + ".json")
    with pytest.raises(ValueError, match="does not belong to .*SHA-256"):
        finetune.load(saved)


def edit_sidecar(path, change):
    sidecar = Path(str(path) + ".json")
    metadata = json.loads(sidecar.read_text())
    change(metadata)
    sidecar.write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(format="something else"), "not an embetter finetuner sidecar"),
        (lambda m: m.update(version=2), "sidecar version 2"),
        (lambda m: m.update(estimator="os.system"), r"estimator names 'os\.system' \(a str\), which is not an embetter finetuner"),
        (lambda m: m.update(estimator="ContrastiveFinetuner"), "ContrastiveFinetuner, a contrastive model, but the file holds a feedforward"),
        (lambda m: m["classes"].update(values=[0, 1]), "lists 2 classes, the model was fitted on 3"),
        (lambda m: m["classes"].update(values=[2, 1, 0]), "distinct and sorted"),
        (lambda m: m.update(n_features_in=7), "n_features_in is 7, the model was fitted on 8"),
        (lambda m: m["params"].update(hidden_dim=4), "hidden_dim is 4 but the fitted model's hidden layer has 3 units; .*set hidden_dim back to 3"),
        (lambda m: m["params"].update(n_epochs=0), "n_epochs"),
        (lambda m: m["params"].update(surprise=1), "params has an unknown field 'surprise'"),
        (lambda m: m.update(feature_names_in=["a"]), "feature_names_in must list 8 strings"),
        (lambda m: m.pop("classes"), "lacks the field 'classes'"),
    ],
)
def test_an_inconsistent_sidecar_is_refused_with_the_reason(saved, change, message):
    edit_sidecar(saved, change)
    with pytest.raises(ValueError, match=message):
        finetune.load(saved)


def test_a_sidecar_that_is_not_json_is_refused(saved):
    Path(str(saved) + ".json").write_bytes(b"\x00{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        finetune.load(saved)


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
def test_pickle_and_joblib_still_carry_the_c_format(make, blobs, tmp_path):
    X, y = blobs
    tuner = make().fit(X, np.array(["a", "b", "c"])[y])
    state = tuner.__getstate__()
    assert "_native" not in state and state["_native_bytes"] == tuner._native.to_bytes()
    joblib.dump(tuner, tmp_path / "model.joblib")
    same_state(joblib.load(tmp_path / "model.joblib"), tuner, X)
    same_state(pickle.loads(pickle.dumps(tuner)), tuner, X)


# ---- the modules behind save and load -----------------------------------------------------------------------


def test_the_saveable_classes_registered_themselves():
    from libembetter.finetune import _persist

    assert _persist._ESTIMATORS == {cls.__name__: cls for cls in (
        FeedForwardFinetuner, ContrastiveFinetuner, FeedForwardTuner, ContrastiveTuner)}
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
    assert run.stdout.split()[-1] == "4"


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
