"""What BLAS runs libembetter's matrix products, and a warning when it runs slow kernels.

The package installed by pip links the scipy-openblas32 wheel (OpenBLAS
0.3.34, which knows current CPUs); a build with EMBETTER_BLAS=system links the
machine's OpenBLAS. OpenBLAS picks its kernels from the CPU model when it
loads. Debian 12's OpenBLAS 0.3.21 does not know some recent Xeons and then
silently uses its generic "Prescott" kernels, several times slower than the
ones the CPU can run. The C library compares the core OpenBLAS reports with the CPU's vector
instructions (eb_blas_info); this module turns a mismatch into one warning
that names the fix. It also holds the measured policies for OpenBLAS's
threads during training (training_threads), which the binding applies around
fit and partial_fit, and during transform (transform_blocks).
"""
import os
import threading
import warnings
from contextlib import contextmanager

from libembetter._errors import raise_for_status
from libembetter._native import ffi, lib


class SlowBLASWarning(RuntimeWarning):
    """OpenBLAS runs kernels for an older CPU than this one."""


def _text(field):
    return ffi.string(field).decode("utf-8", "replace")


def blas_config():
    """The BLAS as it runs now: library, version, core, threading, threads, CPU ISA, recommended coretype."""
    config = ffi.new("eb_blas_config *")
    raise_for_status(lib.eb_blas_info(config))
    return {
        "library": _text(config.library),
        "version": _text(config.version),
        "core": _text(config.core),
        "threading": _text(config.threading),
        "threads": int(config.threads),
        "build": _text(config.build),
        "cpu_vector_isa": _text(config.cpu_vector_isa),
        "recommended_coretype": _text(config.recommended_coretype) or None,
    }


def recommended_coretype(core, cpu_vector_isa):
    """The OPENBLAS_CORETYPE that runs faster kernels than `core` on a CPU with `cpu_vector_isa`, or None.

    The same decision eb_blas_info applies to the running process, open to
    any inputs: recommended_coretype("Prescott", "avx512") is "SkylakeX".
    """
    advice = lib.eb_blas_recommended_coretype(core.encode("utf-8"), cpu_vector_isa.encode("utf-8"))
    return None if advice == ffi.NULL else ffi.string(advice).decode("ascii")


def slow_blas_message(config):
    """The warning text for a blas_config() dict whose kernels are below the CPU, or None when they are not."""
    fix = config.get("recommended_coretype")
    if not fix:
        return None
    return (
        f"{config['library']} {config['version']} runs its {config['core']} kernels, but this CPU supports "
        f"{config['cpu_vector_isa'].upper()}: matrix products (and so training) run several times slower than "
        f"they could. Set OPENBLAS_CORETYPE={fix} in the environment before Python starts "
        f"(export OPENBLAS_CORETYPE={fix}); see docs/benchmarks.md."
    )


_warned = False


def warn_if_slow_blas(config=None):
    """Warn (SlowBLASWarning) once per process when the BLAS runs kernels below the CPU; returns the message."""
    global _warned
    message = slow_blas_message(blas_config() if config is None else config)
    if message is not None and not _warned:
        _warned = True
        warnings.warn(message, SlowBLASWarning, stacklevel=2)
    return message


def show_config() -> None:
    """Print the BLAS libembetter uses: library (scipy-openblas32 or the system's OpenBLAS), version, core it
    runs, threads, and any advice."""
    config = blas_config()
    lines = [
        f"libembetter {ffi.string(lib.eb_version()).decode('ascii')}",
        f"BLAS library:     {config['library']} {config['version']}",
        f"BLAS core:        {config['core'] or 'unknown'}",
        f"BLAS threading:   {config['threading'] or 'unknown'}, {config['threads']} threads",
        f"BLAS build:       {config['build'] or 'unknown'}",
        f"CPU vector ISA:   {config['cpu_vector_isa'] or 'unknown'}",
    ]
    message = slow_blas_message(config)
    lines.append(f"advice:           {message}" if message else "advice:           none, the kernels match the CPU")
    print("\n".join(lines))


# ---- BLAS threads during training ------------------------------------------------------------------

# OpenBLAS splits one matrix product over its threads. For the small products of
# training on a few hundred rows, handing work to a second thread and waiting for
# it costs about as much as it saves, and far more when the other core is busy.
# Measured on the 2-core machine of docs/benchmarks.md ("Threads"): minibatches of
# 32 rows (32 x 384 x 200 = 2.5M multiply-adds) ran up to 2.4x slower on 2 threads
# than on 1 (in three of four runs); the full batch of 200 rows (15M) gained at
# most 15% from a second thread on a quiet machine and lost up to 2.8x on a busy
# one; the contrastive full batch of 200 x 384 x 384 (29M) and everything larger
# gained from it. Below this many multiply-adds in the largest product of one
# training step, training runs on one BLAS thread.
SINGLE_THREAD_BELOW = 20_000_000

# EMBETTER_TRAINING_THREADS=keep leaves OpenBLAS's thread count alone during training.
_POLICY_VARIABLE = "EMBETTER_TRAINING_THREADS"

_limit_lock = threading.Lock()
_active_limits = 0
_limiter = None
_controller = None


def training_product_size(kind, n_rows, n_features, width, batch_size):
    """Multiply-adds of the largest matrix product of one training step: rows per step x features x width.

    The rows per step are the C library's own rule (eb_training_step_rows): a
    feed-forward step multiplies its batch of rows; a contrastive step all
    rows, or the two rows of each pair of a minibatch small enough to gather.
    """
    rows = lib.eb_training_step_rows(getattr(lib, f"EB_KIND_{kind.upper()}"), n_rows, batch_size)
    return rows * n_features * width


def single_thread_training(kind, n_rows, n_features, width, batch_size, policy=None):
    """Whether a training call of this shape should run on one BLAS thread (the library's measured policy)."""
    policy = os.environ.get(_POLICY_VARIABLE, "auto") if policy is None else policy
    if policy not in ("auto", "keep"):
        raise ValueError(f"{_POLICY_VARIABLE} is {policy!r}; it must be 'auto' or 'keep'")
    size = training_product_size(kind, n_rows, n_features, width, batch_size)
    return policy == "auto" and size < SINGLE_THREAD_BELOW


def training_team_threads():
    """What eb_finetuner_set_threads gets before a training call: 1 when OpenBLAS is held to one thread (by
    OPENBLAS_NUM_THREADS=1, threadpoolctl, or joblib in its workers), so that one limit holds all of
    libembetter's threads; otherwise EB_FINETUNER_THREADS_AUTO, the C library's own rule (threads only for the
    contrastive training on mostly-zero rows that gains from them, docs/c-api.md, "Threads")."""
    config = ffi.new("eb_blas_config *")
    raise_for_status(lib.eb_blas_info(config))
    return 1 if config.threads == 1 else lib.EB_FINETUNER_THREADS_AUTO


# ---- threads during transform ----------------------------------------------------------------------

# OpenBLAS threads only the matrix product of transform; the rest of it (the
# sigmoid and the finiteness check of every output) runs on the calling thread
# while OpenBLAS's other threads wait, which held a 2-thread transform of
# 100,000 x 384 -> 200 to about half of cblas_sgemm's speed on the same product
# (docs/benchmarks.md, section 3). Giving each of OpenBLAS's threads a block of
# rows of its own, transformed on a thread of its own with OpenBLAS held to one
# thread, runs all of it in parallel. Blocks start on multiples of the C
# library's slices (EB_TRANSFORM_SLICE_ROWS), so every row goes through the
# same products as in one call and the result has the same bits.
TRANSFORM_SLICE_ROWS = lib.EB_TRANSFORM_SLICE_ROWS
# Below this many multiply-adds per block, starting a thread costs more than it saves.
PARALLEL_TRANSFORM_MIN_MACS = 50_000_000


def transform_blocks(n_rows, n_features, width, threads=None):
    """Row ranges (start, stop) to transform on threads of their own; a single range means one plain call.

    threads defaults to OpenBLAS's current thread count (so a threadpoolctl
    limit or OPENBLAS_NUM_THREADS=1 keeps transform on the calling thread).
    """
    macs = n_rows * n_features * width
    if macs < 2 * PARALLEL_TRANSFORM_MIN_MACS:
        return [(0, n_rows)]
    if threads is None:
        threads = blas_config()["threads"]
    slices = -(-n_rows // TRANSFORM_SLICE_ROWS)
    blocks = min(threads, os.cpu_count() or 1, slices, macs // PARALLEL_TRANSFORM_MIN_MACS)
    if blocks <= 1:
        return [(0, n_rows)]
    step = -(-slices // blocks) * TRANSFORM_SLICE_ROWS
    return [(start, min(n_rows, start + step)) for start in range(0, n_rows, step)]


@contextmanager
def single_blas_thread():
    """OpenBLAS on one thread for the duration (shared with overlapping training calls, as training_threads)."""
    _enter_single_thread()
    try:
        yield
    finally:
        _leave_single_thread()


def _enter_single_thread():
    global _active_limits, _limiter, _controller
    with _limit_lock:
        if _active_limits == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=1, user_api="blas")
        _active_limits += 1


def _leave_single_thread():
    global _active_limits, _limiter
    with _limit_lock:
        _active_limits -= 1
        if _active_limits == 0:
            _limiter.restore_original_limits()
            _limiter = None


@contextmanager
def training_threads(kind, n_rows, n_features, params):
    """One BLAS thread for the duration of a training call whose products are small, else no change.

    kind is the finetuner's kind name ("feedforward", "contrastive",
    "pair_learner"), params its C params struct; for the pair learner n_rows
    counts pairs. OpenBLAS's thread count is process-wide: the C library never
    changes it (it keeps no global state), so the Python layer does, only
    around fit and partial_fit, and puts the previous count back afterwards.
    Overlapping calls from several threads share one limit, lifted when the
    last ends. Yields whether it limited.
    """
    width = n_features if params.hidden_dim == lib.EB_HIDDEN_DIM_AS_INPUT else params.hidden_dim
    if not single_thread_training(kind, n_rows, n_features, width, params.batch_size):
        yield False
        return
    with single_blas_thread():
        yield True
