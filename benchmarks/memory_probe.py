"""Peak memory of one ContrastiveFinetuner fit, printed as JSON; run.py starts it in a fresh process.

Only numpy and embetter are imported, so the resident size before the fit is
the interpreter plus X, and the growth of the maximum RSS is what fit needs.

Run: python benchmarks/memory_probe.py ROWS N_NEG
"""
import json
import resource
import sys

import numpy as np

from embetter.finetune import ContrastiveFinetuner


def main(rows, n_neg, n_features=384, n_classes=5):
    rng = np.random.default_rng(0)
    y = np.arange(rows) % n_classes
    # Built in place in float32: float64 temporaries would raise the maximum RSS above what fit needs.
    X = rng.standard_normal((rows, n_features), dtype=np.float32)
    X += 0.5 * rng.standard_normal((n_classes, n_features), dtype=np.float32)[y]
    y_encoded = y.astype(np.int64)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = ContrastiveFinetuner(n_neg=n_neg, n_epochs=2, random_state=0).fit(X, y_encoded)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "width": model.transform(X[:1]).shape[1]}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
