"""The exceptions a failed C call raises: one class per eb_status, all under EmbetterError.

Each class also derives from the builtin exception that status has always
raised (ValueError for bad input, TypeError, MemoryError, OSError for files,
scikit-learn's NotFittedError), so `except ValueError` keeps working while
`except libembetter.EmbetterError` catches every failure of the C library.
An instance carries the C status: `code` (the eb_status number) and `status`
(its name from eb_status_string, e.g. "EB_ERR_NONFINITE"). The message is the
C library's own, passed on unchanged.
"""
from __future__ import annotations

from sklearn.exceptions import NotFittedError

from libembetter._native import ffi, lib

__all__ = [
    "EmbetterError",
    "NullPointerError",
    "InvalidParameterError",
    "EmptyInputError",
    "ShapeMismatchError",
    "NonFiniteError",
    "LabelOutOfRangeError",
    "TooFewClassesError",
    "ModelNotFittedError",
    "OutOfMemoryError",
    "TooLargeError",
    "FileAccessError",
    "ModelFormatError",
    "InvalidUTF8Error",
    "WrongInputKindError",
    "BufferTooSmallError",
    "WrongKindError",
    "InvalidHandleError",
    "status_name",
    "error_for_status",
    "raise_for_status",
]


def status_name(code: int) -> str:
    """The C name of an eb_status, e.g. "EB_ERR_IO"; "EB_ERR_UNKNOWN" for a value the library does not know."""
    return ffi.string(lib.eb_status_string(code)).decode("ascii")


class EmbetterError(Exception):
    """A call into the C library failed. `code` is the eb_status, `status` its name.

    Instances of the subclasses are what the library raises; a bare
    EmbetterError only stands for a status this version does not know.
    """

    #: The eb_status of the failure (a subclass's own status; set per instance for unknown ones).
    code: int = -1
    #: Its name, as eb_status_string gives it.
    status: str = "EB_ERR_UNKNOWN"


class NullPointerError(EmbetterError, TypeError):
    """EB_ERR_NULL_POINTER: a required argument was missing (None where the C API needs an object)."""


class InvalidParameterError(EmbetterError, ValueError):
    """EB_ERR_INVALID_PARAM: a parameter is out of range; the message names it."""


class EmptyInputError(EmbetterError, ValueError):
    """EB_ERR_EMPTY_INPUT: a matrix or batch has no rows or no columns."""


class ShapeMismatchError(EmbetterError, ValueError):
    """EB_ERR_SHAPE_MISMATCH: a column count differs from the fitted model's, or an output has the wrong shape."""


class NonFiniteError(EmbetterError, ValueError):
    """EB_ERR_NONFINITE: X holds a NaN or an infinity (the message names row and column), or a row overflows."""


class LabelOutOfRangeError(EmbetterError, ValueError):
    """EB_ERR_LABEL_OUT_OF_RANGE: a class index is outside 0 .. n_classes-1."""


class TooFewClassesError(EmbetterError, ValueError):
    """EB_ERR_TOO_FEW_CLASSES: too few distinct labels to learn from."""


class ModelNotFittedError(EmbetterError, NotFittedError):
    """EB_ERR_NOT_FITTED: the C model is used before it was fitted (also a scikit-learn NotFittedError)."""


# MemoryError comes first: it has a constructor of its own, and with EmbetterError first, Python refuses
# MemoryError.__new__ for the subclass, which is how tblib (installed by dask and distributed) unpickles errors.
class OutOfMemoryError(MemoryError, EmbetterError):
    """EB_ERR_NOMEM: the C library could not allocate the memory the call needs."""


class TooLargeError(EmbetterError, ValueError):
    """EB_ERR_TOO_LARGE: a size is beyond what the C library (or BLAS's int sizes) can address."""


class FileAccessError(EmbetterError, OSError):
    """EB_ERR_IO: reading or writing a file failed; the message has the path and the system's reason."""


class ModelFormatError(EmbetterError, ValueError):
    """EB_ERR_FORMAT: saved bytes or a vector file are not valid; the message says where and why."""


class InvalidUTF8Error(EmbetterError, ValueError):
    """EB_ERR_INVALID_UTF8: a text is not valid UTF-8; the message names the item and byte offset."""


class WrongInputKindError(EmbetterError, ValueError):
    """EB_ERR_WRONG_INPUT_KIND: an encoder got texts where it takes images, or the reverse."""


class BufferTooSmallError(EmbetterError, ValueError):
    """EB_ERR_BUFFER_TOO_SMALL: an output buffer holds fewer items than the call writes."""


class WrongKindError(EmbetterError, TypeError):
    """EB_ERR_WRONG_KIND: the call does not apply to this kind of finetuner (e.g. pairs for a feed-forward one)."""


class InvalidHandleError(EmbetterError, ValueError):
    """EB_ERR_INVALID_HANDLE: the handle is not a live finetuner (freed, or never one), as a closed file is."""


# The one table from C statuses to classes. Filled from the C constants, so a
# renumbered status cannot pair with the wrong class.
_CLASSES: dict[int, type[EmbetterError]] = {
    lib.EB_ERR_NULL_POINTER: NullPointerError,
    lib.EB_ERR_INVALID_PARAM: InvalidParameterError,
    lib.EB_ERR_EMPTY_INPUT: EmptyInputError,
    lib.EB_ERR_SHAPE_MISMATCH: ShapeMismatchError,
    lib.EB_ERR_NONFINITE: NonFiniteError,
    lib.EB_ERR_LABEL_OUT_OF_RANGE: LabelOutOfRangeError,
    lib.EB_ERR_TOO_FEW_CLASSES: TooFewClassesError,
    lib.EB_ERR_NOT_FITTED: ModelNotFittedError,
    lib.EB_ERR_NOMEM: OutOfMemoryError,
    lib.EB_ERR_TOO_LARGE: TooLargeError,
    lib.EB_ERR_IO: FileAccessError,
    lib.EB_ERR_FORMAT: ModelFormatError,
    lib.EB_ERR_INVALID_UTF8: InvalidUTF8Error,
    lib.EB_ERR_WRONG_INPUT_KIND: WrongInputKindError,
    lib.EB_ERR_BUFFER_TOO_SMALL: BufferTooSmallError,
    lib.EB_ERR_WRONG_KIND: WrongKindError,
    lib.EB_ERR_INVALID_HANDLE: InvalidHandleError,
}
for _code, _cls in _CLASSES.items():
    _cls.code = _code
    _cls.status = status_name(_code)
del _code, _cls


def error_for_status(code: int, message: str = "") -> EmbetterError:
    """The exception for a failed C call: the class of its status, with the C library's message.

    The only place that turns an eb_status into an exception. An empty message
    (calls that leave no detail) becomes the status's name.
    """
    cls = _CLASSES.get(code, EmbetterError)
    error = cls(message or status_name(code))
    # Instance attributes too: they survive pickling (BaseException pickles __dict__) and
    # hold the real values for a status this version has no class for.
    error.code = int(code)
    error.status = status_name(code)
    return error


def raise_for_status(code: int, message: str = "") -> None:
    """Nothing for EB_OK, else raise error_for_status(code, message)."""
    if code != lib.EB_OK:
        raise error_for_status(code, message)
