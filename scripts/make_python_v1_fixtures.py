"""Write tests/fixtures/python-v1/: models saved by libembetter 0.1's Python package (format 1 + JSON sidecar).

test_model_files.py checks that today's package loads them and transforms exactly as 0.1 did. Run with an
interpreter that has libembetter 0.1 installed (commit 3ed63b9), e.g.:
    git worktree add --detach /tmp/v1 3ed63b9
    python3 -m venv /tmp/v1-venv && /tmp/v1-venv/bin/pip install /tmp/v1
    /tmp/v1-venv/bin/python scripts/make_python_v1_fixtures.py
The data is generated from fixed seeds, so the test can rebuild the probe without reading this script's
output; the probe's embedding by the 0.1 model is saved beside each model as .npy.
"""
import importlib.metadata
from pathlib import Path

import numpy as np

from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "python-v1"


def data():
    """Training rows, string labels, int labels and a probe; test_model_files.py builds the same probe."""
    rng = np.random.RandomState(11)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    names = np.array(["ham", "spam", "eggs"])[np.arange(60) % 3]
    X[names == "spam"] += 1.5
    numbers = np.array([-7, 40])[np.arange(60) % 2]
    probe = np.random.RandomState(12).normal(size=(5, 6)).astype(np.float32)
    return X, names, numbers, probe


def main():
    version = importlib.metadata.version("libembetter")
    if not version.startswith("0.1"):
        raise SystemExit(f"libembetter {version} is installed; these fixtures must be written by 0.1")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    X, names, numbers, probe = data()
    feedforward = FeedForwardFinetuner(hidden_dim=4, n_epochs=30, learning_rate=0.05, random_state=3).fit(X, names)
    feedforward.save(OUTPUT / "feedforward.ebm")
    np.save(OUTPUT / "feedforward-probe.npy", feedforward.transform(probe))
    contrastive = ContrastiveFinetuner(hidden_dim=3, n_epochs=5, batch_size=16, random_state=4).fit(X, numbers)
    contrastive.save(OUTPUT / "contrastive.ebm")
    np.save(OUTPUT / "contrastive-probe.npy", contrastive.transform(probe))
    print(f"wrote {sorted(p.name for p in OUTPUT.iterdir())} with libembetter {version}")


if __name__ == "__main__":
    main()
