"""HashingEncoder against the scikit-learn pipeline it reproduces, on the whole fortunes corpus.

For each setting: scikit-learn's HashingVectorizer.transform (sparse output,
the cheapest form of the reference) and the same plus .toarray() (the dense
float matrix HashingEncoder returns), against HashingEncoder on one thread and
with automatic threads. Outputs are checked to be equal element by element
before any time is reported. Exits 1 when the default setting falls short of
the target speed-up over the sparse reference (--target, default 10).

Run: /usr/bin/python3 benchmarks/encoders/bench_hashing.py  (with embetter installed)
"""
import argparse
import os
import sys

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import best_time, fortunes_texts  # noqa: E402

from libembetter.text import HashingEncoder  # noqa: E402

SETTINGS = {
    "char_wb (2,4), 1024, l2 [default]": dict(analyzer="char_wb", ngram_range=(2, 4), n_features=1024),
    "char (1,3), 1024, l2": dict(analyzer="char", ngram_range=(1, 3), n_features=1024),
    "word (1,2), 1024, l2": dict(analyzer="word", ngram_range=(1, 2), n_features=1024),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=10.0)
    args = parser.parse_args()
    texts = fortunes_texts()
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"fortunes corpus: {len(texts)} texts, {megabytes:.2f} MB of UTF-8; best of {args.repeats} runs; "
          f"{os.cpu_count()} CPUs")
    print(f"{'setting':36} {'sklearn sparse':>15} {'sklearn dense':>14} {'ours 1 thread':>14} {'ours auto':>10} "
          f"{'speed-up (1t / auto vs sparse)':>32}")
    default_speedup = None
    for name, settings in SETTINGS.items():
        vectorizer = HashingVectorizer(**settings)
        sparse_time, sparse = best_time(lambda: vectorizer.transform(texts), args.repeats)
        dense_time, dense = best_time(lambda: vectorizer.transform(texts).toarray(), args.repeats)
        single = HashingEncoder(n_threads=1, **settings)
        automatic = HashingEncoder(**settings)
        single_time, ours = best_time(lambda: single.transform(texts), args.repeats)
        auto_time, ours_auto = best_time(lambda: automatic.transform(texts), args.repeats)
        reference = dense.astype(np.float32)
        if not (np.array_equal(ours, reference) and np.array_equal(ours_auto, reference)):
            print(f"{name}: outputs differ from scikit-learn", file=sys.stderr)
            return 2
        speedups = (sparse_time / single_time, sparse_time / auto_time)
        if default_speedup is None:
            default_speedup = speedups[1]
        print(f"{name:36} {sparse_time:14.3f}s {dense_time:13.3f}s {single_time:13.3f}s {auto_time:9.3f}s "
              f"{speedups[0]:15.1f}x / {speedups[1]:.1f}x")
    verdict = "meets" if default_speedup >= args.target else "MISSES"
    print(f"default setting: {default_speedup:.1f}x the sparse scikit-learn throughput; {verdict} the "
          f"{args.target:g}x target")
    return 0 if default_speedup >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
