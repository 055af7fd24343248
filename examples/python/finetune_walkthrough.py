"""Fine-tune MiniLM sentence embeddings on 200 labelled fortunes and see what it buys.

The story, step by step:

1. encode every text with libembetter.text.SentenceEncoder (all-MiniLM-L6-v2,
   384 dims, computed in C without PyTorch); when the model files are missing
   the script says so and falls back to hashed character n-grams;
2. two tasks: computers vs politics (two classes) and five categories; each
   keeps 200 labelled rows for training and holds out all the others;
3. per task, fit a FeedForwardFinetuner (hidden_dim=50), a narrow one
   (hidden_dim=10) and a ContrastiveFinetuner on the 200 rows;
4. five categories: also a finetuner trained by streaming minibatches through
   partial_fit, and one scikit-learn pipeline from text to category.

For every embedding it reports three numbers on the held-out rows:
  - accuracy of a LogisticRegression (default settings) fitted on the 200
    transformed training rows;
  - accuracy of 5-nearest-neighbour voting among those 200 rows by cosine
    similarity, which is how an embedding serves search and deduplication;
  - the silhouette score of the labels in the 2-D PCA projection of the
    held-out rows (higher means the categories sit apart in the plot).
It also prints, as a yardstick, the raw embedding's accuracy with the
LogisticRegression's C tuned by cross-validation on the 200 rows. The scatter
plots are written as PNG files.

Run:  python finetune_walkthrough.py [--out DIR] [--quick] [--seed N] [--fortunes-dir DIR]
                                     [--encoder auto|sentence|hashing] [--model NAME_OR_DIR]
"""

from __future__ import annotations

import argparse
import sys
import warnings
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

from fortunes_data import (  # noqa: E402
    DEFAULT_CATEGORIES,
    FORTUNES_DIR,
    MINILM,
    FortunesNotInstalled,
    choose_encoder,
    load_fortunes,
)

from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner  # noqa: E402

N_TRAIN = 200

# The fallback's features: hashed character 2- to 4-grams, 1024 columns,
# unit-length rows, all counts positive (fortunes_data.make_text_encoder).
ENCODER_SETTINGS = {"analyzer": "char_wb", "ngram_range": (2, 4), "n_features": 1024, "alternate_sign": False}

# (file-name prefix, categories): two topics far apart, then all five.
TASKS = [("two-class", ("computers", "politics")), ("five-class", DEFAULT_CATEGORIES)]

# Epoch counts of the full run and of --quick (a shorter run for tests).
FULL = {"feedforward": 500, "stream_passes": 100, "contrastive": 20}
QUICK = {"feedforward": 50, "stream_passes": 10, "contrastive": 10}

# Texts no fortune file holds, for the pipeline to label.
NEW_TEXTS = [
    "The compiler crashed again, so I rebooted the server and rewrote the parser in C.",
    "The senator promised lower taxes, then voted for the bill that raised them.",
    "Beam me up, Scotty: Spock says the warp engines of the Enterprise will not hold.",
]


class Report:
    """Collects one row per embedding of one task and draws its held-out PCA scatter."""

    def __init__(self, out_dir: Path, prefix: str, y_train, y_held_out):
        self.out_dir = out_dir
        self.prefix = prefix
        self.y_train = y_train
        self.y_held_out = y_held_out
        self.categories = sorted(set(y_held_out))
        self.rows: list[tuple[str, int, float, float, float, str]] = []
        self.panels: list[tuple[str, np.ndarray, float]] = []

    def add(self, name: str, train_embedding, held_out_embedding, plot: str):
        classifier = LogisticRegression(max_iter=2000)
        classifier.fit(train_embedding, self.y_train)
        accuracy = classifier.score(held_out_embedding, self.y_held_out)
        neighbours = KNeighborsClassifier(n_neighbors=5, metric="cosine")
        neighbours.fit(train_embedding, self.y_train)
        knn_accuracy = neighbours.score(held_out_embedding, self.y_held_out)
        points = PCA(n_components=2, random_state=0).fit_transform(held_out_embedding)
        silhouette = silhouette_score(points, self.y_held_out)
        png_name = f"{self.prefix}_{plot}.png"
        self.rows.append((name, held_out_embedding.shape[1], accuracy, knn_accuracy, silhouette, png_name))
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

    def write_overview(self) -> str:
        """All panels of the task in one figure, for side-by-side comparison."""
        columns = 2 if len(self.panels) == 4 else min(len(self.panels), 3)
        rows = -(-len(self.panels) // columns)
        figure, grid = plt.subplots(rows, columns, figsize=(4 * columns, 3.6 * rows), dpi=70)
        grid = np.atleast_2d(grid)
        for axes, (name, points, silhouette) in zip(grid.flat, self.panels):
            self._scatter(axes, name, points, silhouette)
        for axes in list(grid.flat)[len(self.panels):]:
            axes.axis("off")
        handles, labels = grid.flat[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=len(labels), markerscale=3)
        figure.tight_layout(rect=(0, 0.06, 1, 1))
        png_name = f"{self.prefix}_overview.png"
        figure.savefig(self.out_dir / png_name)
        plt.close(figure)
        return png_name

    def print_table(self):
        print(f"{'embedding':<36} {'dims':>5} {'logreg':>7} {'5-NN':>6} {'silhouette':>11}  plot")
        for name, dims, accuracy, knn_accuracy, silhouette, png_name in self.rows:
            print(f"{name:<36} {dims:>5} {accuracy:>7.3f} {knn_accuracy:>6.3f} {silhouette:>+11.3f}  {png_name}")


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


def run_task(prefix, categories, X, labels, raw_name, epochs, args):
    """Split one task's rows, fine-tune three ways, print the table; returns the split and the report."""
    rows = np.flatnonzero(np.isin(labels, categories))
    train_idx, held_idx = train_test_split(
        rows, train_size=N_TRAIN, stratify=labels[rows], random_state=args.seed)
    X_train, X_held = X[train_idx], X[held_idx]
    y_train, y_held = labels[train_idx], labels[held_idx]
    print(f"\n== {prefix}: {' vs '.join(categories) if len(categories) == 2 else ', '.join(categories)}: "
          f"{len(train_idx)} training rows, {len(held_idx)} held out (seed {args.seed})")
    report = Report(args.out, prefix, y_train, y_held)
    report.add(raw_name, X_train, X_held, "raw")

    # The feed-forward finetuner: its hidden layer is the new embedding.
    feedforward = FeedForwardFinetuner(hidden_dim=50, n_epochs=epochs["feedforward"], random_state=args.seed)
    feedforward.fit(X_train, y_train)
    report.add("feed-forward, hidden_dim=50", feedforward.transform(X_train), feedforward.transform(X_held),
               "feedforward")
    narrow = FeedForwardFinetuner(hidden_dim=10, n_epochs=epochs["feedforward"], random_state=args.seed)
    narrow.fit(X_train, y_train)
    report.add("feed-forward, hidden_dim=10", narrow.transform(X_train), narrow.transform(X_held),
               "feedforward_dim10")

    # The contrastive finetuner: a linear map trained on pairs of rows.
    contrastive = ContrastiveFinetuner(n_epochs=epochs["contrastive"], random_state=args.seed)
    contrastive.fit(X_train, y_train)
    report.add("contrastive", contrastive.transform(X_train), contrastive.transform(X_held), "contrastive")
    return (X_train, X_held, y_train, y_held, train_idx), report


def finish_task(report, X_train, X_held, y_train, y_held):
    overview = report.write_overview()
    report.print_table()
    # The yardstick: how far the raw embedding gets with a classifier whose
    # regularisation is tuned (on the training rows only) instead of left at
    # its default.
    tuned = LogisticRegressionCV(Cs=np.logspace(-2, 3, 11), cv=5, scoring="accuracy", max_iter=5000)
    with warnings.catch_warnings():
        # scikit-learn 1.8+ announces a new l1_ratios default; the l2 penalty used here ignores it.
        warnings.filterwarnings("ignore", message=".*l1_ratios", category=FutureWarning)
        tuned.fit(X_train, y_train)
    print(f"raw features, logreg with C={tuned.C_[0]:.3g} chosen by 5-fold CV on the "
          f"training rows: {tuned.score(X_held, y_held):.3f}")
    return overview


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
    parser.add_argument("--encoder", choices=("auto", "sentence", "hashing"), default="auto",
                        help="sentence: MiniLM, an error without its files; hashing: character n-grams; "
                             "auto (default): sentence, else hashing, saying so")
    parser.add_argument("--model", default=MINILM,
                        help="the sentence encoder's model: a cached model's name or a directory "
                             "(default %(default)s, fetched by scripts/fetch-models.sh)")
    args = parser.parse_args(argv)
    epochs = QUICK if args.quick else FULL

    try:
        texts, labels = load_fortunes(directory=args.fortunes_dir)
    except FortunesNotInstalled as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        encoder, description = choose_encoder(args.model, args.encoder)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. Encode. The encoder learns nothing from the data, so encoding every
    #    text up front leaks nothing from the held-out rows.
    print(f"encoder: {description}")
    X = encoder.transform(texts)
    sentence = not description.startswith("hashed")
    raw_name = "raw (MiniLM sentence embedding)" if sentence else "raw (hashed char n-grams)"
    print(f"fortunes: {len(texts)} texts in {len(set(labels))} categories, encoded to {X.shape[1]} dims")
    if args.quick:
        print("quick run: " + ", ".join(f"{k}={v}" for k, v in epochs.items()))

    overviews = []
    # 2-3. Two categories, then five.
    for prefix, categories in TASKS:
        (X_train, X_held, y_train, y_held, train_idx), report = run_task(
            prefix, categories, X, labels, raw_name, epochs, args)
        if len(categories) > 2:
            # 4. Streaming: only partial_fit, 50 rows at a time.
            streamed = FeedForwardFinetuner(hidden_dim=50, random_state=args.seed)
            stream_in_batches(streamed, X_train, y_train, np.unique(y_train), batch_rows=50,
                              passes=epochs["stream_passes"], rng=np.random.default_rng(args.seed))
            report.add(f"feed-forward, partial_fit x{len(streamed.loss_curve_)}",
                       streamed.transform(X_train), streamed.transform(X_held), "streamed")
        overviews.append(finish_task(report, X_train, X_held, y_train, y_held))

    # 4. One pipeline from raw text to a category, trained on the five-class
    #    task's 200 training texts (the last task's split) and asked about
    #    texts that are in no fortune file.
    pipeline = make_pipeline(
        encoder,
        FeedForwardFinetuner(hidden_dim=50, n_epochs=epochs["feedforward"], random_state=args.seed),
        LogisticRegression(max_iter=2000),
    )
    pipeline.fit([texts[i] for i in train_idx], y_train)
    print("\npipeline text -> encoder -> finetuner -> logreg, trained on the 200 five-class training texts:")
    for text, category in zip(NEW_TEXTS, pipeline.predict(NEW_TEXTS)):
        print(f"  {category:<12} <- {text}")

    print(f"\nplots written to {args.out}/ ({', '.join(overviews)} have each task's side by side)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
