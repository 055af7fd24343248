"""libembetter.EmbetterError: one class per C status, each also the builtin it always was, carrying the status."""
import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import libembetter
from libembetter import _errors
from libembetter._binding import NativeModel
from libembetter._native import ffi, lib
from libembetter.finetune import FeedForwardFinetuner
from libembetter.text import HashingEncoder, WordVectorEncoder

# Written out by hand, not derived from _errors: the status each class stands for and the builtin
# that status raised before the hierarchy existed (so `except ValueError` code keeps working).
EXPECTED = {
    "EB_ERR_NULL_POINTER": (libembetter.NullPointerError, TypeError),
    "EB_ERR_INVALID_PARAM": (libembetter.InvalidParameterError, ValueError),
    "EB_ERR_EMPTY_INPUT": (libembetter.EmptyInputError, ValueError),
    "EB_ERR_SHAPE_MISMATCH": (libembetter.ShapeMismatchError, ValueError),
    "EB_ERR_NONFINITE": (libembetter.NonFiniteError, ValueError),
    "EB_ERR_LABEL_OUT_OF_RANGE": (libembetter.LabelOutOfRangeError, ValueError),
    "EB_ERR_TOO_FEW_CLASSES": (libembetter.TooFewClassesError, ValueError),
    "EB_ERR_NOT_FITTED": (libembetter.ModelNotFittedError, NotFittedError),
    "EB_ERR_NOMEM": (libembetter.OutOfMemoryError, MemoryError),
    "EB_ERR_TOO_LARGE": (libembetter.TooLargeError, ValueError),
    "EB_ERR_IO": (libembetter.FileAccessError, OSError),
    "EB_ERR_FORMAT": (libembetter.ModelFormatError, ValueError),
    "EB_ERR_INVALID_UTF8": (libembetter.InvalidUTF8Error, ValueError),
    "EB_ERR_WRONG_INPUT_KIND": (libembetter.WrongInputKindError, ValueError),
    "EB_ERR_BUFFER_TOO_SMALL": (libembetter.BufferTooSmallError, ValueError),
    "EB_ERR_WRONG_KIND": (libembetter.WrongKindError, TypeError),
    "EB_ERR_INVALID_HANDLE": (libembetter.InvalidHandleError, ValueError),
}

C_STATUSES = range(1, lib.EB_STATUS_COUNT)


def c_name(code):
    return ffi.string(lib.eb_status_string(code)).decode("ascii")


def test_every_c_status_has_a_class_here():
    assert sorted(c_name(code) for code in C_STATUSES) == sorted(EXPECTED)


@pytest.mark.parametrize("code", C_STATUSES, ids=c_name)
def test_every_c_status_maps_to_its_class_and_carries_its_code(code):
    cls, builtin = EXPECTED[c_name(code)]
    error = _errors.error_for_status(code, "the C library's detail")
    assert type(error) is cls
    assert isinstance(error, libembetter.EmbetterError)
    assert isinstance(error, builtin)
    assert error.code == code
    assert error.status == c_name(code)
    assert (cls.code, cls.status) == (code, c_name(code))  # also readable on the class, for `except` clauses
    assert str(error) == "the C library's detail"
    with pytest.raises(cls) as caught:
        _errors.raise_for_status(code, "raised")
    assert caught.value.code == code


def test_every_class_stands_for_one_status():
    classes = [cls for cls, _ in EXPECTED.values()]
    assert len(set(classes)) == len(classes)
    exported = {name for name in libembetter.__all__ if name.endswith("Error")}
    assert exported == {cls.__name__ for cls in classes} | {"EmbetterError"}


def test_a_status_without_message_says_its_name_and_ok_raises_nothing():
    assert str(_errors.error_for_status(lib.EB_ERR_NOMEM)) == "EB_ERR_NOMEM"
    _errors.raise_for_status(lib.EB_OK, "")


def test_an_unknown_status_is_a_bare_embetter_error_with_its_code():
    error = _errors.error_for_status(lib.EB_STATUS_COUNT + 7, "from a newer library")
    assert type(error) is libembetter.EmbetterError
    assert (error.code, error.status) == (lib.EB_STATUS_COUNT + 7, "EB_ERR_UNKNOWN")
    assert not isinstance(error, (ValueError, TypeError, OSError, MemoryError))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("code", list(C_STATUSES) + [lib.EB_STATUS_COUNT + 7], ids=c_name)
def test_a_pickled_error_round_trips(code, protocol):
    error = _errors.error_for_status(code, f"detail of status {code}")
    again = pickle.loads(pickle.dumps(error, protocol=protocol))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert again.args == error.args
    assert (again.code, again.status) == (error.code, error.status)


@pytest.mark.parametrize("code", list(C_STATUSES) + [lib.EB_STATUS_COUNT + 7], ids=c_name)
def test_an_error_round_trips_through_tblib_as_dask_ships_it(code):
    # dask and distributed install tblib's pickling support, which rebuilds an exception with its class's
    # __new__; a class whose builtin base has a constructor of its own must allow that.
    from tblib import pickling_support as tblib_pickling
    error = _errors.error_for_status(code, f"detail of status {code}")
    tblib_pickling.install(error)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert again.args == error.args
    assert (again.code, again.status) == (error.code, error.status)


# ---- errors as the C library raises them -------------------------------------------------------


def test_nan_in_x_is_a_nonfinite_error_with_the_c_message_unchanged(blobs):
    X, y = blobs
    tuner = FeedForwardFinetuner(hidden_dim=3, n_epochs=2, random_state=0).fit(X, y)
    X = X.copy()
    X[4, 2] = np.nan
    with pytest.raises(libembetter.NonFiniteError) as caught:
        tuner.transform(X)
    # The whole message is the C library's: nothing is added by matching its prefix.
    assert str(caught.value) == "X[4, 2] is NaN (row 4, column 2); the input must not contain NaN or infinity"
    assert caught.value.code == lib.EB_ERR_NONFINITE
    # A raised error (with its traceback) pickles too, e.g. back from a joblib worker.
    assert pickle.loads(pickle.dumps(caught.value)).code == lib.EB_ERR_NONFINITE


def test_an_unfitted_c_model_is_also_scikit_learns_not_fitted_error(blobs):
    X, _ = blobs
    with pytest.raises(NotFittedError) as caught:
        NativeModel.create("feedforward", {"hidden_dim": 3}).transform(X)
    assert type(caught.value) is libembetter.ModelNotFittedError
    assert caught.value.status == "EB_ERR_NOT_FITTED"


def test_file_errors_are_oserrors_with_the_io_status(blobs, tmp_path):
    X, y = blobs
    tuner = FeedForwardFinetuner(hidden_dim=2, n_epochs=2).fit(X, y)
    with pytest.raises(OSError, match="no-such-dir") as caught:
        tuner.save(tmp_path / "no-such-dir" / "model.ebm")
    assert type(caught.value) is libembetter.FileAccessError
    assert caught.value.code == lib.EB_ERR_IO
    with pytest.raises(libembetter.FileAccessError, match="missing.vec.*No such file") as caught:
        WordVectorEncoder(tmp_path / "missing.vec").fit()
    assert caught.value.status == "EB_ERR_IO"


def test_encoder_and_format_errors_carry_their_status(tmp_path):
    with pytest.raises(libembetter.InvalidUTF8Error, match="text 0 is not valid UTF-8") as caught:
        HashingEncoder().transform([b"\xff\xfe"])
    assert caught.value.code == lib.EB_ERR_INVALID_UTF8
    with pytest.raises(libembetter.ModelFormatError, match="the data does not start with the EMBETTER magic"):
        NativeModel.saved_kind(b"certainly not a saved model, though long enough")
    with pytest.raises(libembetter.InvalidParameterError, match="hidden_dim") as caught:
        NativeModel.create("contrastive", {"hidden_dim": 0})
    assert isinstance(caught.value, ValueError)
