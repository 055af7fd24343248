"""embetter: fine-tune embeddings toward a labelling task, backed by the C library libembetter.

The finetuners live in embetter.finetune; embetter.grab, embetter.utils and
embetter.model hold the small pipeline helpers of the original embetter.
"""
from embetter._binding import library_version
from embetter._config import show_config, warn_if_slow_blas

__version__ = library_version()

# OpenBLAS running kernels for an older CPU is otherwise only visible as slowness.
warn_if_slow_blas()

__all__ = ["__version__", "show_config"]
