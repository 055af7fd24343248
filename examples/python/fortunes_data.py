"""A small labelled text corpus from Debian's ``fortunes`` package.

Each category file under /usr/share/games/fortunes/ holds short texts
separated by lines that contain only ``%``. The category is the label.
The package ships the data on disk, so the examples run without a network.

Also holds make_text_encoder: the walk-through's HashingEncoder settings in
one call, for code that wants the same features without restating them
(benchmarks/run.py does), and choose_encoder: the walk-through's MiniLM
sentence encoder, or that HashingEncoder when the model files are missing.
"""

from __future__ import annotations

import os
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

# Imported where used, so that the reading functions work without libembetter installed (the scripts that
# make the test fixtures read the corpus through them, in environments with the reference libraries only).
if TYPE_CHECKING:
    from libembetter.text import HashingEncoder

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


def make_text_encoder(n_features: int = 1024) -> HashingEncoder:
    """Texts -> dense float32 character n-gram counts (rows have unit L2 norm).

    The settings finetune_walkthrough.py, the notebook and docs/finetuners.md
    spell out (tests/python/test_walkthrough.py keeps them equal).
    alternate_sign=False keeps every count positive, the features the examples
    have always used, so their numbers stay comparable. Stateless: hashing
    needs no vocabulary, so the same text always gets the same vector.
    """
    from libembetter.text import HashingEncoder

    return HashingEncoder(analyzer="char_wb", ngram_range=(2, 4), n_features=n_features, alternate_sign=False)


MINILM = "all-MiniLM-L6-v2"


def choose_encoder(model: str = MINILM, kind: str = "auto"):
    """The examples' text encoder and one line that says which it is.

    kind "sentence": libembetter.text.SentenceEncoder(model), an error when
    its files are missing; "hashing": make_text_encoder(); "auto": the
    sentence encoder when its files are there, else hashing, and the line
    then says that this is the fallback, why, and how to fetch the model.
    """
    if kind not in ("auto", "sentence", "hashing"):
        raise ValueError(f"kind must be 'auto', 'sentence' or 'hashing', not {kind!r}")
    if kind != "hashing":
        from libembetter.text import ModelFilesNotFoundError, SentenceEncoder

        encoder = SentenceEncoder(model)
        try:
            encoder.fit()  # loads the model now, so that missing files show here, not halfway through
        except ModelFilesNotFoundError as error:
            if kind == "sentence":
                raise
            # The error names the missing file and the command that fetches it.
            return make_text_encoder(), (
                f"hashed character n-grams, 1024 dims: FALLBACK, the sentence model cannot load: {error}"
            )
        return encoder, f"sentence embeddings of {model} (libembetter.text.SentenceEncoder)"
    return make_text_encoder(), "hashed character n-grams, 1024 dims (chosen with --encoder hashing)"


if __name__ == "__main__":  # a quick look at what is on this machine
    for name in available_categories():
        print(f"{len(read_category(name)):6d}  {name}")
    print(f"data directory: {os.fspath(FORTUNES_DIR)}")
