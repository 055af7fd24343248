"""libembetter.show_config and the slow-kernel warning report the BLAS as it really runs.

threadpoolctl inspects the same OpenBLAS independently, so the report is
checked against it. The package links either the scipy-openblas32 wheel (pip's
build) or the system's OpenBLAS (CMake option EMBETTER_BLAS); every check
holds for both. A fallback to kernels older than the CPU is provoked for real
in a child interpreter with OPENBLAS_CORETYPE set to an old core, and the
advice is also checked on injected core names and CPU instruction sets.
"""
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import libembetter
import libembetter._native
from libembetter import _config

# A kernel set older than any CPU this runs on, which OpenBLAS 0.3.21 (Debian 12) and 0.3.34 (scipy-openblas32)
# both run when asked and report under this name (0.3.34 no longer has Prescott kernels: it runs Katmai instead).
OLD_CORE = "Nehalem"


def linked_blas_path():
    """The BLAS library the dynamic loader resolves for the extension module, as ldd shows it."""
    listing = subprocess.run(["ldd", libembetter._native.__file__], capture_output=True, text=True, check=True)
    paths = re.findall(r"^\s*\S*openblas\S*\s+=>\s+(\S+)", listing.stdout, flags=re.MULTILINE)
    assert len(paths) == 1, f"expected one OpenBLAS among the module's libraries:\n{listing.stdout}"
    return os.path.realpath(paths[0])


def openblas_seen_by_threadpoolctl():
    """threadpoolctl's view of the OpenBLAS the module links (NumPy and SciPy may bring OpenBLASes of their own)."""
    path = linked_blas_path()
    found = [entry for entry in threadpool_info()
             if entry.get("internal_api") == "openblas" and os.path.realpath(entry["filepath"]) == path]
    assert found, f"threadpoolctl finds no OpenBLAS at {path} in this process, but libembetter links it"
    return found[0]


def expected_library_name(path):
    """What eb_blas_info must call the OpenBLAS at path: the scipy-openblas32 wheel's, or another (the system's)."""
    return "scipy-openblas32" if os.path.basename(path).startswith("libscipy_openblas") else "OpenBLAS"


def native_coretype(cpu_vector_isa):
    return {"avx512": "SkylakeX", "avx2": "Haswell"}.get(cpu_vector_isa)


def run_python(code, **environment):
    env = dict(os.environ, **environment)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)


def test_config_agrees_with_threadpoolctl():
    config = _config.blas_config()
    reference = openblas_seen_by_threadpoolctl()
    assert config["library"] == expected_library_name(reference["filepath"])
    assert config["version"] == reference["version"]
    assert config["core"] == reference["architecture"]
    assert config["threads"] == reference["num_threads"]
    assert config["threading"] == reference["threading_layer"]
    assert config["build"].startswith(f"OpenBLAS {config['version']} ")


def test_the_linked_openblas_is_the_one_the_build_chose():
    config = _config.blas_config()
    path = linked_blas_path()
    if config["library"] == "scipy-openblas32":
        # pip's build (EMBETTER_BLAS=scipy-openblas32): the wheel installed beside the package, found by RPATH.
        import scipy_openblas32

        assert path == os.path.realpath(
            os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True)))
        assert config["version"] == scipy_openblas32.__version__
        # OpenBLAS 0.3.34 knows this CPU: pip users need no OPENBLAS_CORETYPE advice.
        assert config["recommended_coretype"] is None
        assert _config.slow_blas_message(config) is None
    else:
        # EMBETTER_BLAS=system: the machine's OpenBLAS, never the wheel's.
        assert config["library"] == "OpenBLAS"
        assert not os.path.basename(path).startswith("libscipy_openblas")
        assert config["recommended_coretype"] == _config.recommended_coretype(config["core"], config["cpu_vector_isa"])


def test_threads_follow_a_limit_set_from_outside():
    before = _config.blas_config()["threads"]
    with threadpool_limits(limits=1, user_api="blas"):
        assert _config.blas_config()["threads"] == 1
    assert _config.blas_config()["threads"] == before


def test_show_config_prints_library_core_and_threads(capsys):
    libembetter.show_config()
    printed = capsys.readouterr().out
    reference = openblas_seen_by_threadpoolctl()
    library = expected_library_name(reference["filepath"])
    assert f"BLAS library:     {library} {reference['version']}" in printed
    assert f"BLAS core:        {reference['architecture']}" in printed
    assert f"{reference['num_threads']} threads" in printed
    assert libembetter.__version__ in printed


@pytest.mark.parametrize("core, isa, expected", [
    ("Prescott", "avx512", "SkylakeX"),
    ("Prescott", "avx2", "Haswell"),
    ("Core2", "avx2", "Haswell"),
    ("Katmai", "avx2", "Haswell"),
    ("Nehalem", "avx512", "SkylakeX"),
    ("Haswell", "avx512", "SkylakeX"),
    ("prescott", "avx512", "SkylakeX"),
    ("SkylakeX", "avx512", None),
    ("Haswell", "avx2", None),
    ("SkylakeX", "avx2", None),
    ("Prescott", "sse2", None),
    ("ARMV8", "avx512", None),
    ("Prescott", "", None),
])
def test_recommended_coretype_on_injected_core_and_cpu(core, isa, expected):
    assert _config.recommended_coretype(core, isa) == expected


def test_message_names_the_fix_for_an_injected_prescott_fallback():
    config = dict(_config.blas_config(), core="Prescott", cpu_vector_isa="avx512",
                  recommended_coretype="SkylakeX")
    message = _config.slow_blas_message(config)
    assert "Prescott" in message and "AVX512" in message
    assert "OPENBLAS_CORETYPE=SkylakeX" in message
    assert _config.slow_blas_message(dict(config, recommended_coretype=None)) is None


def test_old_kernels_warn_once_at_import_with_the_fix():
    isa = _config.blas_config()["cpu_vector_isa"]
    fix = native_coretype(isa)
    if fix is None:
        pytest.fail(f"this test needs an AVX2 or AVX-512 CPU to provoke a fallback; the CPU reports {isa!r}")
    code = (
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "import libembetter\n"
        "from libembetter import _config\n"
        "print(_config.blas_config()['core'])\n"
        "print(_config.warn_if_slow_blas() is not None)\n"
    )
    result = run_python(code, OPENBLAS_CORETYPE=OLD_CORE)
    core, again = result.stdout.split()
    assert core == OLD_CORE
    assert again == "True"  # the condition still holds ...
    assert result.stderr.count("SlowBLASWarning") == 1  # ... but the warning came once
    assert f"OPENBLAS_CORETYPE={fix}" in result.stderr


def test_native_kernels_do_not_warn():
    fix = native_coretype(_config.blas_config()["cpu_vector_isa"])
    if fix is None:
        pytest.fail("this test needs an AVX2 or AVX-512 CPU")
    code = "import warnings\nwarnings.simplefilter('error')\nimport libembetter\nprint(libembetter._config.blas_config()['core'])\n"
    result = run_python(code, OPENBLAS_CORETYPE=fix)
    assert result.stdout.strip() == fix
    assert "SlowBLASWarning" not in result.stderr


# ---- BLAS threads during training --------------------------------------------------------------

@pytest.mark.parametrize("kind, rows, features, width, batch, single", [
    ("feedforward", 200, 384, 200, 32, True),       # the seed workload's minibatches: 2.5M multiply-adds
    ("feedforward", 200, 384, 200, 0, True),        # its full batch of 200 rows: 15M
    ("feedforward", 1000, 384, 200, 0, False),      # 77M
    ("feedforward", 10_000, 384, 200, 64, True),
    ("feedforward", 50, 20, 5, 0, True),
    ("contrastive", 200, 384, 384, 0, False),       # 29M
    ("contrastive", 10_000, 384, 384, 0, False),
    ("contrastive", 10_000, 384, 384, 16, True),    # 16 pairs gather 32 rows
    ("contrastive", 10_000, 384, 384, 128, False),  # 256 rows: 38M
])
def test_single_thread_policy_on_shapes(kind, rows, features, width, batch, single):
    assert _config.single_thread_training(kind, rows, features, width, batch, policy="auto") is single
    assert _config.single_thread_training(kind, rows, features, width, batch, policy="keep") is False


def test_unknown_policy_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("EMBETTER_TRAINING_THREADS", "sometimes")
    with pytest.raises(ValueError, match="EMBETTER_TRAINING_THREADS is 'sometimes'"):
        _config.single_thread_training("feedforward", 10, 10, 10, 0)


def threads_seen_during_fit(X, y, **settings):
    """OpenBLAS's thread count as the per-epoch callback sees it, then after fit."""
    from libembetter._binding import NativeModel

    model = NativeModel.create("feedforward", dict({"hidden_dim": 8, "n_epochs": 3, "seed": 1}, **settings))
    seen = []
    model.fit(X, y.astype(np.int32), int(y.max()) + 1, lambda epoch, loss: seen.append(_config.blas_config()["threads"]))
    return seen, _config.blas_config()["threads"]


def test_small_training_runs_on_one_thread_and_restores_the_count():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 12)).astype(np.float32), np.arange(60) % 3
    with threadpool_limits(limits=2, user_api="blas"):
        seen, after = threads_seen_during_fit(X, y)
        assert seen == [1, 1, 1]
        assert after == 2


def test_large_training_and_keep_leave_the_count(monkeypatch):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 12)).astype(np.float32), np.arange(60) % 3
    with threadpool_limits(limits=2, user_api="blas"):
        monkeypatch.setattr(_config, "SINGLE_THREAD_BELOW", 10)
        assert threads_seen_during_fit(X, y) == ([2, 2, 2], 2)
        monkeypatch.setattr(_config, "SINGLE_THREAD_BELOW", 10**12)
        monkeypatch.setenv("EMBETTER_TRAINING_THREADS", "keep")
        assert threads_seen_during_fit(X, y) == ([2, 2, 2], 2)


def test_overlapping_fits_restore_the_count_once_all_end():
    import threading

    from libembetter.finetune import FeedForwardFinetuner

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 64)).astype(np.float32), np.arange(200) % 4
    with threadpool_limits(limits=2, user_api="blas"):
        errors = []

        def fit():
            try:
                for _ in range(5):
                    FeedForwardFinetuner(hidden_dim=16, n_epochs=20, batch_size=16, random_state=0).fit(X, y)
            except Exception as error:  # reported below; a thread cannot fail the test itself
                errors.append(error)

        workers = [threading.Thread(target=fit) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert _config.blas_config()["threads"] == 2


# ---- transform in blocks ----------------------------------------------------------------------

@pytest.mark.parametrize("rows, features, width, threads, expected", [
    (100, 384, 200, 2, [(0, 100)]),                      # 7.7M multiply-adds: one call
    (100_000, 384, 200, 1, [(0, 100_000)]),              # one BLAS thread: one call
    (100_000, 384, 200, 2, [(0, 50_176), (50_176, 100_000)]),
    (1_300, 384, 200, 2, [(0, 1_300)]),                  # 99.8M: under two blocks' worth
    (1_400, 384, 200, 2, [(0, 1_024), (1_024, 1_400)]),  # whole slices first
    (5_000, 384, 200, 2, [(0, 2_560), (2_560, 5_000)]),
])
def test_transform_blocks_start_on_slices_and_cover_every_row(rows, features, width, threads, expected):
    blocks = _config.transform_blocks(rows, features, width, threads=min(threads, os.cpu_count()))
    if os.cpu_count() < threads:
        expected = [(0, rows)]
    assert blocks == expected
    assert blocks[0][0] == 0 and blocks[-1][1] == rows
    for (_, stop), (start, _) in zip(blocks, blocks[1:]):
        assert stop == start and start % _config.TRANSFORM_SLICE_ROWS == 0


def fitted_models(n_features=384, width=200):
    from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner

    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((120, n_features)).astype(np.float32), np.arange(120) % 4
    return [FeedForwardFinetuner(hidden_dim=width, n_epochs=3, random_state=0).fit(X, y),
            ContrastiveFinetuner(hidden_dim=width, n_epochs=2, random_state=0).fit(X, y)]


@pytest.mark.skipif(os.cpu_count() < 2, reason="blocks need two CPUs")
@pytest.mark.parametrize("index", [0, 1], ids=["feedforward", "contrastive"])
def test_blocked_transform_runs_blocks_on_their_own_threads_with_the_same_bits(index, monkeypatch):
    import threading

    from libembetter import _binding

    model = fitted_models()[index]
    X = np.random.default_rng(4).standard_normal((5_000, 384)).astype(np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        serial = model.transform(X)
    seen = []
    real_input_matrix = _binding.input_matrix

    def spying_input_matrix(array):
        seen.append((threading.get_ident(), array.shape[0], _config.blas_config()["threads"]))
        return real_input_matrix(array)

    monkeypatch.setattr(_binding, "input_matrix", spying_input_matrix)
    with threadpool_limits(limits=2, user_api="blas"):
        blocked = model.transform(X)
        assert _config.blas_config()["threads"] == 2
    assert sorted(rows for _, rows, _ in seen) == [2_440, 2_560]
    assert len({ident for ident, _, _ in seen}) == 2
    assert [threads for _, _, threads in seen] == [1, 1]
    assert blocked.tobytes() == serial.tobytes()


@pytest.mark.parametrize("index", [0, 1], ids=["feedforward", "contrastive"])
@pytest.mark.parametrize("row", [10, 4_000])
def test_bad_value_in_any_block_is_named_with_its_row_in_x(index, row):
    model = fitted_models()[index]
    X = np.random.default_rng(5).standard_normal((5_000, 384)).astype(np.float32)
    X[row, 17] = np.nan
    with threadpool_limits(limits=2, user_api="blas"):
        with pytest.raises(ValueError, match=rf"X\[{row}, 17\] is NaN"):
            model.transform(X)
        assert _config.blas_config()["threads"] == 2


# ---- the C library's own training threads ----------------------------------------------------------------


def test_training_threads_of_the_library_follow_a_limit_of_one():
    with threadpool_limits(limits=1, user_api="blas"):
        assert _config.training_team_threads() == 1
    with threadpool_limits(limits=2, user_api="blas"):
        assert _config.training_team_threads() == libembetter._native.lib.EB_FINETUNER_THREADS_AUTO


def sparse_rows(n_rows=200, n_features=300, seed=0):
    """Counts at about 25% nonzeros, as hashed n-grams are: the contrastive training that uses threads."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 4, (n_rows, n_features)) * (rng.random((n_rows, n_features)) < 0.25)
    return counts.astype(np.float32), np.arange(n_rows) % 5


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_contrastive_fit_on_sparse_rows_has_the_same_bits_on_any_thread_count(threads, monkeypatch):
    from libembetter import _binding
    from libembetter.finetune import ContrastiveTuner

    X, y = sparse_rows()
    automatic = ContrastiveTuner(epochs=4, random_state=0).fit(X, y)
    monkeypatch.setattr(_binding, "training_team_threads", lambda: threads)
    held = ContrastiveTuner(epochs=4, random_state=0).fit(X, y)
    assert held.transform(X).tobytes() == automatic.transform(X).tobytes()
    assert np.array_equal(held.loss_curve_, automatic.loss_curve_)
    held.partial_fit(X, y)
    automatic.partial_fit(X, y)
    assert held.transform(X).tobytes() == automatic.transform(X).tobytes()


def test_a_thread_count_the_library_refuses_is_named_and_leaves_the_model(monkeypatch):
    from libembetter import _binding
    from libembetter.finetune import ContrastiveTuner

    X, y = sparse_rows()
    model = ContrastiveTuner(epochs=2, random_state=0).fit(X, y)
    before = model.transform(X)
    too_many = libembetter._native.lib.EB_FINETUNER_MAX_THREADS + 1
    monkeypatch.setattr(_binding, "training_team_threads", lambda: too_many)
    with pytest.raises(ValueError, match=f"n_threads is {too_many}; at most"):
        model.partial_fit(X, y)
    assert model.transform(X).tobytes() == before.tobytes()
