"""embetter's benchmark suite: every figure a median of repeats, every comparison a ratio from this one run.

Sections:
  1. the seed workload (FeedForwardFinetuner, 200 x 384 -> 200, 500 epochs, full batch
     and batch_size 32) against PyTorch and scikit-learn's MLPClassifier;
  2. ContrastiveFinetuner (defaults) on 200 and 10,000 rows against PyTorch;
  3. transform throughput, 100,000 x 384 -> 200, beside cblas_sgemm at that shape;
  4. training GFLOP/s of (1) beside cblas_sgemm alone at the training shapes, then (with 1) the
     machine's single-precision FMA peak (1 core and all cores; benchmarks/peak_flops.c) and the upper
     bound it puts on the speed-up over PyTorch: PyTorch's time over the time the training's FLOPs
     take at 100% of the all-core peak, beside the 10x / 5x targets;
  5. the encoder benchmarks of benchmarks/encoders/ (against scikit-learn and gensim);
  6. peak memory of a contrastive fit on 10,000 x 384, n_neg 3 versus 12;
  7. quality on the walk-through's fortunes data, mean of 5 seeds, against PyTorch;
  8. sections 1 and 4 again in child processes under OPENBLAS_CORETYPE=Prescott and the native core.

BLAS threads: embetter and PyTorch are timed with 1 and 2 BLAS/intra-op
threads (threadpoolctl / torch.set_num_threads), embetter also with its
default policy (OpenBLAS's threads, but 1 while training on small products;
python/embetter/_config.py). The ratios compare embetter's default policy
with PyTorch's faster setting. Run (see docs/benchmarks.md):

    benchmarks/run.sh              # everything, ~10 minutes on 2 cores
    benchmarks/run.sh --quick      # fewer repeats, smaller sizes: a smoke run
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import libembetter  # noqa: E402
from libembetter import _config  # noqa: E402
from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner  # noqa: E402

import sgemm_native  # noqa: E402

try:
    import torch

    from torch_reference import TorchContrastive, TorchFeedForward
except ImportError:  # the suite still runs; the PyTorch columns say why they are empty
    torch = None

N_FEATURES, HIDDEN, N_CLASSES = 384, 200, 5
SEED_ROWS, SEED_EPOCHS = 200, 500


# A setting whose runs pass this many seconds in total stops early (PyTorch with 2 threads on a busy
# 2-core machine took over a minute per fit); the figure is then the median of the runs made.
TIME_BUDGET = 60.0


def median_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        if sum(times) > TIME_BUDGET:
            break
    return float(np.median(times))


def blobs(rows, n_features=N_FEATURES, n_classes=N_CLASSES, seed=0):
    """Gaussian class clusters buried in noise: a stand-in for sentence embeddings with labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, n_features)).astype(np.float32)
    y = np.arange(rows) % n_classes
    X = centres[y] * 0.5 + rng.standard_normal((rows, n_features)).astype(np.float32)
    return X.astype(np.float32), y


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def default_threads_label():
    return f"auto ({_config.blas_config()['threads']})"


def torch_threads(threads):
    torch.set_num_threads(threads)


def verdict(ok):
    return "meets" if ok else "MISSES"


class Table:
    def __init__(self, title, columns, level=2):
        self.title, self.columns, self.rows = title, columns, []
        self.level = level

    def add(self, *cells):
        self.rows.append([str(c) for c in cells])

    def print(self):
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]
        print(f"\n{'#' * self.level} {self.title}\n")
        print("| " + " | ".join(c.ljust(w) for c, w in zip(self.columns, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in self.rows:
            print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        sys.stdout.flush()


# ---- 1 and 4: the seed workload ---------------------------------------------------------------

@contextmanager
def embetter_threads(threads):
    """threads BLAS threads for libembetter exactly (its small-product policy off; 1 also holds the C library's own
    training threads), or "auto": its default policy."""
    if threads == "auto":
        yield
        return
    previous = os.environ.get("EMBETTER_TRAINING_THREADS")
    os.environ["EMBETTER_TRAINING_THREADS"] = "keep"
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        if previous is None:
            del os.environ["EMBETTER_TRAINING_THREADS"]
        else:
            os.environ["EMBETTER_TRAINING_THREADS"] = previous


def embetter_feedforward_seconds(X, y, batch_size, threads, repeats, epochs=SEED_EPOCHS):
    with embetter_threads(threads):
        return median_time(lambda: FeedForwardFinetuner(hidden_dim=HIDDEN, n_epochs=epochs, batch_size=batch_size,
                                                        random_state=0).fit(X, y), repeats)


def sgemm_feedforward_seconds(batch, threads):
    with threadpool_limits(limits=threads, user_api="blas"):
        return sgemm_native.feedforward_gemm_seconds(SEED_EPOCHS, SEED_ROWS, batch, N_FEATURES, HIDDEN, N_CLASSES)


def seed_workload(args, results):
    X, y = blobs(SEED_ROWS)
    table = Table(f"1. Seed workload: FeedForwardFinetuner {SEED_ROWS} x {N_FEATURES} -> {HIDDEN}, "
                  f"{N_CLASSES} classes, {SEED_EPOCHS} epochs (median of {args.repeats})",
                  ["batch", "implementation", "threads", "seconds", "vs embetter"])
    limit_table = Table("4. Training GFLOP/s against cblas_sgemm alone at the training shapes "
                        f"(same products, same threads; median of {args.repeats})",
                        ["batch", "threads", "embetter GFLOP/s", "sgemm-only GFLOP/s", "embetter / sgemm", "target 70%"])
    for batch_size in (None, 32):
        label = "full" if batch_size is None else str(batch_size)
        batch = SEED_ROWS if batch_size is None else batch_size
        # The settings and the sgemm-only twins take turns, so a busy moment of the machine hits all alike.
        # "auto" is what a caller gets without choosing: OpenBLAS's threads, but 1 while training on small products.
        runs = {key: [] for key in ("auto", 1, 2, "gemm1", "gemm2")}
        for _ in range(args.repeats):
            for t in ("auto", 1, 2):
                runs[t].append(embetter_feedforward_seconds(X, y, batch_size, t, 1))
                if t != "auto":
                    runs[f"gemm{t}"].append(sgemm_feedforward_seconds(batch, t))
        medians = {key: float(np.median(values)) for key, values in runs.items()}
        ours = {t: medians[t] for t in ("auto", 1, 2)}
        gemms = {t: medians[f"gemm{t}"] for t in (1, 2)}
        best_threads = "auto"
        for t in ("auto", 1, 2):
            table.add(label, "embetter" + (" (default policy)" if t == "auto" else ""),
                      default_threads_label() if t == "auto" else t, f"{ours[t]:.3f}",
                      f"{ours[t] / ours[best_threads]:.2f}x")
        flops = sgemm_native.feedforward_flops(SEED_EPOCHS, SEED_ROWS, batch, N_FEATURES, HIDDEN, N_CLASSES)
        for t in (1, 2):
            gemm = gemms[t]
            share = gemm / ours[t]
            limit_table.add(label, t, f"{flops / ours[t] / 1e9:.1f}", f"{flops / gemm / 1e9:.1f}",
                            f"{100 * share:.0f}%", verdict(share >= 0.70))
            results[f"limit_{label}_{t}"] = share
        if torch is not None:
            torch_times = {}
            for t in (1, 2):
                torch_threads(t)
                torch_times[t] = median_time(lambda: TorchFeedForward(hidden_dim=HIDDEN, n_epochs=SEED_EPOCHS,
                                                                      batch_size=batch_size).fit(X, y), args.repeats)
                table.add(label, "PyTorch", t, f"{torch_times[t]:.3f}", f"{torch_times[t] / ours[best_threads]:.2f}x")
            results[f"torch_{label}"] = min(torch_times.values()) / ours[best_threads]
            results[f"torch_seconds_{label}"] = dict(torch_times)
        else:
            table.add(label, "PyTorch", "-", "not installed (benchmarks/install-bench-deps.sh)", "-")
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        def mlp():
            # No early stop (n_iter_no_change above max_iter) and no L2 term, so it runs exactly the epochs asked.
            model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="logistic", solver="adam", alpha=0.0,
                                  learning_rate_init=0.01, batch_size=batch, max_iter=SEED_EPOCHS,
                                  n_iter_no_change=10 * SEED_EPOCHS, tol=0.0, shuffle=True, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X, y)
            assert model.n_iter_ == SEED_EPOCHS, model.n_iter_

        mlp_times = {}
        for t in (1, 2):
            with threadpool_limits(limits=t, user_api="blas"):
                mlp_times[t] = median_time(mlp, args.repeats)
            table.add(label, "sklearn MLPClassifier", t, f"{mlp_times[t]:.3f}",
                      f"{mlp_times[t] / ours[best_threads]:.2f}x")
        results[f"mlp_{label}"] = min(mlp_times.values()) / ours[best_threads]
        results[f"ours_{label}"] = ours
    table.print()
    lines = []
    if torch is not None:
        lines.append(f"- vs PyTorch, batch 32: {results['torch_32']:.1f}x faster (target 10x: "
                     f"{verdict(results['torch_32'] >= 10)}); full batch: {results['torch_full']:.1f}x "
                     f"(target 5x: {verdict(results['torch_full'] >= 5)})")
    lines.append(f"- vs MLPClassifier: {results['mlp_32']:.1f}x at batch 32, {results['mlp_full']:.1f}x full batch "
                 f"(target > 1x: {verdict(min(results['mlp_32'], results['mlp_full']) > 1)})")
    print("\n" + "\n".join(lines))
    limit_table.print()


PEAK_TARGETS = {"full": 5, "32": 10}


def hardware_bound(args, results):
    """The machine's FMA peak and the largest speed-up over section 1's PyTorch times it leaves room for."""
    isa = sgemm_native.peak_isa()
    cpus = sgemm_native.peak_cpus()
    runs = 2 * args.repeats + 1
    peaks = {1: sgemm_native.peak_gflops(1, runs), cpus: sgemm_native.peak_gflops(cpus, runs)}
    all_core = peaks[cpus]
    one_core_bounds = []
    table = Table(f"Hardware peak and the bound it sets (single-precision FMA loop, {isa or 'no FMA ISA'}; "
                  f"best of {runs} runs of ~0.1 s)",
                  ["batch", "GFLOP per fit", "1-core peak GFLOP/s", f"{cpus}-core peak GFLOP/s",
                   f"s at {cpus}-core peak", "PyTorch s (faster threads)", "bound: PyTorch s / s at peak",
                   "target", "verdict"], level=3)
    for label, batch in (("full", SEED_ROWS), ("32", 32)):
        flops = sgemm_native.feedforward_flops(SEED_EPOCHS, SEED_ROWS, batch, N_FEATURES, HIDDEN, N_CLASSES)
        target = PEAK_TARGETS[label]
        if all_core is None:
            table.add(label, f"{flops / 1e9:.2f}", "unsupported", "unsupported", "-", "-", "-", f"{target}x",
                      "no bound: neither AVX-512F nor AVX2+FMA to measure a peak with")
            continue
        floor = flops / (all_core * 1e9)
        torch_times = results.get(f"torch_seconds_{label}")
        if torch_times is None:
            torch_cell, bound_cell = "not installed (benchmarks/install-bench-deps.sh)", "-"
            verdict_cell = "no bound: PyTorch not installed"
        else:
            threads = min(torch_times, key=torch_times.get)
            torch_seconds = torch_times[threads]
            bound = torch_seconds / floor
            needed = 100 * target / bound
            results[f"peak_bound_{label}"] = bound
            one_core_bounds.append(f"{torch_seconds / (flops / (peaks[1] * 1e9)):.1f}x at "
                                   f"{'full batch' if label == 'full' else 'batch ' + label} "
                                   f"(target {target}x)")
            torch_cell = f"{torch_seconds:.3f} ({threads} thread{'s' if threads > 1 else ''})"
            bound_cell = f"{bound:.1f}x"
            verdict_cell = (f"reachable only above {needed:.0f}% of peak" if needed <= 100
                            else f"unreachable: needs {needed:.0f}% of peak")
        table.add(label, f"{flops / 1e9:.2f}", f"{peaks[1]:.1f}", f"{all_core:.1f}", f"{floor:.4f}", torch_cell,
                  bound_cell, f"{target}x", verdict_cell)
    results["peak_gflops"] = peaks
    table.print()
    if all_core is not None:
        # The bound is generous on purpose: it grants embetter every core at full FMA rate and no work but the
        # products, so a target it rules out stays out of reach whatever the implementation.
        print(f"\n- peak: {runs} runs of independent {isa} FMA chains in registers (no memory traffic) on 1 "
              f"thread and on {cpus} threads pinned one per CPU, the best run kept; the bound assumes the "
              f"training's FLOPs alone at 100% of the {cpus}-core peak, so real code (loads, sigmoid, Adam) "
              "stays below it")
        if one_core_bounds and cpus > 1:
            # embetter's default policy trains these small products on 1 thread (section 1's "auto"), so the
            # 1-core bound is the one that policy can approach.
            print(f"- the same bound at the 1-core peak: {', '.join(one_core_bounds)}")
        sys.stdout.flush()


# ---- 2: contrastive ---------------------------------------------------------------------------------

def contrastive(args, results):
    table = Table(f"2. ContrastiveFinetuner, defaults (hidden_dim = input, n_neg 3, 20 epochs, full batch), "
                  f"{N_FEATURES} columns (median of {args.repeats})",
                  ["rows", "implementation", "threads", "seconds", "vs embetter"])
    for rows in (200, args.large_rows):
        X, y = blobs(rows)
        repeats = args.repeats if rows <= 1000 else max(1, args.repeats // 2 + 1)
        runs = {t: [] for t in ("auto", 1, 2)}
        for _ in range(repeats):
            for t in runs:
                with embetter_threads(t):
                    runs[t].append(median_time(lambda: ContrastiveFinetuner(random_state=0).fit(X, y), 1))
        ours = {t: float(np.median(values)) for t, values in runs.items()}
        best = ours["auto"]
        for t in ("auto", 1, 2):
            table.add(rows, "embetter" + (" (default policy)" if t == "auto" else ""),
                      default_threads_label() if t == "auto" else t, f"{ours[t]:.3f}", f"{ours[t] / best:.2f}x")
        if torch is not None:
            torch_times = {}
            for t in (1, 2):
                torch_threads(t)
                torch_times[t] = median_time(lambda: TorchContrastive().fit(X, y), repeats)
                table.add(rows, "PyTorch", t, f"{torch_times[t]:.3f}", f"{torch_times[t] / best:.2f}x")
            results[f"contrastive_{rows}"] = min(torch_times.values()) / best
    table.print()
    if torch is not None:
        print("\n" + "\n".join(
            f"- {rows} rows: {results[f'contrastive_{rows}']:.1f}x faster than PyTorch (target 10x: "
            f"{verdict(results[f'contrastive_{rows}'] >= 10)})" for rows in (200, args.large_rows)))


# ---- 3: transform -----------------------------------------------------------------------------------

# OpenBLAS's idle worker threads spin for about 0.1 s after each threaded product before they sleep
# (measured: a 2-thread transform started 0-0.05 s after one ran 30% slower, from 0.1 s on at full speed),
# taking a core from whatever runs next. Each transform is timed once after that settles and once right
# after a threaded product, and both are printed.
OPENBLAS_SETTLE_SECONDS = 0.2


def transform(args, results):
    rows = args.transform_rows
    X_fit, y_fit = blobs(SEED_ROWS)
    model = FeedForwardFinetuner(hidden_dim=HIDDEN, n_epochs=5, random_state=0).fit(X_fit, y_fit)
    X = np.random.default_rng(1).standard_normal((rows, N_FEATURES)).astype(np.float32)
    flops = 2.0 * rows * N_FEATURES * HIDDEN
    table = Table(f"3. transform {rows:,} x {N_FEATURES} -> {HIDDEN} (median of {args.repeats})",
                  ["threads", "embetter rows/s", "embetter GFLOP/s", "sgemm GFLOP/s", "embetter / sgemm",
                   "target 70%", "right after a threaded product"])
    gemm_seconds = sgemm_native.sgemm_timer(rows, HIDDEN, N_FEATURES)
    for t in (1, 2):
        with threadpool_limits(limits=t, user_api="blas"):
            model.transform(X)  # the first call after the thread change, as for the product's warm-up
            settled, right_after, gemm = [], [], []
            for _ in range(args.repeats):
                gemm.append(gemm_seconds(1))
                right_after.append(median_time(lambda: model.transform(X), 1))
                gemm_seconds(1)
                time.sleep(OPENBLAS_SETTLE_SECONDS)
                settled.append(median_time(lambda: model.transform(X), 1))
        ours, hot, gemm = (float(np.median(v)) for v in (settled, right_after, gemm))
        share = gemm / ours
        results[f"transform_{t}"] = share
        table.add(t, f"{rows / ours:,.0f}", f"{flops / ours / 1e9:.1f}", f"{flops / gemm / 1e9:.1f}",
                  f"{100 * share:.0f}%", verdict(share >= 0.70),
                  f"{flops / hot / 1e9:.1f} GFLOP/s ({100 * gemm / hot:.0f}%)")
    table.print()


# ---- 5: encoders ------------------------------------------------------------------------------------

def encoders(args):
    print("\n## 5. Encoders (benchmarks/encoders/, their own output)\n")
    sys.stdout.flush()
    directory = os.path.join(HERE, "encoders")
    scripts = sorted(name for name in os.listdir(directory) if name.startswith("bench_") and name.endswith(".py"))
    if not scripts:
        print("no encoder benchmarks found in benchmarks/encoders/")
    for name in scripts:
        print(f"$ {os.path.basename(sys.executable)} benchmarks/encoders/{name}")
        sys.stdout.flush()
        completed = subprocess.run([sys.executable, os.path.join(directory, name)], text=True,
                                   capture_output=True)
        print(completed.stdout.rstrip())
        if completed.returncode != 0:
            print(f"(exit status {completed.returncode}) {completed.stderr.strip()[-800:]}")
        sys.stdout.flush()


# ---- 6: memory --------------------------------------------------------------------------------------

def memory(args, results):
    table = Table(f"6. Peak memory of ContrastiveFinetuner.fit on {args.large_rows:,} x {N_FEATURES} "
                  "(fresh process each; peak RSS, VmHWM)",
                  ["n_neg", "pairs per epoch", "peak RSS before fit", "peak RSS after fit", "growth during fit"])
    growth = {}
    for n_neg in (3, 12):
        out = subprocess.run([sys.executable, os.path.join(HERE, "memory_probe.py"), str(args.large_rows), str(n_neg)],
                             capture_output=True, text=True, check=True).stdout
        report = json.loads(out.strip().splitlines()[-1])
        growth[n_neg] = (report["peak_kib"] - report["baseline_kib"]) / 1024
        table.add(n_neg, f"{args.large_rows * (n_neg + 1):,}", f"{report['baseline_kib'] / 1024:.1f} MiB",
                  f"{report['peak_kib'] / 1024:.1f} MiB", f"{growth[n_neg]:.1f} MiB")
    table.print()
    X_bytes = args.large_rows * N_FEATURES * 4 / 2**20
    print(f"\n- growth from n_neg 3 to 12 (4x the pairs): {growth[12] - growth[3]:+.1f} MiB; X itself is "
          f"{X_bytes:.1f} MiB. The pair list (12 bytes a pair) is the only buffer sized by pairs.")
    results["memory_growth"] = growth


# ---- 7: quality -------------------------------------------------------------------------------------

def quality(args, results):
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples", "python"))
    try:
        from fortunes_data import FortunesNotInstalled, load_fortunes, make_text_encoder
        texts, labels = load_fortunes()
    except (ImportError, FortunesNotInstalled, OSError) as error:
        print(f"\n## 7. Quality: skipped ({error})")
        return
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import train_test_split

    X = make_text_encoder().transform(texts)
    seeds = range(args.quality_seeds)

    def scores(make, X_train, y_train, X_held, y_held):
        model = make().fit(X_train, y_train)
        train_embedding, held_embedding = model.transform(X_train), model.transform(X_held)
        accuracy = LogisticRegression(max_iter=2000).fit(train_embedding, y_train).score(held_embedding, y_held)
        points = PCA(n_components=2, random_state=0).fit_transform(held_embedding)
        return accuracy, silhouette_score(points, y_held)

    candidates = {
        "feed-forward, embetter": lambda s: (lambda: FeedForwardFinetuner(hidden_dim=50, random_state=s)),
        "contrastive, embetter": lambda s: (lambda: ContrastiveFinetuner(random_state=s)),
    }
    if torch is not None:
        torch_threads(1)
        candidates["feed-forward, PyTorch"] = lambda s: (lambda: TorchFeedForward(hidden_dim=50, seed=s))
        candidates["contrastive, PyTorch"] = lambda s: (lambda: TorchContrastive(seed=s))
    measured = {name: [] for name in candidates}
    for seed in seeds:
        train_idx, held_idx = train_test_split(np.arange(len(texts)), train_size=200, test_size=2000,
                                               stratify=labels, random_state=seed)
        split = (X[train_idx], labels[train_idx], X[held_idx], labels[held_idx])
        for name, make in candidates.items():
            measured[name].append(scores(make(seed), *split))
    table = Table(f"7. Quality on the walk-through's fortunes data (200 training rows, 2000 held out, "
                  f"mean +- sd over {len(seeds)} seeds)",
                  ["finetuner", "held-out logreg accuracy", "PCA silhouette"])
    for name, values in measured.items():
        values = np.array(values)
        table.add(name, f"{values[:, 0].mean():.3f} +- {values[:, 0].std(ddof=1):.3f}",
                  f"{values[:, 1].mean():+.3f} +- {values[:, 1].std(ddof=1):.3f}")
    table.print()
    results["quality"] = {name: np.array(v).mean(axis=0).tolist() for name, v in measured.items()}


# ---- 8: coretypes -----------------------------------------------------------------------------------

def coretype_child(args):
    """Sections 1 (embetter only) and 4 in this process, as JSON: run under a chosen OPENBLAS_CORETYPE."""
    X, y = blobs(SEED_ROWS)
    report = {"core": _config.blas_config()["core"]}
    for batch_size in (None, 32):
        label = "full" if batch_size is None else "32"
        batch = SEED_ROWS if batch_size is None else batch_size
        seconds = embetter_feedforward_seconds(X, y, batch_size, 1, args.repeats)
        with threadpool_limits(limits=1, user_api="blas"):
            gemm = float(np.median([sgemm_native.feedforward_gemm_seconds(
                SEED_EPOCHS, SEED_ROWS, batch, N_FEATURES, HIDDEN, N_CLASSES) for _ in range(args.repeats)]))
        report[label] = {"seconds": seconds, "sgemm_seconds": gemm}
    print(json.dumps(report))


def coretypes(args):
    isa = _config.blas_config()["cpu_vector_isa"]
    native = {"avx512": "SkylakeX", "avx2": "Haswell"}.get(isa)
    settings = ["Prescott"] + ([native] if native else [])
    table = Table(f"8. The seed workload under OPENBLAS_CORETYPE (1 BLAS thread; median of {args.repeats})",
                  ["OPENBLAS_CORETYPE", "core reported", "batch", "embetter s", "sgemm-only s", "vs native"])
    reports = {}
    for setting in settings:
        env = dict(os.environ, OPENBLAS_CORETYPE=setting)
        command = [sys.executable, "-W", "ignore", __file__, "--coretype-child", "--repeats", str(args.repeats)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        reports[setting] = json.loads(out.strip().splitlines()[-1])
    reference = reports.get(native)
    for setting, report in reports.items():
        for label in ("full", "32"):
            slower = "" if reference is None else f"{report[label]['seconds'] / reference[label]['seconds']:.2f}x"
            table.add(setting, report["core"], label, f"{report[label]['seconds']:.3f}",
                      f"{report[label]['sgemm_seconds']:.3f}", slower)
    table.print()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats, 2,000 instead of 10,000 rows, 2 seeds")
    parser.add_argument("--only", default="1,2,3,5,6,7,8", help="comma-separated sections to run (4 runs with 1)")
    parser.add_argument("--coretype-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.coretype_child:
        coretype_child(args)
        return 0
    args.large_rows, args.transform_rows, args.quality_seeds = 10_000, 100_000, 5
    if args.quick:
        args.repeats, args.large_rows, args.transform_rows, args.quality_seeds = 2, 2_000, 20_000, 2
    sgemm_native.load()
    blas = _config.blas_config()
    print("# embetter benchmark suite\n")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"- embetter {libembetter.__version__}; Python {platform.python_version()}; numpy {np.__version__}"
          + (f"; torch {torch.__version__}" if torch is not None else "; torch not installed"))
    print(f"- BLAS: {blas['library']} {blas['version']}, core {blas['core']}, {blas['threading']}, "
          f"{blas['threads']} threads by default; CPU vector ISA {blas['cpu_vector_isa']}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    message = _config.slow_blas_message(blas)
    if message:
        print(f"- WARNING: {message}")
    print(f"- every time is the median of {args.repeats} runs (fewer when a setting's runs pass "
          f"{TIME_BUDGET:.0f} s); ratios compare figures of this run")
    sections = set(args.only.split(","))
    results = {}
    if "1" in sections:
        seed_workload(args, results)
        hardware_bound(args, results)
    if "2" in sections:
        contrastive(args, results)
    if "3" in sections:
        transform(args, results)
    if "5" in sections:
        encoders(args)
    if "6" in sections:
        memory(args, results)
    if "7" in sections:
        quality(args, results)
    if "8" in sections:
        coretypes(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
