"""Peak memory of one ContrastiveFinetuner fit, printed as JSON; run.py starts it in a fresh process.

Only numpy and embetter are imported, so the resident size before the fit is
the interpreter plus X, and the growth of the peak RSS is what fit needs. The
peak is the kernel's high-water mark of this process's memory (VmHWM):
getrusage's ru_maxrss would also carry the parent's peak across fork and exec.

Run: python benchmarks/memory_probe.py ROWS N_NEG
"""
import json
import sys

import numpy as np

from libembetter.finetune import ContrastiveFinetuner


def peak_rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM line")


def main(rows, n_neg, n_features=384, n_classes=5):
    rng = np.random.default_rng(0)
    y = np.arange(rows) % n_classes
    # Built in place in float32: float64 temporaries would raise the maximum RSS above what fit needs.
    X = rng.standard_normal((rows, n_features), dtype=np.float32)
    X += 0.5 * rng.standard_normal((n_classes, n_features), dtype=np.float32)[y]
    y_encoded = y.astype(np.int64)
    baseline = peak_rss_kib()
    model = ContrastiveFinetuner(n_neg=n_neg, n_epochs=2, random_state=0).fit(X, y_encoded)
    peak = peak_rss_kib()
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "width": model.transform(X[:1]).shape[1]}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
