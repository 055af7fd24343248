"""SentenceEncoder against sentence-transformers on PyTorch (CPU), all-MiniLM-L6-v2 over the fortunes corpus.

Both run in this process on the same texts at batch size 32 with every core:
libembetter's SentenceEncoder (automatic threads) and sentence-transformers'
SentenceTransformer.encode (torch.set_num_threads(cpu count)). Every row of
ours is first checked against sentence-transformers' (cosine >= 0.99999,
max abs difference <= 1e-4); only then are texts per second reported, with
the peak RSS after each encoder (ours runs first, so the first figure is
ours alone) and the BLAS core libembetter runs. Exits 1 when ours falls
short of --target times sentence-transformers' throughput (default 2).

Needs PyTorch, so it is never part of the test command. Run it in a venv made so:
  python3 -m venv VENV && VENV/bin/pip install torch==2.13.0   # first: any other spec pulls CUDA
  VENV/bin/pip install sentence-transformers . && bash scripts/fetch-models.sh all-MiniLM-L6-v2
  VENV/bin/python benchmarks/encoders/bench_sentence.py [--limit N] [--repeats R]
"""
import argparse
import os
import resource
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import best_time, fortunes_texts  # noqa: E402

from libembetter._config import blas_config  # noqa: E402
from libembetter.text import SentenceEncoder, model_cache_dir  # noqa: E402


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=2000, help="first N texts of the corpus (0: all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--target", type=float, default=2.0)
    args = parser.parse_args()
    texts = fortunes_texts()
    if args.limit:
        texts = texts[: args.limit]
    cpus = os.cpu_count() or 1
    blas = blas_config()
    print(f"fortunes corpus: {len(texts)} texts, {sum(len(t.encode()) for t in texts) / 1e6:.2f} MB; "
          f"batch 32; {cpus} CPUs; best of {args.repeats} runs")
    print(f"libembetter BLAS: {blas['library']} {blas['version']}, core {blas['core']}, "
          f"CPU {blas['cpu_vector_isa']}")

    ours_encoder = SentenceEncoder("all-MiniLM-L6-v2", batch_size=32).fit()
    ours_time, ours = best_time(lambda: ours_encoder.transform(texts), args.repeats)
    ours_rss = peak_rss_mb()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(cpus)
    reference_model = SentenceTransformer(str(model_cache_dir() / "all-MiniLM-L6-v2"), device="cpu")
    reference_time, reference = best_time(
        lambda: reference_model.encode(texts, batch_size=32, convert_to_numpy=True), args.repeats
    )
    both_rss = peak_rss_mb()

    cosine = np.sum(ours * reference, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    worst_diff = float(np.abs(ours - reference).max())
    if cosine.min() < 0.99999 or worst_diff > 1e-4:
        print(f"outputs differ: worst cosine {cosine.min():.8f}, max abs difference {worst_diff:.3g}", file=sys.stderr)
        return 2
    ours_rate, reference_rate = len(texts) / ours_time, len(texts) / reference_time
    speedup = ours_rate / reference_rate
    print(f"equal rows: worst cosine {cosine.min():.9f}, max abs difference {worst_diff:.3g}")
    print(f"libembetter SentenceEncoder:  {ours_rate:8.1f} texts/s ({ours_time:.2f} s), peak RSS {ours_rss:.0f} MB")
    print(f"sentence-transformers {torch.__version__}: {reference_rate:8.1f} texts/s ({reference_time:.2f} s), "
          f"peak RSS with both loaded {both_rss:.0f} MB")
    verdict = "meets" if speedup >= args.target else "MISSES"
    print(f"speed-up {speedup:.2f}x; {verdict} the {args.target:g}x target")
    return 0 if speedup >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
