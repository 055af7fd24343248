"""TextEncoder (model2vec static embeddings) against model2vec's own output.

The fixture models and reference.bin.gz come from scripts/make_static_fixtures.py
(model2vec's StaticModel.encode on 317 texts). model2vec itself (a test
dependency, also pulled in by embetter 0.9.1) is compared on new texts too.
"""
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from libembetter.text import TextEncoder

MODELS = Path(__file__).resolve().parent.parent / "fixtures" / "model2vec"


def read_reference():
    with gzip.open(MODELS / "reference.bin.gz", "rb") as f:
        data = f.read()
    assert data[:8] == b"EBM2V001"
    n, n_models = struct.unpack_from("<II", data, 8)
    pos = 16
    texts = []
    for _ in range(n):
        (length,) = struct.unpack_from("<I", data, pos)
        texts.append(data[pos + 4 : pos + 4 + length].decode("utf-8"))
        pos += 4 + length
    vectors = {}
    for _ in range(n_models):
        (length,) = struct.unpack_from("<I", data, pos)
        name = data[pos + 4 : pos + 4 + length].decode()
        (dim,) = struct.unpack_from("<I", data, pos + 4 + length)
        pos += 8 + length
        vectors[name] = np.frombuffer(data, dtype="<f4", count=n * dim, offset=pos).reshape(n, dim)
        pos += 4 * n * dim
    assert pos == len(data)
    return texts, vectors


TEXTS, REFERENCE = read_reference()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_equals_the_committed_model2vec_output(name):
    assert len(TEXTS) >= 300
    got = TextEncoder(model=MODELS / name).fit_transform(TEXTS)
    assert got.dtype == np.float32 and got.shape == REFERENCE[name].shape
    assert np.abs(got - REFERENCE[name]).max() <= 1e-6
    # Texts without tokens (spaces, control characters, only [UNK]) are rows of zeros, as in model2vec.
    assert (np.abs(got).sum(axis=1) == 0).sum() >= 4


@pytest.mark.parametrize("name", ["normalized", "raw-short", "unlimited"])
def test_equals_model2vec_itself_on_new_texts(name):
    import model2vec

    model = model2vec.StaticModel.from_pretrained(MODELS / name)
    rng = np.random.default_rng(5)
    words = TEXTS[0].split() + ["café", "東京", "unaffable", "☃", "zippy"]
    fresh = [" ".join(rng.choice(words, size=int(rng.integers(1, 60)))) for _ in range(200)]
    ours = TextEncoder(model=str(MODELS / name)).transform(fresh)
    theirs = np.asarray(model.encode(fresh), dtype=np.float32)
    assert np.abs(ours - theirs).max() <= 1e-6


def fortunes_corpus():
    """Every text of the walk-through's five categories (Debian's fortunes package, a test requirement)."""
    texts = []
    for category in ("computers", "politics", "songs-poems", "startrek", "zippy"):
        with open(f"/usr/share/games/fortunes/{category}", encoding="utf-8") as file:
            texts += [text.strip() for text in file.read().split("\n%\n") if text.strip()]
    return texts


@pytest.mark.parametrize("name", ["normalized", "raw-short"])
def test_equals_model2vec_on_the_whole_fortunes_corpus(name):
    import model2vec

    texts = fortunes_corpus()
    assert len(texts) > 3000
    ours = TextEncoder(model=MODELS / name).transform(texts)
    theirs = np.asarray(model2vec.StaticModel.from_pretrained(MODELS / name).encode(texts), dtype=np.float32)
    assert np.abs(ours - theirs).max() <= 1e-6


def test_normalize_follows_the_config():
    norms = np.linalg.norm(TextEncoder(model=MODELS / "normalized").transform(TEXTS[:50]), axis=1)
    assert np.allclose(norms, 1, atol=1e-5)
    raw = np.linalg.norm(TextEncoder(model=MODELS / "unlimited").transform(TEXTS[:50]), axis=1)
    assert not np.allclose(raw, 1, atol=1e-2)


def test_pickle_and_clone_keep_the_path_not_the_weights():
    encoder = TextEncoder(model=str(MODELS / "normalized")).fit(TEXTS[:3])
    assert encoder.dim_ == 16 and encoder.vocab_size_ == 493
    blob = pickle.dumps(encoder)
    assert len(blob) < 2000
    again = pickle.loads(blob)
    assert np.array_equal(again.transform(TEXTS[:20]), REFERENCE["normalized"][:20])
    assert clone(encoder).get_params() == {"model": str(MODELS / "normalized")}


def test_in_a_pipeline():
    from libembetter.finetune import FeedForwardFinetuner

    labels = np.arange(60) % 2
    pipe = make_pipeline(TextEncoder(model=MODELS / "normalized"), FeedForwardFinetuner(n_epochs=2, hidden_dim=4))
    out = pipe.fit(TEXTS[:60], labels).transform(TEXTS[:60])
    assert out.shape == (60, 4) and np.isfinite(out).all()


def test_hub_names_are_refused_with_instructions():
    with pytest.raises(FileNotFoundError, match="models must be local.*save_pretrained"):
        TextEncoder().transform(["hello"])
    with pytest.raises(TypeError, match="path of a model2vec directory"):
        TextEncoder(model=3).fit(["hello"])


@pytest.mark.parametrize("name,kind", [("unigram", "Unigram"), ("bpe", "BPE")])
def test_other_tokenizers_are_refused_by_name(name, kind):
    with pytest.raises(ValueError, match=kind):
        TextEncoder(model=MODELS / name).fit(["hello"])


def test_bad_files(tmp_path):
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (tmp_path / name).write_bytes((MODELS / "normalized" / name).read_bytes())
    (tmp_path / "config.json").write_text('{"max_length": -3}')
    with pytest.raises(ValueError, match="max_length"):
        TextEncoder(model=tmp_path).fit()
    (tmp_path / "config.json").unlink()
    with pytest.raises(OSError, match="config.json"):
        TextEncoder(model=tmp_path).fit()


def test_bad_input():
    encoder = TextEncoder(model=MODELS / "normalized")
    with pytest.raises(ValueError, match="1"):
        encoder.transform(["fine", ""])
    with pytest.raises(TypeError, match="None"):
        encoder.transform(["fine", None])
