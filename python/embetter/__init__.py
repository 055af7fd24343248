"""embetter: fine-tune embeddings toward a labelling task, backed by the C library libembetter.

The finetuners live in embetter.finetune; embetter.grab, embetter.utils and
embetter.model hold the small pipeline helpers of the original embetter.
"""
from embetter._binding import library_version

__version__ = library_version()

__all__ = ["__version__"]
