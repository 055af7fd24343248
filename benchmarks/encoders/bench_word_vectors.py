"""WordVectorEncoder against gensim: loading a 100k x 300 .vec file, and mean pooling the fortunes corpus.

The vector file is generated once (random vectors, 4 decimals like fastText's
.vec files) and cached; its vocabulary holds the fortunes corpus's tokens by
frequency, padded with made-up words to 100,000. Loading is timed (best of --load-repeats) for
gensim's KeyedVectors.load_word2vec_format and WordVectorEncoder.fit (both
parse every value). Encoding compares WordVectorEncoder.transform with mean
pooling through gensim's get_mean_vector on the same tokens. Before any time
is reported, the loaded vectors are checked to be bit-identical on a sample
of words and the pooled rows to agree to float32 rounding. Exits 1 if either
is slower than gensim.

Run: /usr/bin/python3 benchmarks/encoders/bench_word_vectors.py  (embetter installed; python3-gensim)
"""
import argparse
import collections
import os
import re
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import best_time, fortunes_texts  # noqa: E402

from libembetter.text import WordVectorEncoder  # noqa: E402

# The encoder's tokens: runs of letters and digits of the lowercased text.
TOKEN = re.compile(r"[^\W_]+")


def vector_file(path, texts, n_words, dim, seed=0):
    if os.path.exists(path):
        return path
    counts = collections.Counter(tok for text in texts for tok in TOKEN.findall(text.lower()))
    words = [w for w, _ in counts.most_common(n_words)]
    words += [f"filler{i}" for i in range(n_words - len(words))]
    rng = np.random.RandomState(seed)
    print(f"writing {path} ({n_words} x {dim}) ...", flush=True)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(f"{n_words} {dim}\n")
        for start in range(0, n_words, 5000):
            block = rng.normal(scale=0.1, size=(min(5000, n_words - start), dim))
            lines = (w + " " + " ".join(f"{v:.4f}" for v in row) for w, row in zip(words[start:], block))
            f.write("\n".join(lines) + "\n")
    os.replace(partial, path)
    return path


def gensim_pooling(kv, texts):
    out = np.zeros((len(texts), kv.vector_size), dtype=np.float32)
    for i, text in enumerate(texts):
        known = [t for t in TOKEN.findall(text.lower()) if t in kv.key_to_index]
        if known:
            out[i] = kv.get_mean_vector(known, pre_normalize=False, post_normalize=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each encoding timing (best counts)")
    parser.add_argument("--load-repeats", type=int, default=2, help="runs of each loading timing (best counts)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "embetter-bench"))
    args = parser.parse_args()
    try:
        from gensim.models import KeyedVectors
    except ImportError:
        raise SystemExit("gensim is missing; install python3-gensim (scripts/install-deps.sh)")
    texts = fortunes_texts()
    os.makedirs(args.cache, exist_ok=True)
    path = vector_file(os.path.join(args.cache, f"vectors-{args.words}x{args.dim}.vec"), texts, args.words, args.dim)
    size_mb = os.path.getsize(path) / 1e6
    print(f"{path}: {size_mb:.0f} MB; fortunes corpus: {len(texts)} texts; {os.cpu_count()} CPUs")

    gensim_load, kv = best_time(lambda: KeyedVectors.load_word2vec_format(path, binary=False), args.load_repeats)
    ours_load, encoder = best_time(lambda: WordVectorEncoder(path, normalize=True).fit(), args.load_repeats)

    # Same vectors, bit for bit, on a sample of words (a one-word text's unnormalised mean is the vector itself).
    rng = np.random.RandomState(1)
    sample = [kv.index_to_key[i] for i in rng.choice(len(kv.index_to_key), 2000, replace=False)]
    raw = WordVectorEncoder(path, normalize=False).transform(sample)
    if not np.array_equal(raw, kv[sample]):
        print("loaded vectors differ from gensim's", file=sys.stderr)
        return 2

    gensim_time, expected = best_time(lambda: gensim_pooling(kv, texts), args.repeats)
    single = WordVectorEncoder(path, n_threads=1).fit()
    single_time, got_single = best_time(lambda: single.transform(texts), args.repeats)
    auto_time, got = best_time(lambda: encoder.transform(texts), args.repeats)
    if not (np.allclose(got, expected, atol=2e-6) and np.array_equal(got, got_single)):
        print(f"pooled rows differ from gensim's (max {np.abs(got - expected).max():.2e})", file=sys.stderr)
        return 2
    print(f"load   gensim {gensim_load:7.2f}s   ours {ours_load:6.2f}s   speed-up {gensim_load / ours_load:6.1f}x")
    print(f"encode gensim {gensim_time:7.3f}s   ours 1 thread {single_time:6.3f}s ({gensim_time / single_time:.1f}x)"
          f"   ours auto {auto_time:6.3f}s ({gensim_time / auto_time:.1f}x)")
    return 0 if ours_load < gensim_load and auto_time < gensim_time else 1


if __name__ == "__main__":
    sys.exit(main())
