"""PyPI's embetter 0.9.1 and libembetter installed side by side: both import, neither shadows the other,
and embetter's encoders feed libembetter's finetuners in one scikit-learn pipeline.

The test environment installs embetter==0.9.1 (no extras: they pull PyTorch) next
to libembetter. embetter.finetune imports torch, so it is never imported here.
"""
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

try:
    import embetter
except ModuleNotFoundError:
    raise ImportError(
        "test_coexistence needs PyPI's embetter 0.9.1 installed beside libembetter: pip install embetter==0.9.1 "
        "(no extras: they pull PyTorch), or install libembetter's test extra"
    ) from None
import embetter.grab
import embetter.vision
import libembetter
import libembetter.grab
import libembetter.vision
from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner


def test_both_import_from_their_own_directories():
    assert importlib.metadata.version("embetter") == "0.9.1" and embetter.__version__ == "0.9.1"
    assert libembetter.__version__ and libembetter.__version__ != embetter.__version__
    embetter_dir = Path(embetter.__file__).resolve().parent
    libembetter_dir = Path(libembetter.__file__).resolve().parent
    assert embetter_dir.name == "embetter" and libembetter_dir.name == "libembetter"
    assert embetter_dir != libembetter_dir
    assert not embetter_dir.is_relative_to(libembetter_dir) and not libembetter_dir.is_relative_to(embetter_dir)
    # embetter is the package PyPI's distribution installed, not something of ours under that name.
    pypi_init = Path(importlib.metadata.distribution("embetter").locate_file("embetter/__init__.py")).resolve()
    assert Path(embetter.__file__).resolve() == pypi_init
    for module in (embetter.grab, embetter.vision):
        assert Path(module.__file__).resolve().is_relative_to(embetter_dir)
    for module in (libembetter.grab, libembetter.vision):
        assert Path(module.__file__).resolve().is_relative_to(libembetter_dir)
    assert embetter.grab.ColumnGrabber is not libembetter.grab.ColumnGrabber
    assert embetter.vision.ColorHistogramEncoder.__module__.startswith("embetter.")


def test_libembetter_distribution_installs_nothing_under_the_name_embetter():
    files = importlib.metadata.distribution("libembetter").files
    assert files, "the libembetter distribution lists no files"
    top_level = {Path(str(f)).parts[0] for f in files}
    assert "libembetter" in top_level or any(name.endswith(".pth") for name in top_level)
    assert "embetter" not in top_level


def imported_after(statement):
    """The top-level packages a fresh interpreter has imported after running statement."""
    code = f"import sys, json; {statement}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_neither_package_imports_the_other():
    ours = imported_after("import libembetter, libembetter.finetune, libembetter.text, libembetter.vision, "
                          "libembetter.grab, libembetter.utils, libembetter.model")
    assert "libembetter" in ours and "embetter" not in ours
    theirs = imported_after("import embetter, embetter.grab, embetter.vision, embetter.model, embetter.utils")
    assert "embetter" in theirs and "libembetter" not in theirs and "torch" not in theirs


@pytest.fixture(scope="module")
def image_frame(tmp_path_factory):
    """60 small PNG files and a DataFrame of their paths and labels.

    Most of the variation between pictures is their overall brightness; the label is which channel is
    lifted by a further 25, a smaller signal, so two unsupervised columns (PCA) do not find it.
    """
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.RandomState(0)
    rows = []
    for i in range(60):
        label = i % 3
        pixels = rng.randint(10, 190) + rng.randint(0, 40, size=(12, 10, 3))
        pixels[:, :, label] += 25
        path = folder / f"picture_{i:02d}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        rows.append({"path": str(path), "label": ["red", "green", "blue"][label]})
    return pd.DataFrame(rows)


def training_accuracy(X, y):
    return LogisticRegression(max_iter=2000).fit(X, y).score(X, y)


@pytest.mark.parametrize(
    "finetuner",
    [
        FeedForwardFinetuner(hidden_dim=2, n_epochs=200, learning_rate=0.01, random_state=0),
        ContrastiveFinetuner(hidden_dim=2, n_epochs=100, learning_rate=0.01, random_state=0),
    ],
    ids=["feedforward", "contrastive"],
)
@pytest.mark.parametrize("out", ["pil", "numpy"])
def test_embetter_encoders_feed_libembetter_finetuners(image_frame, finetuner, out):
    pipeline = make_pipeline(
        embetter.grab.ColumnGrabber("path"),
        embetter.vision.ImageLoader(convert="RGB", out=out),
        embetter.vision.ColorHistogramEncoder(n_buckets=8),
        StandardScaler(),  # raw pixel counts (0..120) would saturate the finetuners' sigmoid and tanh units
        finetuner,
    )
    y = image_frame["label"]
    embedded = pipeline.fit(image_frame, y).transform(image_frame)
    assert embedded.shape == (len(image_frame), 2) and embedded.dtype == np.float32
    assert np.isfinite(embedded).all()
    # embetter's histograms reach the finetuner unchanged: 3 x 8 float64 counts of 120 pixels per channel.
    histograms = image_frame
    for _, step in pipeline.steps[:3]:  # step by step: a Pipeline ending in embetter's encoder is "unfitted" on
        histograms = step.transform(histograms)  # scikit-learn >= 1.7, which reads tags embetter 0.9.1 does not set
    assert histograms.shape == (len(image_frame), 24) and (histograms.sum(axis=1) == 3 * 120).all()
    assert pipeline[-1].n_features_in_ == 24
    assert np.array_equal(pipeline[-1].transform(pipeline[-2].transform(histograms)), embedded)
    # It learned the labels: its two columns separate the three colours ...
    learned = training_accuracy(embedded, y)
    assert learned >= 0.85
    # ... which neither the two main unsupervised directions do ...
    scaled = pipeline[-2].transform(histograms)
    assert training_accuracy(PCA(n_components=2).fit_transform(scaled), y) <= learned - 0.3
    # ... nor the same finetuner trained on shuffled labels.
    shuffled = np.random.RandomState(1).permutation(y.to_numpy())
    control = clone(pipeline).fit(image_frame, shuffled)
    chance_level = training_accuracy(control.transform(image_frame), y)
    assert learned - chance_level >= 0.25, (learned, chance_level)
