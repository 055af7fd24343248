"""WordVectorEncoder on vector files the tests write: the three formats, mean pooling, malformed files."""
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from libembetter.text import WordVectorEncoder

WORDS = ["the", "cat", "sat", "on", "mat", "café", "東京", "42", "naïve", "Upper"]


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.RandomState(3)
    return rng.normal(size=(len(WORDS), 6)).astype(np.float32)


def text_lines(vectors):
    # repr of a Python float round-trips, so the file holds exactly these float32 values.
    return [w + " " + " ".join(repr(float(v)) for v in row) for w, row in zip(WORDS, vectors)]


def write_vec(path, vectors):
    path.write_text(f"{len(WORDS)} {vectors.shape[1]}\n" + "\n".join(text_lines(vectors)) + "\n", encoding="utf-8")
    return path


def write_glove(path, vectors):
    path.write_text("\n".join(text_lines(vectors)) + "\n", encoding="utf-8")
    return path


def write_binary(path, vectors):
    body = b"".join(w.encode("utf-8") + b" " + row.astype("<f4").tobytes() + b"\n" for w, row in zip(WORDS, vectors))
    path.write_bytes(f"{len(WORDS)} {vectors.shape[1]}\n".encode() + body)
    return path


def reference_mean(text, vectors, normalize):
    """The documented rule, written independently: lowercase, runs of letters/digits, mean of known words."""
    index = {w: i for i, w in enumerate(WORDS)}
    tokens = re.findall(r"[^\W_]+", text.lower())
    known = [vectors[index[t]].astype(np.float64) for t in tokens if t in index]
    if not known:
        return np.zeros(vectors.shape[1])
    mean = np.mean(known, axis=0)
    return mean / np.linalg.norm(mean) if normalize else mean


TEXTS = [
    "The cat sat on the mat.",
    "CAFÉ in 東京, 42 times",
    "naïve_cat Upper upper",  # "_" splits tokens; "Upper" is stored capitalised, tokens are lowercased
    "nothing known here",
    "!? --",  # no token at all: the zero vector
]


@pytest.mark.parametrize("writer", [write_vec, write_glove, write_binary])
@pytest.mark.parametrize("normalize", [True, False])
def test_mean_of_known_tokens_in_every_format(tmp_path, vectors, writer, normalize):
    path = writer(tmp_path / "vectors", vectors)
    encoder = WordVectorEncoder(path, normalize=normalize)
    got = encoder.transform(TEXTS)
    assert got.shape == (len(TEXTS), 6) and got.dtype == np.float32
    expected = np.array([reference_mean(t, vectors, normalize) for t in TEXTS])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not got[3:].any()  # no known token: a zero row, also when normalising
    assert encoder.vocab_size_ == len(WORDS) and encoder.dim_ == 6


def test_formats_named_explicitly_agree_with_auto(tmp_path, vectors):
    files = {"text": write_vec(tmp_path / "a.vec", vectors), "glove": write_glove(tmp_path / "a.txt", vectors),
             "binary": write_binary(tmp_path / "a.bin", vectors)}
    results = [WordVectorEncoder(path, format=name).transform(TEXTS) for name, path in files.items()]
    for result in results[1:]:
        assert np.array_equal(result, results[0])
    assert np.array_equal(WordVectorEncoder(files["binary"]).transform(TEXTS), results[0])


def test_accepts_series_and_arrays_and_survives_pickle_and_clone(tmp_path, vectors):
    encoder = WordVectorEncoder(write_vec(tmp_path / "v.vec", vectors))
    expected = encoder.fit(TEXTS).transform(TEXTS)
    assert np.array_equal(encoder.transform(pd.Series(TEXTS)), expected)
    assert np.array_equal(encoder.transform(np.array(TEXTS)), expected)
    assert np.array_equal(pickle.loads(pickle.dumps(encoder)).transform(TEXTS), expected)
    assert np.array_equal(clone(encoder).transform(TEXTS), expected)


@pytest.mark.parametrize(
    "content, needle",
    [
        ("2 3\nhello 1 2 3\nworld 1 2\n", "line 3: 2 values after the word, expected 3"),
        ("2 3\nhello 1 2 3\nworld 1 2 3 4\n", "line 3: 4 values after the word, expected 3"),
        ("2 3\nhello 1 2 3\nworld 1 two 3\n", 'line 3, value 2: "two" is not a number'),
        ("2 3\nhello 1 2 3\nworld nan 2 3\n", 'line 3, value 1: "nan" is not finite'),
        ("3 3\nhello 1 2 3\nworld 1 2 3\nhello 1 2 3\n", 'line 4: duplicate word "hello", first seen at line 2'),
        ("5 3\nhello 1 2 3\nworld 1 2 3\n", "the header announces 5 words, but the file ends after 2"),
        ("1 3\nhello 1 2 3\nworld 1 2 3\n", "line 3: more vector lines than the 1 the header announces"),
        ("hello 1 2 3\nworld 1 2\n", "line 2: 2 values after the word, expected 3"),
        ("", "empty"),
        # Two whole numbers on line 1 are a header however large, not a word "99..." with one value.
        ("99999999999999999999 300\nhello 1 2\n", 'line 1: the header "99999999999999999999 300" announces more'),
        ("2 3\nhello 1 2 3\nworld 3.4028236e+38 2 3\n", 'line 3, value 1: "3.4028236e+38" is outside the float32'),
        # A byte-order mark does not move line numbers: its line is still line 1.
        ("\ufeff2 3\nhello 1 2 3\nworld 1 2\n", "line 3: 2 values after the word, expected 3"),
        ("\ufeff", "only a byte-order mark"),
    ],
)
def test_malformed_text_files_name_the_line(tmp_path, content, needle):
    path = tmp_path / "bad.vec"
    path.write_text(content, encoding="utf-8")
    encoder = WordVectorEncoder(path)
    with pytest.raises(ValueError) as raised:
        encoder.transform(["hello"])
    assert needle in str(raised.value) and str(path) in str(raised.value)
    # Nothing was kept: the next call reads the file again and fails the same way.
    with pytest.raises(ValueError):
        encoder.fit()
    assert not hasattr(encoder, "vocab_size_")


def test_malformed_binary_files_name_the_byte(tmp_path, vectors):
    good = write_binary(tmp_path / "good.bin", vectors).read_bytes()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good[:-10])
    with pytest.raises(ValueError, match=r"byte \d+: record 10 of 10 is truncated"):
        WordVectorEncoder(truncated, format="binary").fit()
    lying = tmp_path / "lying.bin"
    lying.write_bytes(b"50 6\n" + good[good.index(b"\n") + 1:])
    with pytest.raises(ValueError, match="header announces 50 words of 6 dimensions, more than"):
        WordVectorEncoder(lying, format="binary").fit()
    longer = tmp_path / "longer.bin"
    longer.write_bytes(b"9 6\n" + good[good.index(b"\n") + 1:])
    with pytest.raises(ValueError, match=r"byte \d+: data after the 9 records"):
        WordVectorEncoder(longer, format="binary").fit()


@pytest.mark.parametrize("writer", [write_vec, write_glove])
def test_a_byte_order_mark_is_skipped(tmp_path, vectors, writer):
    plain = writer(tmp_path / "plain.txt", vectors)
    marked = tmp_path / "marked.txt"
    # What Windows editors and Python's "utf-8-sig" codec write.
    marked.write_text(plain.read_text(encoding="utf-8"), encoding="utf-8-sig")
    assert marked.read_bytes()[:3] == b"\xef\xbb\xbf"
    encoder = WordVectorEncoder(marked, normalize=False).fit()
    assert encoder.vocab_size_ == len(WORDS)
    # The first word is "the", not "\ufeffthe": it is found.
    assert np.array_equal(encoder.transform(["the"])[0], vectors[0])
    assert np.array_equal(encoder.transform(TEXTS), WordVectorEncoder(plain, normalize=False).transform(TEXTS))


def test_float32_extremes_numpy_writes_load_as_numpy_reads_them(tmp_path):
    info = np.finfo(np.float32)
    extremes = np.array(
        [info.max, -info.max, info.tiny, -info.tiny, info.smallest_subnormal, 3 * info.smallest_subnormal, 0.0],
        dtype=np.float32,
    )
    # numpy's two ways of writing float32: the shortest repr, and savetxt's default %.18e.
    tokens = {"repr": [str(v) for v in extremes], "savetxt": [f"{float(v):.18e}" for v in extremes]}
    assert "3.4028235e+38" in tokens["repr"] and "1e-45" in tokens["repr"]
    path = tmp_path / "extremes.txt"
    path.write_text("".join(f"{name} {' '.join(values)}\n" for name, values in tokens.items()), encoding="utf-8")
    encoder = WordVectorEncoder(path, normalize=False).fit()
    for name, values in tokens.items():
        loaded = encoder.transform([name])[0]
        expected = np.array([np.float32(float(t)) for t in values], dtype=np.float32)
        assert loaded.tobytes() == expected.tobytes() == extremes.tobytes(), name


def test_glove_file_with_a_long_first_line_is_a_format_error_not_a_huge_allocation(tmp_path):
    # 20,000 values on line 1, then 40,000 one-value lines: 160 KB that once asked for 3.2 GB of vectors.
    path = tmp_path / "glove.txt"
    path.write_text("a" + " 1" * 20000 + "\n" + "b 1\n" * 40000, encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 has 3 bytes, too few for the 20000 values of line 1"):
        WordVectorEncoder(path).fit()


def test_missing_file_and_bad_settings(tmp_path, vectors):
    with pytest.raises(OSError, match="no_such.vec"):
        WordVectorEncoder(tmp_path / "no_such.vec").fit()
    path = write_vec(tmp_path / "v.vec", vectors)
    with pytest.raises(ValueError, match="format"):
        WordVectorEncoder(path, format="fasttext").fit()
    with pytest.raises(ValueError, match="n_threads"):
        WordVectorEncoder(path, n_threads=0).fit()
    with pytest.raises(ValueError, match="n_threads"):
        WordVectorEncoder(path, n_threads=2**64).fit()
    with pytest.raises(ValueError, match="format is \\['text'\\]"):
        WordVectorEncoder(path, format=["text"]).fit()


def test_bad_text_batches(tmp_path, vectors):
    encoder = WordVectorEncoder(write_vec(tmp_path / "v.vec", vectors))
    with pytest.raises(TypeError, match="text 1 is None"):
        encoder.transform(["cat", None])
    with pytest.raises(ValueError, match="text 0 is not valid UTF-8 at byte 1"):
        encoder.transform([b"c\xffat"])
    with pytest.raises(ValueError, match="0 texts"):
        encoder.transform([])
