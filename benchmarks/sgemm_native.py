"""cblas_sgemm timed at embetter's shapes, compiled on the fly (cffi) against the OpenBLAS embetter uses.

The helper links the same libopenblas.so.0 that embetter's extension loaded,
so both run in one process on one OpenBLAS instance with one thread setting.
"""
import importlib.util
import os
import shlex
import subprocess
import sys
import tempfile
import time

import cffi
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
_module = None


def _openblas_flags():
    try:
        out = subprocess.run(["pkg-config", "--cflags", "--libs", "openblas"], capture_output=True, text=True,
                             check=True).stdout
        tokens = shlex.split(out)
    except (OSError, subprocess.CalledProcessError):
        tokens = ["-I/usr/include/x86_64-linux-gnu/openblas-pthread", "-lopenblas"]
    return ([t[2:] for t in tokens if t.startswith("-I")], [t[2:] for t in tokens if t.startswith("-L")],
            [t[2:] for t in tokens if t.startswith("-l")])


def _compile(module_name, stem, **source_options):
    """Build benchmarks/<stem>.c behind <stem>.h as a cffi module in a temporary directory and import it."""
    ffi = cffi.FFI()
    with open(os.path.join(HERE, f"{stem}.h")) as f:
        ffi.cdef(f.read())
    ffi.set_source(module_name, f'#include "{stem}.h"', sources=[os.path.join(HERE, f"{stem}.c")], **source_options)
    build_dir = tempfile.mkdtemp(prefix="embetter-bench-")
    path = ffi.compile(tmpdir=build_dir, verbose=False)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[module_name] = module
    return module


def load():
    """The compiled helper module (built once per process into a temporary directory)."""
    global _module
    if _module is None:
        include_dirs, library_dirs, libraries = _openblas_flags()
        _module = _compile("_bench_sgemm_loops", "sgemm_loops", include_dirs=[HERE] + include_dirs,
                           library_dirs=library_dirs, libraries=libraries, extra_compile_args=["-O2"])
    return _module


def _ptr(ffi, array):
    return ffi.cast("float *", array.ctypes.data)


def sgemm_timer(m, n, k, trans_a=False, trans_b=False):
    """A function of `repeats` giving the seconds of that many products C (m x n) = op(A) op(B), inner dimension k.

    The operands are made once, here: timing a product beside embetter's
    transform must not allocate and free hundreds of megabytes every time,
    which left the kernel remapping pages during the next transform.
    """
    mod = load()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    lda, ldb = a.shape[1], b.shape[1]
    pointers = (_ptr(mod.ffi, a), lda, _ptr(mod.ffi, b), ldb, _ptr(mod.ffi, c), n)
    mod.lib.repeat_sgemm(1, trans_a, trans_b, m, n, k, *pointers)

    def seconds(repeats, operands=(a, b, c)):  # the default keeps the arrays behind the pointers alive
        start = time.perf_counter()
        mod.lib.repeat_sgemm(repeats, trans_a, trans_b, m, n, k, *pointers)
        return time.perf_counter() - start

    return seconds


def feedforward_flops(epochs, rows, batch, d, h, k):
    """Floating-point operations of the five products per batch that feed-forward training runs."""
    total = 0
    for start in range(0, rows, batch):
        b = min(batch, rows - start)
        total += 2 * b * (2 * d * h + 3 * h * k)
    return epochs * total


def feedforward_gemm_seconds(epochs, rows, batch, d, h, k):
    """Seconds cblas_sgemm alone needs for every product of feed-forward training with these shapes."""
    mod = load()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, d)).astype(np.float32)
    w1 = rng.standard_normal((d, h)).astype(np.float32)
    w2 = rng.standard_normal((h, k)).astype(np.float32)
    hidden = np.empty((batch, h), np.float32)
    scores = np.empty((batch, k), np.float32)
    delta = np.empty((batch, h), np.float32)
    grad_w1 = np.empty((d, h), np.float32)
    grad_w2 = np.empty((h, k), np.float32)
    args = [_ptr(mod.ffi, a) for a in (x, w1, w2, hidden, scores, delta, grad_w1, grad_w2)]
    mod.lib.feedforward_gemms(1, rows, batch, d, h, k, *args)
    start = time.perf_counter()
    mod.lib.feedforward_gemms(epochs, rows, batch, d, h, k, *args)
    return time.perf_counter() - start


# ---- the FMA peak (benchmarks/peak_flops.c) ---------------------------------------------------------

_peak_module = None


def load_peak():
    """The compiled peak-FLOP/s helper, a module of its own so sgemm's build and link flags stay untouched."""
    global _peak_module
    if _peak_module is None:
        # -O2 and no -march: the loops pick their ISA per function (target attributes), so the build itself runs
        # anywhere and only the path the CPU supports is ever called.
        _peak_module = _compile("_bench_peak_flops", "peak_flops", include_dirs=[HERE],
                                extra_compile_args=["-O2", "-pthread"], extra_link_args=["-pthread"])
    return _peak_module


def peak_isa():
    """"AVX-512", "AVX2+FMA" or None: the registers the peak loop runs on here."""
    return {512: "AVX-512", 256: "AVX2+FMA"}.get(load_peak().lib.peak_fma_width())


def peak_cpus():
    """CPUs the peak may use at once: the online ones this process is allowed on, at most os.cpu_count()."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    return max(1, min(allowed, os.cpu_count() or 1))


def peak_gflops(threads, runs=7, seconds=0.1):
    """Best GFLOP/s of `runs` runs of about `seconds` each, `threads` FMA loops at once; None when unsupported.

    The best and not the median: on a shared machine every disturbance only ever slows the loop down, so the
    fastest run is the one closest to what the silicon does.
    """
    mod = load_peak()
    checksum = mod.ffi.new("double *")
    if mod.lib.peak_fma_width() == 0:
        return None
    # A probe run sizes the others, and also lets the core settle into its wide-vector clock before timing.
    iterations = 1 << 20
    probe = mod.lib.peak_fma_gflops(threads, iterations, checksum)
    if probe < 0:
        raise RuntimeError(f"peak_fma_gflops could not start {threads} threads")
    iterations = max(iterations, int(seconds * probe * 1e9 / (threads * mod.lib.peak_fma_flops_per_iteration())))
    best = 0.0
    for _ in range(runs):
        best = max(best, mod.lib.peak_fma_gflops(threads, iterations, checksum))
    if not np.isfinite(checksum[0]):
        raise RuntimeError(f"peak_fma_gflops' accumulators went non-finite ({checksum[0]})")
    return best
