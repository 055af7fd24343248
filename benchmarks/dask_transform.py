"""Transform throughput and memory: one process vs a dask.distributed LocalCluster of two worker processes.

usage: .venv/bin/python benchmarks/dask_transform.py [--rows 200000] [--partitions 16] [--repeats 3]

A pipeline HashingEncoder(n_features=1024) + FeedForwardFinetuner(hidden_dim=50)
is fitted on 2000 fortunes labelled by their category file, then embeds
`--rows` texts made from the fortunes corpus (each fortune with its row
number appended, so no two texts are the same). Measured, each in a fresh
process so that peak memory is its own:

  local, one call       pipeline.transform(all texts), default threads (the
                        hashing encoder and OpenBLAS use every core)
  local, one thread     the same with n_threads=1 and OPENBLAS_NUM_THREADS=1
  local, partitions     one thread, transform called per partition (the rows
                        dask gives each task), results concatenated
  dask, texts shipped   LocalCluster(n_workers=2, processes=True,
                        threads_per_worker=1), one thread per worker; the
                        texts travel from the client in the task graph
                        (dask.bag.from_sequence), the fitted pipeline is
                        scattered once (by pickle), every partition returns
                        its float32 block to the client
  dask, files on workers  the same cluster; the texts are in one JSON file
                        per partition, which the workers read, so only the
                        paths travel to them

Times are the best of --repeats runs, from handing over the texts to having
the whole n x 50 result in the client; the cluster's start-up is reported
apart. Peak RSS is the process's ru_maxrss (for the workers: each worker
process, read with client.run after the runs; the nanny processes that
supervise them are not counted). The run also checks that the dask result
equals the local per-partition result bit for bit.
"""
import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "encoders"))
from corpus import FORTUNES_DIR  # noqa: E402


def labelled_fortunes():
    """(texts, category of each text) over every category file of the fortunes package."""
    texts, labels = [], []
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.is_symlink() or not path.is_file() or path.suffix in (".dat", ".u8"):
            continue
        for text in path.read_text(encoding="utf-8").split("\n%\n"):
            if text.strip():
                texts.append(text.strip())
                labels.append(path.name)
    return texts, np.array(labels)


def benchmark_texts(rows):
    texts, _ = labelled_fortunes()
    return [f"{texts[i % len(texts)]} #{i}" for i in range(rows)]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def partition_bounds(rows, partitions):
    """(start, end) of each partition, cut the way dask.bag.from_sequence cuts a sequence."""
    size = -(-rows // partitions)
    return [(start, min(start + size, rows)) for start in range(0, rows, size)]


def run_local(pipeline_path, mode, rows, partitions, repeats, result_path):
    """Runs in its own process: time one local mode and write its numbers (and output) as JSON/npy."""
    with open(pipeline_path, "rb") as file:
        pipeline = pickle.load(file)
    texts = benchmark_texts(rows)
    if mode != "local, one call":
        pipeline.set_params(hashingencoder__n_threads=1)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        if mode == "local, partitions":
            result = np.concatenate([pipeline.transform(texts[a:b]) for a, b in partition_bounds(rows, partitions)])
        else:
            result = pipeline.transform(texts)
        best = min(best, time.perf_counter() - started)
    np.save(result_path + ".npy", result)
    with open(result_path, "w") as file:
        json.dump({"seconds": best, "peak_rss_mb": [peak_rss_mb()]}, file)


def transform_partition(texts, pipeline):
    return [pipeline.transform(list(texts))]


def load_and_transform(paths, pipeline):
    """The partition files in paths, read on the worker and embedded there."""
    blocks = []
    for path in paths:
        with open(path, encoding="utf-8") as file:
            blocks.append(pipeline.transform(json.load(file)))
    return blocks


def run_dask(pipeline, rows, partitions, repeats, scratch):
    import dask.bag
    from distributed import Client, LocalCluster

    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # for the worker processes, started below
    started = time.perf_counter()
    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                           host="127.0.0.1", silence_logs=40)
    client = Client(cluster)
    startup = time.perf_counter() - started
    pipeline.set_params(hashingencoder__n_threads=1)
    texts = benchmark_texts(rows)
    baseline = client.run(peak_rss_mb)
    remote_pipeline = client.scatter(pipeline, broadcast=True)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        bag = dask.bag.from_sequence(texts, npartitions=partitions)
        blocks = bag.map_partitions(transform_partition, remote_pipeline).compute()
        result = np.concatenate(blocks)
        best = min(best, time.perf_counter() - started)
    peaks = client.run(peak_rss_mb)

    # The usual scale-out shape: the data already sits in files the workers read; only paths travel.
    paths = []
    for number, (start, end) in enumerate(partition_bounds(rows, partitions)):
        paths.append(os.path.join(scratch, f"part-{number:03d}.json"))
        with open(paths[-1], "w", encoding="utf-8") as file:
            json.dump(texts[start:end], file)
    best_files = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        blocks = dask.bag.from_sequence(paths, npartitions=partitions).map_partitions(
            load_and_transform, remote_pipeline).compute()
        from_files = np.concatenate(blocks)
        best_files = min(best_files, time.perf_counter() - started)
    peaks_files = client.run(peak_rss_mb)
    client.close()
    cluster.close()
    texts_shipped = {"seconds": best, "startup_seconds": startup, "peak_rss_mb": sorted(peaks.values()),
                     "rss_before_mb": sorted(baseline.values()), "output": result}
    files_read = {"seconds": best_files, "peak_rss_mb": sorted(peaks_files.values()), "output": from_files}
    return texts_shipped, files_read


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--local", nargs=2, metavar=("PIPELINE", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.local:
        run_local(args.local[0], args.mode, args.rows, args.partitions, args.repeats, args.local[1])
        return

    from sklearn.pipeline import make_pipeline

    from libembetter.finetune import FeedForwardFinetuner
    from libembetter.text import HashingEncoder

    texts, labels = labelled_fortunes()
    train = np.random.RandomState(0).choice(len(texts), 2000, replace=False)
    pipeline = make_pipeline(HashingEncoder(n_features=1024),
                             FeedForwardFinetuner(hidden_dim=50, n_epochs=100, random_state=0))
    pipeline.fit([texts[i] for i in train], labels[train])
    print(f"{args.rows} texts, {args.partitions} partitions, best of {args.repeats}; "
          f"{os.cpu_count()} CPUs; pipeline pickle {len(pickle.dumps(pipeline)) / 1e6:.2f} MB")

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        pipeline_path = os.path.join(scratch, "pipeline.pkl")
        with open(pipeline_path, "wb") as file:
            pickle.dump(pipeline, file)
        for mode in ("local, one call", "local, one thread", "local, partitions"):
            env = dict(os.environ)
            if mode != "local, one call":
                env["OPENBLAS_NUM_THREADS"] = "1"
            result_path = os.path.join(scratch, "result.json")
            subprocess.run([sys.executable, __file__, "--local", pipeline_path, result_path, "--mode", mode,
                            "--rows", str(args.rows), "--partitions", str(args.partitions),
                            "--repeats", str(args.repeats)], check=True, env=env)
            with open(result_path) as file:
                results[mode] = json.load(file)
            results[mode]["output"] = np.load(result_path + ".npy")
        results["dask, texts shipped"], results["dask, files on workers"] = run_dask(
            pipeline, args.rows, args.partitions, args.repeats, scratch)

    reference = results["local, partitions"]["output"]
    print(f"{'mode':<24} {'seconds':>8} {'rows/s':>10}  peak RSS per process (MB)")
    for mode, numbers in results.items():
        rss = ", ".join(f"{value:.0f}" for value in numbers["peak_rss_mb"])
        print(f"{mode:<24} {numbers['seconds']:8.2f} {args.rows / numbers['seconds']:10.0f}  {rss}")
    extra = results["dask, texts shipped"]
    print(f"dask: cluster start-up {extra['startup_seconds']:.1f} s; worker RSS before the runs "
          f"{', '.join(f'{v:.0f}' for v in extra['rss_before_mb'])} MB (peaks are cumulative: the files run "
          "came second)")
    for mode in ("dask, texts shipped", "dask, files on workers"):
        output = results[mode]["output"]
        print(f"{mode}: equals the local per-partition result bit for bit: {np.array_equal(output, reference)}; "
              f"max |difference| to local one call: {float(np.abs(output - results['local, one call']['output']).max()):.3g}")


if __name__ == "__main__":
    main()
