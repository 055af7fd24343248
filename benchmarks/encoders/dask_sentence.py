"""The sentence-encoder pipeline on a 2-worker dask LocalCluster against one local process: equal results,
throughput and memory.

usage: python benchmarks/encoders/dask_sentence.py [--texts 2000] [--partitions 8] [--repeats 3]

A pipeline SentenceEncoder("all-MiniLM-L6-v2") + FeedForwardFinetuner(hidden_dim=50) is fitted on 200
fortunes of the walk-through's five categories, labelled by category, then embeds --texts texts spread
evenly over the whole fortunes corpus. Two modes, timed alternately in one run (local, dask, local,
dask, ...) so that load from other processes falls on both alike; medians reported:

  local   pipeline.transform(all texts) in this process; the encoder's automatic threads use every core
  dask    LocalCluster(n_workers=2, processes=True, threads_per_worker=1); the fitted pipeline is
          scattered once (pickled: the encoder as its parameters, the finetuner as its model bytes),
          with the encoder set to num_threads=1, so that each worker runs on one core; the texts
          travel from the client in --partitions partitions and each returns its float32 block

Equality: each worker's block is compared with pipeline.transform of the same partition in this
process (bit for bit), and the whole result with the one local call (max abs difference).
Peak RSS is VmHWM: of this process before the cluster starts (the local mode's), and of each
worker process after the runs (read with client.run). The cluster's start-up is reported apart.
"""
import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))
from corpus import fortunes_texts  # noqa: E402
from fortunes_data import load_fortunes  # noqa: E402


def peak_rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def embed_partition(partition, pipeline):
    """One block per partition, so that the client concatenates arrays, not rows."""
    return [pipeline.transform(list(partition))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import dask
    import dask.bag
    import distributed
    from distributed import Client, LocalCluster
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    from libembetter.finetune import FeedForwardFinetuner
    from libembetter.text import SentenceEncoder

    corpus = fortunes_texts()
    texts = [corpus[i] for i in np.linspace(0, len(corpus) - 1, args.texts).round().astype(int)]
    labelled, labels = load_fortunes()
    train, _ = train_test_split(np.arange(len(labelled)), train_size=200, stratify=labels, random_state=0)
    pipeline = make_pipeline(SentenceEncoder("all-MiniLM-L6-v2"), FeedForwardFinetuner(hidden_dim=50, random_state=0))
    pipeline.fit([labelled[i] for i in train], labels[train])
    print(f"{len(texts)} texts spread over the {len(corpus)} of the fortunes corpus, "
          f"{sum(len(t.encode()) for t in texts) / 1e6:.2f} MB; {args.partitions} partitions; "
          f"{os.cpu_count()} CPUs; dask {dask.__version__}, distributed {distributed.__version__}; "
          f"load average {os.getloadavg()[0]:.2f}")

    bag = dask.bag.from_sequence(texts, npartitions=args.partitions)
    partitions = [part.compute() for part in bag.to_delayed()]
    local = pipeline.transform(texts)  # warm: the encoder loads its model on first use
    local_rss = peak_rss_mb()

    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                           host="127.0.0.1")
    client = Client(cluster)
    startup = time.perf_counter() - start
    try:
        # One core per worker: two workers with automatic threads would each start two on two cores.
        shipped = client.scatter(copy.deepcopy(pipeline).set_params(sentenceencoder__num_threads=1),
                                 broadcast=True)
        times = {"local": [], "dask": []}
        blocks = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            local = pipeline.transform(texts)
            times["local"].append(time.perf_counter() - start)
            start = time.perf_counter()
            blocks = bag.map_partitions(embed_partition, shipped).compute()
            times["dask"].append(time.perf_counter() - start)
            print(f"local {times['local'][-1]:.2f} s, dask {times['dask'][-1]:.2f} s; "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
        worker_rss = sorted(client.run(peak_rss_mb).values())
    finally:
        client.close()
        cluster.close()

    pipeline.set_params(sentenceencoder__num_threads=1)
    same_blocks = all(np.array_equal(block, pipeline.transform(part)) for block, part in zip(blocks, partitions))
    distributed_result = np.concatenate(blocks)
    print(f"dask result: {distributed_result.shape} {distributed_result.dtype}; each partition equals a local "
          f"transform of it bit for bit: {same_blocks}; max abs difference to the one local call: "
          f"{float(np.abs(distributed_result - local).max()):.2g}")
    print(f"cluster start-up {startup:.1f} s (not timed below)")
    for mode in ("local", "dask"):
        median = statistics.median(times[mode])
        print(f"{mode:<6} median {median:.2f} s, {len(texts) / median:.0f} texts/s "
              f"(runs {', '.join(f'{t:.2f}' for t in times[mode])} s)")
    print(f"peak RSS: local process {local_rss:.0f} MB; dask workers {', '.join(f'{r:.0f}' for r in worker_rss)} MB")
    return 0 if same_blocks else 1


if __name__ == "__main__":
    sys.exit(main())
