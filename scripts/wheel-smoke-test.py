"""What a user of the repaired wheel does first, on a machine with no compiler and no -dev package.

scripts/check-wheel.sh runs this in a fresh Debian 12 (../shared/tools/fresh-machine.sh) after
`pip install libembetter-*.whl`: fit, transform, save and load, a text encoder, and the BLAS report.
"""
import os
import sys
import tempfile

import numpy as np

import libembetter
from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner, load
from libembetter.text import HashingEncoder

rng = np.random.default_rng(0)
centres = rng.normal(scale=3.0, size=(3, 10))
X = np.concatenate([c + 0.5 * rng.normal(size=(40, 10)) for c in centres]).astype(np.float32)
y = np.repeat([0, 1, 2], 40)

for tuner in (FeedForwardFinetuner(hidden_dim=6, n_epochs=50, random_state=0),
              ContrastiveFinetuner(hidden_dim=6, n_epochs=20, random_state=0)):
    embedded = tuner.fit(X, y).transform(X)
    assert embedded.shape == (120, 6) and np.isfinite(embedded).all(), embedded
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.ebm")
        tuner.save(path)
        again = load(path)
        assert np.array_equal(again.transform(X), embedded)
    print(f"{type(tuner).__name__}: fit, transform, save and load agree")

texts = ["the cat sat", "a cat purred", "dogs bark loudly", "the dog barked"]
vectors = HashingEncoder(n_features=64).transform(texts)
assert vectors.shape == (4, 64) and np.abs(vectors).sum() > 0
print("HashingEncoder:", vectors.shape)

libembetter.show_config()
config = libembetter._config.blas_config()
assert config["library"] == "scipy-openblas32", config
# The wheel's own copy of OpenBLAS is scipy-openblas32's (found by RPATH), not one grafted into the wheel.
with open("/proc/self/maps") as maps:
    loaded = {line.split()[-1] for line in maps if line.rstrip().endswith(".so") or ".so." in line}
openblas = sorted(path for path in loaded if "openblas" in os.path.basename(path))
assert any("/scipy_openblas32/lib/" in path for path in openblas), openblas
ours = ("/libembetter/", "/libembetter.libs/", "/scipy_openblas32/")
print("libembetter's libraries:", *sorted(path.split("site-packages/")[-1] for path in loaded
                                          if any(part in path for part in ours)))
print(f"smoke test passed: libembetter {libembetter.__version__} on Python {sys.version.split()[0]}")
