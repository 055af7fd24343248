"""HashingEncoder against scikit-learn's HashingVectorizer, element by element, and its input policy."""
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.pipeline import make_pipeline

from libembetter.finetune import FeedForwardFinetuner
from libembetter.text import HashingEncoder

FORTUNES_DIR = Path("/usr/share/games/fortunes")

# Texts beyond the corpus's few non-ASCII characters: case rules with context (final sigma),
# the one multi-character lowercase mapping (U+0130), scripts with and without case,
# combining marks (not word characters), and every kind of Unicode whitespace.
MULTILINGUAL = [
    "ΟΔΟΣ ΟΔΟΣ ΣΑΣ Σ ΑΣ ΑΣΑ",
    "İstanbul'da İYİ günler, Iğdır",
    "Straße STRASSE ẞ groß",
    "Привет, МИР! Ёлка",
    "日本語のテキスト、東京。",
    "naïve cafe\u0301 re\u0301sume\u0301",
    "a\u00a0b\u2003c\u3000d\x1ce\x1df\x1eg\x1fh\x85i\u2028j\u2029k\u200bl",
    "ǅungla ǄUNGLA Ω K Ⅻ Ⓐⓑ",
    "𐐀𐐨 Deseret, 😀 emoji, ＦＵＬＬ ｗｉｄｔｈ",
    "Ꭰ Cherokee, Ა Mtavruli, Ⴀ Asomtavruli",
    "snake_case and__dunder__ x1 ²³ ٣٤",
    "   \t\n  ",
    "a",
    "%",
]


def fortunes_corpus():
    """Every text of every fortunes category file (texts end at lines holding only '%')."""
    if not FORTUNES_DIR.is_dir():
        raise FileNotFoundError(f"{FORTUNES_DIR} is missing; install Debian's 'fortunes' package")
    texts = []
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.is_symlink() or not path.is_file() or path.suffix in (".dat", ".u8"):
            continue
        current = []
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line == "%":
                # Two '%' lines in a row delimit no fortune (a few files have such records): not a text.
                if current:
                    texts.append("\n".join(current))
                current = []
            else:
                current.append(line)
        if any(current):
            texts.append("\n".join(current))
    return texts


@pytest.fixture(scope="module")
def corpus():
    texts = fortunes_corpus()
    assert len(texts) > 10000
    assert any(ord(c) > 127 for t in texts for c in t)
    return texts + MULTILINGUAL


SETTINGS = [
    dict(analyzer="char_wb", ngram_range=(2, 4), n_features=1024, alternate_sign=True, norm="l2", lowercase=True),
    dict(analyzer="char", ngram_range=(1, 3), n_features=4096, alternate_sign=False, norm="l1", lowercase=True),
    dict(analyzer="word", ngram_range=(1, 2), n_features=2048, alternate_sign=True, norm="l2", lowercase=True),
    dict(analyzer="char_wb", ngram_range=(3, 5), n_features=100, alternate_sign=True, norm=None, lowercase=False),
    dict(analyzer="word", ngram_range=(1, 1), n_features=1 << 12, alternate_sign=False, norm=None, lowercase=True),
    dict(analyzer="char", ngram_range=(2, 2), n_features=1, alternate_sign=True, norm=None, lowercase=False),
    dict(analyzer="char_wb", ngram_range=(1, 1), n_features=997, alternate_sign=True, norm="l1", lowercase=True),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s['analyzer']}-{s['ngram_range']}-{s['norm']}")
def test_equals_hashing_vectorizer_on_the_whole_fortunes_corpus(corpus, settings):
    expected = HashingVectorizer(**settings).transform(corpus).toarray().astype(np.float32)
    got = HashingEncoder(**settings).transform(corpus)
    assert got.shape == expected.shape and got.dtype == np.float32
    mismatched = np.flatnonzero((got != expected).any(axis=1))
    assert mismatched.size == 0, f"rows differ: {[corpus[i][:60] for i in mismatched[:5]]}"
    # The comparison is not vacuous: most rows carry features.
    assert (np.abs(got).sum(axis=1) > 0).mean() > 0.95


def test_defaults_are_char_wb_2_4_1024_l2():
    encoder = HashingEncoder()
    texts = ["The quick brown fox", "jumps over the lazy dog"]
    expected = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=1024).transform(texts)
    assert np.array_equal(encoder.transform(texts), expected.toarray().astype(np.float32))
    assert HashingEncoder(analyzer="word")._effective_ngram_range() == (1, 1)


def test_whitespace_texts_are_zero_rows_like_scikit_learn_and_empty_ones_are_refused():
    texts = ["  \n\t ", " ", "x"]
    got = HashingEncoder().transform(texts)
    assert not got[:2].any()
    assert np.array_equal(got, HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=1024)
                          .transform(texts).toarray().astype(np.float32))
    with pytest.raises(ValueError, match="text 1 is empty"):
        HashingEncoder().transform(["x", "", "y"])


def test_threads_do_not_change_the_result(corpus):
    one = HashingEncoder(n_threads=1).transform(corpus)
    two = HashingEncoder(n_threads=2).transform(corpus)
    automatic = HashingEncoder().transform(corpus)
    assert np.array_equal(one, two) and np.array_equal(one, automatic)


def test_accepts_lists_tuples_arrays_series_and_iterables():
    texts = ["alpha beta", "gamma", "délta"]
    expected = HashingEncoder().transform(texts)
    frame = pd.DataFrame({"text": texts})
    for batch in (tuple(texts), np.array(texts), np.array(texts, dtype=object), pd.Series(texts),
                  frame["text"], frame[["text"]].to_numpy(), (t for t in texts), [np.str_(t) for t in texts],
                  [t.encode("utf-8") for t in texts]):
        assert np.array_equal(HashingEncoder().transform(batch), expected)


def test_is_stateless_clonable_and_picklable():
    encoder = HashingEncoder(analyzer="word", ngram_range=(1, 2), n_features=64, norm=None)
    texts = ["one two three", "two three four"]
    assert encoder.fit(texts) is encoder
    expected = encoder.transform(texts)
    assert np.array_equal(clone(encoder).transform(texts), expected)
    assert np.array_equal(pickle.loads(pickle.dumps(encoder)).transform(texts), expected)
    assert np.array_equal(encoder.fit_transform(texts), expected)
    assert encoder.get_params()["n_features"] == 64


def test_feeds_a_finetuner_in_a_pipeline():
    texts = [f"good great fine {i}" for i in range(20)] + [f"bad awful poor {i}" for i in range(20)]
    labels = np.array([0] * 20 + [1] * 20)
    pipeline = make_pipeline(HashingEncoder(n_features=256), FeedForwardFinetuner(hidden_dim=8, n_epochs=50))
    embedded = pipeline.fit(texts, labels).transform(texts)
    assert embedded.shape == (40, 8)
    centres = [embedded[labels == k].mean(axis=0) for k in (0, 1)]
    assert np.linalg.norm(centres[0] - centres[1]) > 0.1


@pytest.mark.parametrize(
    "batch, error, needle",
    [
        (["fine", None], TypeError, "text 1 is None"),
        (["fine", 3], TypeError, "text 1 is a int"),
        (["fine", 2.5], TypeError, "text 1 is a float"),
        ("a single string", TypeError, "single string"),
        ([], ValueError, "0 texts"),
        (["fine", "bad \udc80 surrogate"], ValueError, "text 1 is not valid Unicode"),
        (["fine", b"caf\xc3"], ValueError, "text 1 is not valid UTF-8 at byte 3"),
        ([b"\xff\xfe"], ValueError, "text 0 is not valid UTF-8 at byte 0"),
        (np.array([["a", "b"], ["c", "d"]]), ValueError, "shape (2, 2)"),
        (42, TypeError, "not int"),
    ],
)
def test_bad_batches_raise_clear_errors(batch, error, needle):
    with pytest.raises(error, match=None) as raised:
        HashingEncoder().transform(batch)
    assert needle in str(raised.value)


@pytest.mark.parametrize(
    "settings, error, needle",
    [
        (dict(analyzer="chars"), ValueError, "analyzer"),
        (dict(norm="l3"), ValueError, "norm"),
        (dict(ngram_range=(3, 2)), ValueError, "min_n must not exceed max_n"),
        (dict(ngram_range=(0, 2)), ValueError, "ngram_range[0]"),
        (dict(ngram_range=5), ValueError, "pair"),
        (dict(n_features=0), ValueError, "n_features"),
        (dict(n_features=2**31), ValueError, "n_features"),
        (dict(n_features=10.5), TypeError, "n_features"),
        (dict(n_threads=0), ValueError, "n_threads"),
        (dict(n_threads=1000), ValueError, "n_threads"),
        # Integers beyond the C size_t: a ValueError naming the parameter, not cffi's OverflowError.
        (dict(ngram_range=(1, 2**64)), ValueError, "ngram_range[1] is 18446744073709551616; it must be between 1"),
        (dict(ngram_range=(2**64, 2**65)), ValueError, "ngram_range[0] is 18446744073709551616"),
        (dict(ngram_range=(1, -(2**70))), ValueError, "ngram_range[1]"),
        (dict(n_features=2**64), ValueError, "n_features"),
        (dict(n_threads=2**64), ValueError, "n_threads"),
        (dict(n_threads=np.uint64(2**64 - 1)), ValueError, "n_threads"),
        # Unhashable choices: a ValueError naming the parameter, not "unhashable type".
        (dict(analyzer=["char"]), ValueError, "analyzer is ['char']"),
        (dict(norm={}), ValueError, "norm is {}"),
    ],
)
def test_bad_settings_raise_clear_errors(settings, error, needle):
    with pytest.raises(error) as raised:
        HashingEncoder(**settings).transform(["text"])
    assert needle in str(raised.value)


def assigned_code_points():
    """Every code point Python's Unicode database assigns (surrogates excluded: they cannot be UTF-8)."""
    import unicodedata

    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn"]


@pytest.mark.parametrize(
    "pattern, settings",
    [
        # Lowercasing of every character, alone.
        ("{}", dict(analyzer="char", ngram_range=(1, 1), n_features=1024)),
        # Word characters (Python's re \w): "a?b" is one token exactly when ? is one.
        ("a{}b", dict(analyzer="word", ngram_range=(1, 1), n_features=1024)),
        # Whitespace (str.isspace / re \s): splits "a?b" into two words exactly when ? is one.
        ("a{}b", dict(analyzer="char_wb", ngram_range=(3, 3), n_features=1024)),
        # Final sigma: ? as case-ignorable between a letter and a capital sigma, and ? as cased before one.
        ("ΑΣ{}Α", dict(analyzer="char", ngram_range=(1, 1), n_features=1024)),
        ("{}Σ", dict(analyzer="char", ngram_range=(1, 1), n_features=1024)),
    ],
)
def test_every_assigned_code_point_follows_python(pattern, settings):
    settings = dict(settings, norm=None, alternate_sign=False)
    code_points = assigned_code_points()
    differing = []
    for start in range(0, len(code_points), 10000):
        chunk = code_points[start:start + 10000]
        texts = [pattern.format(chr(c)) for c in chunk]
        ours = HashingEncoder(**settings).transform(texts)
        reference = HashingVectorizer(**settings).transform(texts).toarray()
        differing += [f"U+{chunk[i]:04X}" for i in np.flatnonzero((ours != reference).any(axis=1))]
    assert not differing, f"{len(differing)} code points differ, e.g. {differing[:20]}"


def test_the_largest_ngram_range_the_c_library_takes_works():
    # ngram_range=(1, 2**64 - 1) reaches C as SIZE_MAX: every n-gram length a text has, as for (1, 1000) here.
    texts = ["short words", "ΟΔΟΣ café", "x", "one two three four five six"]
    for analyzer in ("char_wb", "char", "word"):
        widest = HashingEncoder(analyzer=analyzer, ngram_range=(1, 2**64 - 1)).transform(texts)
        wide = HashingEncoder(analyzer=analyzer, ngram_range=(1, 1000)).transform(texts)
        assert np.array_equal(widest, wide), analyzer
        reference = HashingVectorizer(analyzer=analyzer, ngram_range=(1, 1000), n_features=1024).transform(texts)
        assert np.array_equal(wide, reference.toarray().astype(np.float32)), analyzer
    # A range starting beyond every text: no n-gram for "char" and "word", whole padded words for "char_wb".
    far = HashingEncoder(analyzer="word", ngram_range=(2**64 - 1, 2**64 - 1)).transform(texts)
    assert not far.any()


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s['analyzer']}-{s['ngram_range']}-{s['norm']}")
def test_one_long_text_equals_hashing_vectorizer(corpus, settings):
    # The whole corpus as one text (several MB): the scratch of one text is sized by that text.
    text = "\n".join(corpus)
    assert len(text) > 1_000_000
    ours = HashingEncoder(n_threads=1, **settings).transform([text])
    reference = HashingVectorizer(**settings).transform([text]).toarray().astype(np.float32)
    assert np.array_equal(ours, reference)
