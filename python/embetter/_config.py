"""What BLAS runs embetter's matrix products, and a warning when it runs slow kernels.

OpenBLAS picks its kernels from the CPU model when it loads. Debian 12's
OpenBLAS 0.3.21 does not know some recent Xeons and then silently uses its
generic "Prescott" kernels, several times slower than the ones the CPU can
run. The C library compares the core OpenBLAS reports with the CPU's vector
instructions (eb_blas_info); this module turns a mismatch into one warning
that names the fix.
"""
import warnings

from embetter._native import ffi, lib


class SlowBLASWarning(RuntimeWarning):
    """OpenBLAS runs kernels for an older CPU than this one."""


def _text(field):
    return ffi.string(field).decode("utf-8", "replace")


def blas_config():
    """The BLAS as it runs now: library, version, core, threading, threads, CPU ISA, recommended coretype."""
    config = ffi.new("eb_blas_config *")
    status = lib.eb_blas_info(config)
    if status != lib.EB_OK:
        raise RuntimeError(f"eb_blas_info failed: {ffi.string(lib.eb_status_string(status)).decode('ascii')}")
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


def show_config():
    """Print the BLAS embetter uses: library, version, core it runs, threads, and any advice."""
    config = blas_config()
    lines = [
        f"embetter {ffi.string(lib.eb_version()).decode('ascii')}",
        f"BLAS library:     {config['library']} {config['version']}",
        f"BLAS core:        {config['core'] or 'unknown'}",
        f"BLAS threading:   {config['threading'] or 'unknown'}, {config['threads']} threads",
        f"BLAS build:       {config['build'] or 'unknown'}",
        f"CPU vector ISA:   {config['cpu_vector_isa'] or 'unknown'}",
    ]
    message = slow_blas_message(config)
    lines.append(f"advice:           {message}" if message else "advice:           none, the kernels match the CPU")
    print("\n".join(lines))
