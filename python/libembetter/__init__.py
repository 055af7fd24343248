"""embetter: fine-tune embeddings toward a labelling task, backed by the C library libembetter.

The finetuners live in libembetter.finetune; libembetter.grab, libembetter.utils and
libembetter.model hold the small pipeline helpers of the original embetter.
"""
from libembetter._binding import library_version
from libembetter._config import show_config, warn_if_slow_blas

__version__ = library_version()

# OpenBLAS running kernels for an older CPU is otherwise only visible as slowness.
warn_if_slow_blas()

__all__ = ["__version__", "show_config"]
