"""Shared setup of the Python suite.

The tests run against the libembetter package installed in the interpreter
that runs pytest (pip install '.[test]' into a venv, see README.md). An
editable install (pip install -e '.[test]') is found the same way; a checkout
with neither gets one clear error instead of a page of ImportErrors.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

if importlib.util.find_spec("libembetter") is None or importlib.util.find_spec("libembetter._native") is None:
    raise ImportError(
        "the libembetter Python package is not installed in this interpreter. Create a venv and install it:\n"
        "  python3 -m venv .venv\n"
        "  .venv/bin/pip install '.[test]'\n"
        "then run .venv/bin/python -m pytest tests/python"
    )


def make_blobs_dataset(n_per_class=30, n_features=8, n_classes=3, spread=0.6, seed=0):
    """Well separated Gaussian blobs, float32, with labels 0..n_classes-1."""
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=3.0, size=(n_classes, n_features))
    X = np.concatenate([c + spread * rng.normal(size=(n_per_class, n_features)) for c in centres])
    y = np.repeat(np.arange(n_classes), n_per_class)
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order]


@pytest.fixture
def blobs():
    return make_blobs_dataset()


@pytest.fixture
def repo_root():
    return REPO_ROOT


def pytest_configure(config):
    # A deprecation that libembetter's own code triggers (a warning attributed to one of its modules, as
    # scikit-learn's and NumPy's deprecations are, to their caller) fails the test that reached it. The module
    # field is a regular expression matched from the start of the module name; \b keeps it to libembetter
    # and its submodules.
    for category in ("DeprecationWarning", "PendingDeprecationWarning", "FutureWarning"):
        config.addinivalue_line("filterwarnings", f"error::{category}:libembetter\\b")
    # distributed 2022.12 on Debian 12 calls a tornado API that tornado 6.2 deprecates; that is theirs, not ours.
    config.addinivalue_line(
        "filterwarnings", "ignore:make_current is deprecated:DeprecationWarning:tornado.ioloop"
    )
