"""Fine-tune a text embedding on 200 labelled fortunes and see what it buys.

The story, step by step:

1. encode every text with embetter's HashingEncoder (stateless hashed
   character n-grams, dense float32);
2. keep 200 labelled rows for training and 2000 held-out rows for judging;
3. fit a FeedForwardFinetuner on the 200 rows, then a narrow one (hidden_dim=10);
4. put encoder + finetuner + PCA in one scikit-learn pipeline;
5. train a finetuner by streaming minibatches through partial_fit;
6. fit a ContrastiveFinetuner.

For every embedding it reports three numbers on the held-out rows:
  - accuracy of a LogisticRegression (default settings) fitted on the 200
    transformed training rows;
  - accuracy of 5-nearest-neighbour voting among those 200 rows by cosine
    similarity, which is how an embedding serves search and deduplication;
  - the silhouette score of the labels in the 2-D PCA projection of the
    held-out rows (higher means the categories sit apart in the plot).
It also prints, as an honest yardstick, the raw features' accuracy with the
LogisticRegression's C tuned by cross-validation on the 200 rows. The scatter
plots are written as PNG files.

Run:  python finetune_walkthrough.py [--out DIR] [--quick] [--seed N] [--fortunes-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from fortunes_data import FORTUNES_DIR, FortunesNotInstalled, load_fortunes  # noqa: E402

from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner  # noqa: E402
from libembetter.text import HashingEncoder  # noqa: E402

N_TRAIN = 200
N_HELD_OUT = 2000

# Hashed character 2- to 4-grams, 1024 columns, unit-length rows; all counts
# positive (alternate_sign=False), the features these numbers were first
# measured on.
ENCODER_SETTINGS = {"analyzer": "char_wb", "ngram_range": (2, 4), "n_features": 1024, "alternate_sign": False}

# Epoch counts of the full run and of --quick (the test's reduced run).
FULL = {"feedforward": 500, "stream_passes": 100, "contrastive": 20}
QUICK = {"feedforward": 50, "stream_passes": 10, "contrastive": 10}


class Report:
    """Collects one row per embedding and draws its held-out PCA scatter."""

    def __init__(self, out_dir: Path, y_train, y_held_out):
        self.out_dir = out_dir
        self.y_train = y_train
        self.y_held_out = y_held_out
        self.categories = sorted(set(y_held_out))
        self.rows: list[tuple[str, int, float | None, float | None, float, str]] = []
        self.panels: list[tuple[str, np.ndarray, float]] = []

    def add(self, name: str, train_embedding, held_out_embedding, png_name: str):
        classifier = LogisticRegression(max_iter=2000)
        classifier.fit(train_embedding, self.y_train)
        accuracy = classifier.score(held_out_embedding, self.y_held_out)
        neighbours = KNeighborsClassifier(n_neighbors=5, metric="cosine")
        neighbours.fit(train_embedding, self.y_train)
        knn_accuracy = neighbours.score(held_out_embedding, self.y_held_out)
        points = PCA(n_components=2, random_state=0).fit_transform(held_out_embedding)
        self.add_points(name, held_out_embedding.shape[1], accuracy, knn_accuracy, points, png_name)
        return accuracy

    def add_points(self, name, dims, accuracy, knn_accuracy, points, png_name):
        silhouette = silhouette_score(points, self.y_held_out)
        self.rows.append((name, dims, accuracy, knn_accuracy, silhouette, png_name))
        self.panels.append((name, points, silhouette))
        figure, axes = plt.subplots(figsize=(5.5, 4.5), dpi=80)
        self._scatter(axes, name, points, silhouette)
        axes.legend(loc="best", fontsize=7, markerscale=2, framealpha=0.8)
        figure.tight_layout()
        figure.savefig(self.out_dir / png_name)
        plt.close(figure)

    def _scatter(self, axes, name, points, silhouette):
        for category in self.categories:
            mask = self.y_held_out == category
            axes.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.6, label=category)
        axes.set_title(f"{name}\nsilhouette {silhouette:+.3f}", fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])

    def write_overview(self, png_name: str):
        """All panels in one figure, for side-by-side comparison."""
        columns = 3
        rows = -(-len(self.panels) // columns)
        figure, grid = plt.subplots(rows, columns, figsize=(4 * columns, 3.6 * rows), dpi=70)
        grid = np.atleast_2d(grid)
        for axes, (name, points, silhouette) in zip(grid.flat, self.panels):
            self._scatter(axes, name, points, silhouette)
        for axes in list(grid.flat)[len(self.panels):]:
            axes.axis("off")
        handles, labels = grid.flat[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=len(labels), markerscale=3)
        figure.tight_layout(rect=(0, 0.05, 1, 1))
        figure.savefig(self.out_dir / png_name)
        plt.close(figure)

    def print_table(self):
        print()
        def shown(value):
            return "-" if value is None else f"{value:.3f}"

        print(f"{'embedding':<36} {'dims':>5} {'logreg':>7} {'5-NN':>6} {'silhouette':>11}  plot")
        for name, dims, accuracy, knn_accuracy, silhouette, png_name in self.rows:
            print(f"{name:<36} {dims:>5} {shown(accuracy):>7} {shown(knn_accuracy):>6} "
                  f"{silhouette:>+11.3f}  {png_name}")


def stream_in_batches(finetuner, X, y, classes, batch_rows, passes, rng):
    """Train by partial_fit only, as if the rows arrived a minibatch at a time.

    Each pass visits the rows in a fresh order; the first call must name every
    class because the first batch need not contain them all.
    """
    first = True
    for _ in range(passes):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_rows):
            batch = order[start : start + batch_rows]
            if first:
                finetuner.partial_fit(X[batch], y[batch], classes=classes)
                first = False
            else:
                finetuner.partial_fit(X[batch], y[batch])
    return finetuner


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("walkthrough-output"),
                        help="directory for the PNG plots (created if missing; default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer epochs: a reduced run for tests")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the train/held-out split and of every finetuner (default %(default)s)")
    parser.add_argument("--fortunes-dir", type=Path, default=FORTUNES_DIR,
                        help="where the fortunes category files are (default %(default)s)")
    args = parser.parse_args(argv)
    epochs = QUICK if args.quick else FULL

    # 1. Encode. The hashing encoder learns nothing, so encoding every text
    #    up front leaks nothing from the held-out rows.
    try:
        texts, labels = load_fortunes(directory=args.fortunes_dir)
    except FortunesNotInstalled as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    encoder = HashingEncoder(**ENCODER_SETTINGS)
    X = encoder.transform(texts)
    print(f"fortunes: {len(texts)} texts in {len(set(labels))} categories, "
          f"encoded to {X.shape[1]} dims")

    # 2. 200 labelled rows to learn from, 2000 held-out rows to judge by,
    #    both with the categories in their corpus proportions.
    indices = np.arange(len(texts))
    train_idx, held_idx = train_test_split(
        indices, train_size=N_TRAIN, test_size=N_HELD_OUT, stratify=labels,
        random_state=args.seed)
    X_train, X_held = X[train_idx], X[held_idx]
    y_train, y_held = labels[train_idx], labels[held_idx]
    classes = np.unique(labels)
    print(f"split: {len(train_idx)} training rows, {len(held_idx)} held-out rows (seed {args.seed})")
    if args.quick:
        print("quick run: " + ", ".join(f"{k}={v}" for k, v in epochs.items()))

    report = Report(args.out, y_train, y_held)
    report.add("raw (hashed char n-grams)", X_train, X_held, "raw.png")

    # 3. The feed-forward finetuner: its hidden layer is the new embedding.
    feedforward = FeedForwardFinetuner(hidden_dim=50, n_epochs=epochs["feedforward"],
                                       random_state=args.seed)
    feedforward.fit(X_train, y_train)
    report.add("feed-forward, hidden_dim=50", feedforward.transform(X_train),
               feedforward.transform(X_held), "feedforward.png")
    print(f"feed-forward training loss: {feedforward.loss_curve_[0]:.3f} -> "
          f"{feedforward.loss_curve_[-1]:.3f} over {len(feedforward.loss_curve_)} epochs")

    narrow = FeedForwardFinetuner(hidden_dim=10, n_epochs=epochs["feedforward"],
                                  random_state=args.seed)
    narrow.fit(X_train, y_train)
    report.add("feed-forward, hidden_dim=10", narrow.transform(X_train),
               narrow.transform(X_held), "feedforward_dim10.png")

    # 4. One pipeline from raw text to plot coordinates. Here PCA is fitted on
    #    the training rows, as any pipeline step would be, so its plot is
    #    projected a little differently from the others. Its output is two
    #    plot coordinates, not an embedding to classify from: no accuracy.
    pipeline = make_pipeline(
        HashingEncoder(**ENCODER_SETTINGS),
        FeedForwardFinetuner(hidden_dim=50, n_epochs=epochs["feedforward"], random_state=args.seed),
        PCA(n_components=2, random_state=0),
    )
    pipeline.fit([texts[i] for i in train_idx], y_train)
    pipeline_points = pipeline.transform([texts[i] for i in held_idx])
    report.add_points("pipeline: text -> finetuner -> PCA", 2, None, None, pipeline_points,
                      "pipeline.png")
    same = np.array_equal(pipeline[1].transform(X_held), feedforward.transform(X_held))
    print(f"pipeline's finetuner equals the step-by-step one (same seed): {same}")

    # 5. Streaming: only partial_fit, 50 rows at a time.
    streamed = FeedForwardFinetuner(hidden_dim=50, random_state=args.seed)
    stream_in_batches(streamed, X_train, y_train, classes, batch_rows=50,
                      passes=epochs["stream_passes"], rng=np.random.default_rng(args.seed))
    report.add(f"feed-forward, partial_fit x{len(streamed.loss_curve_)}",
               streamed.transform(X_train), streamed.transform(X_held), "streamed.png")

    # 6. The contrastive finetuner: a linear map trained on pairs of rows.
    contrastive = ContrastiveFinetuner(n_epochs=epochs["contrastive"], random_state=args.seed)
    contrastive.fit(X_train, y_train)
    report.add("contrastive", contrastive.transform(X_train),
               contrastive.transform(X_held), "contrastive.png")

    report.write_overview("overview.png")
    report.print_table()

    # The yardstick: how far the raw features get with a classifier whose
    # regularisation is tuned (on the training rows only) instead of left at
    # its default.
    tuned = LogisticRegressionCV(Cs=np.logspace(-2, 3, 11), cv=5, max_iter=5000)
    tuned.fit(X_train, y_train)
    print(f"\nraw features, logreg with C={tuned.C_[0]:.3g} chosen by 5-fold CV on the "
          f"training rows: {tuned.score(X_held, y_held):.3f}")
    print(f"\nplots written to {args.out}/ (overview.png has them side by side)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
