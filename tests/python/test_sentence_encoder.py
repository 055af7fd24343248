"""SentenceEncoder against sentence-transformers' embeddings (stored fixtures), pickling, pipelines, missing files."""
import gzip
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from libembetter import EmbetterError
from libembetter.finetune import FeedForwardFinetuner
from libembetter.grab import ColumnGrabber
from libembetter.text import ModelFilesNotFoundError, SentenceEncoder, model_cache_dir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY_DIR = FIXTURES / "tiny-bert"


def read_fixture(name):
    """(texts, embeddings) of tests/fixtures/sentence/<name>.bin.gz (format: scripts/make_sentence_fixtures.py)."""
    data = gzip.decompress((FIXTURES / "sentence" / f"{name}.bin.gz").read_bytes())
    assert data[:8] == b"EBSENT01"
    n, dim, hidden_size, n_hidden = struct.unpack_from("<4I", data, 8)
    at = 24
    texts, rows = [], []
    for i in range(n):
        (length,) = struct.unpack_from("<I", data, at)
        texts.append(data[at + 4 : at + 4 + length].decode("utf-8"))
        at += 4 + length
        (tokens,) = struct.unpack_from("<I", data, at)
        at += 4 + 4 * tokens
        rows.append(np.frombuffer(data, "<f4", dim, at))
        at += 4 * dim
        if i < n_hidden:
            at += 4 * tokens * hidden_size
    assert at == len(data)
    return texts, np.stack(rows)


def assert_rows_match(got, want):
    """Every row: cosine >= 0.99999 and max abs difference <= 1e-4, the C tests' bounds."""
    assert got.shape == want.shape and got.dtype == np.float32
    cosine = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() >= 0.99999
    assert np.abs(got - want).max() <= 1e-4


@pytest.fixture(scope="module")
def tiny():
    return read_fixture("tiny-bert")


def minilm_dir():
    directory = model_cache_dir() / "all-MiniLM-L6-v2"
    if not (directory / "model.safetensors").is_file():
        pytest.fail(f"{directory} has no model.safetensors: run bash scripts/fetch-models.sh all-MiniLM-L6-v2")
    return directory


def test_tiny_directory_matches_sentence_transformers(tiny):
    texts, want = tiny
    encoder = SentenceEncoder(name=str(TINY_DIR))
    got = encoder.transform(texts)
    assert_rows_match(got, want)
    assert encoder.dim_ == 64 and encoder.model_dir_ == str(TINY_DIR)
    # A Path, a pandas Series and a one-column array give the same rows.
    np.testing.assert_array_equal(SentenceEncoder(TINY_DIR).transform(pd.Series(texts[:20])), got[:20])
    np.testing.assert_array_equal(SentenceEncoder(TINY_DIR).transform(np.array(texts[:20])[:, None]), got[:20])


def test_minilm_by_name_matches_sentence_transformers():
    minilm_dir()
    texts, want = read_fixture("all-MiniLM-L6-v2")
    # A few hundred texts keep this fast; the C test compares all 1,200.
    got = SentenceEncoder().transform(texts[:200])
    assert got.shape == (200, 384)
    assert_rows_match(got, want[:200])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    # The hub spelling of the name resolves to the same cached model.
    np.testing.assert_array_equal(SentenceEncoder("sentence-transformers/all-MiniLM-L6-v2").transform(texts[:3]),
                                  got[:3])


def test_threads_and_batch_size(tiny):
    texts, want = tiny
    one = SentenceEncoder(TINY_DIR, num_threads=1).transform(texts)
    two = SentenceEncoder(TINY_DIR, num_threads=2).transform(texts)
    np.testing.assert_array_equal(one, two)
    assert_rows_match(SentenceEncoder(TINY_DIR, batch_size=5).transform(texts), want)


def test_pickle_holds_settings_not_weights(tiny):
    texts, _ = tiny
    encoder = SentenceEncoder(TINY_DIR, batch_size=8, num_threads=1).fit(texts)
    before = encoder.transform(texts[:10])
    blob = pickle.dumps(encoder)
    # The tiny model's weights alone are 430 KB.
    assert len(blob) < 4096
    restored = pickle.loads(blob)
    assert restored.get_params() == encoder.get_params()
    np.testing.assert_array_equal(restored.transform(texts[:10]), before)
    np.testing.assert_array_equal(clone(encoder).transform(texts[:10]), before)


def test_pipeline_with_finetuner(tiny):
    texts, _ = tiny
    frame = pd.DataFrame({"text": texts[:60], "label": ["a", "b", "c"] * 20})
    pipe = make_pipeline(ColumnGrabber("text"), SentenceEncoder(TINY_DIR), FeedForwardFinetuner(n_epochs=2))
    out = pipe.fit(frame, frame["label"]).transform(frame)
    assert out.shape[0] == 60 and np.isfinite(out).all()
    again = pickle.loads(pickle.dumps(pipe)).transform(frame)
    np.testing.assert_array_equal(again, out)


def test_missing_cache_names_file_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LIBEMBETTER_MODEL_CACHE", str(tmp_path))
    with pytest.raises(ModelFilesNotFoundError) as caught:
        SentenceEncoder().transform(["hello"])
    message = str(caught.value)
    assert str(tmp_path / "all-MiniLM-L6-v2") in message
    assert "bash scripts/fetch-models.sh all-MiniLM-L6-v2" in message
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, EmbetterError)

    # A partly fetched model: the missing file is named, with the same command.
    partial = tmp_path / "all-MiniLM-L6-v2"
    shutil.copytree(TINY_DIR, partial)
    (partial / "model.safetensors").unlink()
    with pytest.raises(ModelFilesNotFoundError, match=r"model\.safetensors.*bash scripts/fetch-models\.sh"):
        SentenceEncoder("all-MiniLM-L6-v2").fit()
    (partial / "tokenizer.json").unlink()
    (partial / "vocab.txt").unlink()
    shutil.copy(TINY_DIR / "model.safetensors", partial / "model.safetensors")
    with pytest.raises(ModelFilesNotFoundError, match="neither tokenizer.json nor vocab.txt"):
        SentenceEncoder("all-MiniLM-L6-v2").fit()

    # An unknown name is neither a directory nor a cached model.
    with pytest.raises(ModelFilesNotFoundError, match="'no-such-model' is neither a directory"):
        SentenceEncoder("no-such-model").fit()
    # A local directory without a model says what it must hold.
    with pytest.raises(ModelFilesNotFoundError, match="modules.json.*sentence-transformers model"):
        SentenceEncoder(str(tmp_path)).fit()


def test_unsupported_model_is_named(tmp_path):
    copy = tmp_path / "roberta"
    shutil.copytree(TINY_DIR, copy)
    (copy / "config.json").write_text('{"model_type": "roberta", "hidden_act": "gelu", "hidden_size": 64}')
    with pytest.raises(ValueError, match="config.json.*model_type 'roberta' is not supported"):
        SentenceEncoder(copy).transform(["text"])


@pytest.mark.parametrize(
    "settings, error, needle",
    [
        ({"batch_size": 0}, ValueError, "batch_size is 0"),
        ({"batch_size": 10_000}, ValueError, "batch_size is 10000"),
        ({"batch_size": "32"}, TypeError, "batch_size must be a whole number"),
        ({"num_threads": 0}, ValueError, "num_threads is 0"),
        ({"num_threads": 1.5}, TypeError, "num_threads must be None"),
        ({"device": "cuda"}, ValueError, "device is 'cuda'"),
        ({"quantize": True}, ValueError, "quantize is True; this encoder computes in float32"),
        ({"name": 3}, TypeError, "name must be a model name or a directory path"),
        ({"name": ""}, ValueError, "name is empty"),
    ],
)
def test_bad_settings_are_named(settings, error, needle):
    params = {"name": TINY_DIR, **settings}
    with pytest.raises(error, match=needle):
        SentenceEncoder(**params).transform(["a text"])


def test_input_policy():
    encoder = SentenceEncoder(TINY_DIR, device="cpu")
    with pytest.raises(ValueError, match="text 1 is empty"):
        encoder.transform(["fine", ""])
    with pytest.raises(TypeError, match="text 0 is None"):
        encoder.transform([None])
    with pytest.raises(TypeError, match="single string"):
        encoder.transform("one string")
    # Only white space: [CLS] [SEP], a finite row, as sentence-transformers gives.
    assert np.isfinite(encoder.transform(["   "])).all()
