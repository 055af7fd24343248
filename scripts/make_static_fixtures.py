#!/usr/bin/env python3
"""Small model2vec models and model2vec's own encodings of them, for the static encoder's tests.

Everything is built offline: the vocabulary and tokenizer are tests/fixtures/tiny-bert/'s WordPiece
tokenizer.json, the vectors are random (seeded), and model2vec's StaticModel is constructed
directly from them and written with save_pretrained (its distill needs a hub model).

Writes, under tests/fixtures/model2vec/:
  normalized/     normalize true, max_length 512 (model2vec's default)
  raw-short/      normalize false, max_length 12 (exercises both of model2vec's truncations)
  unlimited/      normalize false, max_length null (no truncation)
  unigram/, bpe/  a valid model2vec directory around a Unigram / BPE tokenizer (to be refused)
  reference.bin.gz  texts and StaticModel.encode's output for each of the first three models

Run it in a venv with model2vec and tokenizers from PyPI:
  python3 -m venv VENV && VENV/bin/pip install model2vec tokenizers
  VENV/bin/python scripts/make_static_fixtures.py

Reference format (gzip of little-endian binary), read by tests/c/test_static_encoder.c and
tests/python/test_static_encoder.py:
  8 bytes "EBM2V001"; u32 n_texts, n_models
  per text: u32 byte length, UTF-8 bytes
  per model: u32 name length, name (the directory under model2vec/), u32 dim, n_texts x dim f32
"""

from __future__ import annotations

import gzip
import random
import shutil
import struct
import sys
from pathlib import Path

import model2vec
import numpy as np
from model2vec import StaticModel
from tokenizers import Tokenizer, models, pre_tokenizers

# The corpus reader of the examples (examples/python/fortunes_data.py), which needs no libembetter to read.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "python"))
from fortunes_data import DEFAULT_CATEGORIES, read_category  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
OUT = FIXTURES / "model2vec"
DIM = 16

# name: (normalize, max_length)
MODELS = {"normalized": (True, 512), "raw-short": (False, 12), "unlimited": (False, None)}


def edge_texts() -> list[str]:
    """Texts at the edges of tokenisation and pooling; none is empty (the library refuses empty texts)."""
    long_words = " ".join(["the", "computer", "unaffable", "zippy", "trek"] * 400)
    return [
        " ",
        "\t\n  \r",
        "\x00\x01\x02",  # removed by text cleaning: no tokens, a zero row
        "\ufffd",
        "☃☃☃",  # only [UNK], which model2vec drops: a zero row
        "東京は日本の首都です",
        "北京 上海 한국어 テスト",
        "Café résumé naïve façade Ångström",
        "ÀÉÎÕÜ àéîõü ÇçÑñ",
        "Emoji 😀 and 👍🏽 mixed with words",
        "[CLS] the [SEP] computer [MASK] [PAD]",
        "a" * 150,  # a word over 100 characters is one [UNK]
        long_words,
        "x" + "é" * 3000,
        "the " * 2000,
        "unaffable,computer;zippy!trek?",
        "Ab\u0301c d\u0327e",  # combining marks
    ]


def random_vectors(tokenizer: Tokenizer, seed: int) -> np.ndarray:
    rows = len(tokenizer.get_vocab())
    return np.random.default_rng(seed).normal(0.0, 0.5, size=(rows, DIM)).astype(np.float32)


def save_model(name: str, tokenizer: Tokenizer, normalize: bool, max_length: int | None, seed: int) -> StaticModel:
    directory = OUT / name
    shutil.rmtree(directory, ignore_errors=True)
    model = StaticModel(random_vectors(tokenizer, seed), tokenizer, normalize=normalize, max_length=max_length)
    model.save_pretrained(directory)
    # The model card is documentation for the hub; the tests do not read it.
    (directory / "README.md").unlink(missing_ok=True)
    return StaticModel.from_pretrained(directory)


def other_tokenizers() -> dict[str, Tokenizer]:
    vocab = ["<unk>", "a", "b", "ab", "the", "computer"]
    unigram = Tokenizer(models.Unigram([(token, -float(i + 1)) for i, token in enumerate(vocab)], unk_id=0))
    unigram.pre_tokenizer = pre_tokenizers.Whitespace()
    bpe = Tokenizer(models.BPE({t: i for i, t in enumerate(vocab)}, [("a", "b")], unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    return {"unigram": unigram, "bpe": bpe}


def main() -> None:
    print(f"model2vec {model2vec.__version__}")
    corpus = [text for name in DEFAULT_CATEGORIES for text in read_category(name)]
    texts = random.Random(13).sample(corpus, 300) + edge_texts()
    tokenizer = Tokenizer.from_file(str(FIXTURES / "tiny-bert" / "tokenizer.json"))
    OUT.mkdir(parents=True, exist_ok=True)
    blocks = []
    for seed, (name, (normalize, max_length)) in enumerate(MODELS.items(), start=1):
        model = save_model(name, tokenizer, normalize, max_length, seed)
        vectors = np.asarray(model.encode(texts), dtype=np.float32)
        assert vectors.shape == (len(texts), DIM)
        blocks.append((name, vectors))
    for seed, (name, other) in enumerate(other_tokenizers().items(), start=10):
        save_model(name, other, True, 512, seed)
    with gzip.GzipFile(OUT / "reference.bin.gz", "wb", mtime=0) as f:
        f.write(b"EBM2V001" + struct.pack("<II", len(texts), len(blocks)))
        for text in texts:
            data = text.encode("utf-8")
            f.write(struct.pack("<I", len(data)) + data)
        for name, vectors in blocks:
            f.write(struct.pack("<I", len(name)) + name.encode() + struct.pack("<I", vectors.shape[1]))
            f.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
    print(f"{len(texts)} texts, models {', '.join(MODELS)} -> {OUT}")


if __name__ == "__main__":
    main()
