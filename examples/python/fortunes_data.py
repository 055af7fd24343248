"""A small labelled text corpus from Debian's ``fortunes`` package.

Each category file under /usr/share/games/fortunes/ holds short texts
separated by lines that contain only ``%``. The category is the label.
The package ships the data on disk, so the examples run without a network.

Also holds the text encoder the examples use until the library has its own:
character n-gram hashing, made dense because the finetuners take dense
float arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

FORTUNES_DIR = Path("/usr/share/games/fortunes")

# Five categories with about 3,250 texts between them, comfortably more than
# the 200 + 2000 rows the walk-through draws. Their topics differ (software,
# verse, politics, Zippy the Pinhead, Star Trek) while all are short English
# prose, so character statistics alone separate them only partly: room for a
# fine-tuned embedding to show what the labels add.
DEFAULT_CATEGORIES = ("computers", "politics", "songs-poems", "startrek", "zippy")


class FortunesNotInstalled(FileNotFoundError):
    """The fortunes data files are missing."""


def available_categories(directory: Path | str = FORTUNES_DIR) -> list[str]:
    """Names of the category files in ``directory``.

    Skips the ``.dat`` index files that strfile writes and the ``.u8``
    symlinks, which point at the same texts and would count them twice.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FortunesNotInstalled(
            f"no fortunes directory at {directory}; install the data with "
            "'apt-get install fortunes'"
        )
    names = []
    for entry in sorted(directory.iterdir()):
        if entry.is_symlink() or not entry.is_file():
            continue
        if entry.suffix in (".dat", ".u8"):
            continue
        names.append(entry.name)
    return names


def parse_fortunes(text: str) -> list[str]:
    """Split the contents of one category file into its texts.

    A text ends at a line that is exactly ``%``; the last text needs no
    closing ``%``. Surrounding blank space is dropped and empty texts are
    skipped, so a trailing separator does not produce an empty sample.
    """
    texts = []
    current: list[str] = []
    for line in text.splitlines():
        if line == "%":
            texts.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    texts.append("\n".join(current).strip())
    return [t for t in texts if t]


def read_category(name: str, directory: Path | str = FORTUNES_DIR) -> list[str]:
    """All texts of one category, decoded as UTF-8.

    Undecodable bytes raise an error naming the file and byte offset instead
    of being replaced silently.
    """
    directory = Path(directory)
    path = directory / name
    if not path.is_file():
        if not directory.is_dir():
            raise FortunesNotInstalled(
                f"no fortunes directory at {directory}; install the data with "
                "'apt-get install fortunes'"
            )
        raise FortunesNotInstalled(
            f"category {name!r} not found in {directory}; available: "
            + ", ".join(available_categories(directory))
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not valid UTF-8 at byte {err.start}: {err.reason}"
        ) from err
    return parse_fortunes(text)


def load_fortunes(
    categories=DEFAULT_CATEGORIES, directory: Path | str = FORTUNES_DIR
) -> tuple[list[str], np.ndarray]:
    """Texts and their category names (as a numpy array of str), in file order."""
    categories = list(categories)
    if len(categories) < 2:
        raise ValueError(f"need at least two categories to label, got {categories!r}")
    texts: list[str] = []
    labels: list[str] = []
    for name in categories:
        category_texts = read_category(name, directory)
        if not category_texts:
            raise ValueError(f"category {name!r} in {directory} holds no texts")
        texts.extend(category_texts)
        labels.extend([name] * len(category_texts))
    return texts, np.array(labels)


def to_dense_float32(X):
    """Sparse hashing output as the dense float32 array the finetuners take.

    A named module-level function (not a lambda) so that pipelines holding it
    can be pickled.
    """
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.asarray(X, dtype=np.float32)


def make_text_encoder(n_features: int = 1024):
    """Texts -> dense character n-gram features (rows have unit L2 norm).

    Stateless: hashing needs no vocabulary, so fitting it learns nothing and
    the same text always gets the same vector.
    """
    return make_pipeline(
        HashingVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 4),
            n_features=n_features,
            alternate_sign=False,
        ),
        FunctionTransformer(to_dense_float32),
    )


if __name__ == "__main__":  # a quick look at what is on this machine
    for name in available_categories():
        print(f"{len(read_category(name)):6d}  {name}")
    print(f"data directory: {os.fspath(FORTUNES_DIR)}")
