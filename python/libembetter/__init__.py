"""libembetter: fine-tune embeddings toward a labelling task, backed by the C library libembetter.

The finetuners live in libembetter.finetune; libembetter.grab, libembetter.utils and
libembetter.model hold the small pipeline helpers of the original embetter.
Every failure of the C library raises a subclass of libembetter.EmbetterError
that is also the builtin exception it stands for (ValueError, TypeError,
MemoryError, OSError or scikit-learn's NotFittedError).
"""
from libembetter._binding import library_version
from libembetter._config import show_config, warn_if_slow_blas
from libembetter._errors import (
    BufferTooSmallError,
    EmbetterError,
    EmptyInputError,
    FileAccessError,
    InvalidHandleError,
    InvalidParameterError,
    InvalidUTF8Error,
    LabelOutOfRangeError,
    ModelFormatError,
    ModelNotFittedError,
    NonFiniteError,
    NullPointerError,
    OutOfMemoryError,
    ShapeMismatchError,
    TooFewClassesError,
    TooLargeError,
    WrongInputKindError,
    WrongKindError,
)

__version__ = library_version()

# OpenBLAS running kernels for an older CPU is otherwise only visible as slowness.
warn_if_slow_blas()

__all__ = [
    "__version__",
    "show_config",
    "BufferTooSmallError",
    "EmbetterError",
    "EmptyInputError",
    "FileAccessError",
    "InvalidHandleError",
    "InvalidParameterError",
    "InvalidUTF8Error",
    "LabelOutOfRangeError",
    "ModelFormatError",
    "ModelNotFittedError",
    "NonFiniteError",
    "NullPointerError",
    "OutOfMemoryError",
    "ShapeMismatchError",
    "TooFewClassesError",
    "TooLargeError",
    "WrongInputKindError",
    "WrongKindError",
]
