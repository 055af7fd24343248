"""learn_lite_text_embeddings / LiteTextEncoder against the installed embetter 0.9.1, and the data-only file.

Tolerances. Both packages run the same scikit-learn code (TfidfVectorizer, then
TruncatedSVD, fitted on the same matrix, with NumPy's global random state seeded
the same way, since 0.9 passes no random_state) and round the same values to
float16, and the file stores those float16 values exactly. So ours must equal
0.9's up to 1e-12, a margin for nothing but the order of floating-point sums.
Against 0.9 *without* lite, the only difference is float16 rounding: each IDF
weight and each component entry is off by at most 2**-11 of itself (round to
nearest), which after the L2 row norm moves a TF-IDF row by at most about
2 * 2**-11 in norm; with unit-norm rows and components an output value then moves
by at most 3 * 2**-11, plus 2**-25 per term for component entries small enough to
be float16 subnormals (absolute error 2**-25).
"""
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from libembetter.grab import ColumnGrabber
from libembetter.text import LiteTextEncoder, learn_lite_text_embeddings

SAME_COMPUTATION = 1e-12


def make_corpus(n_texts=300, n_words=400, seed=0):
    """Texts over a Zipf-like vocabulary, so the TF-IDF matrix has a decaying spectrum like real text."""
    rng = np.random.RandomState(seed)
    words = [f"w{i}" for i in range(n_words)]
    weights = 1.0 / np.arange(1, n_words + 1)
    weights /= weights.sum()
    return [" ".join(rng.choice(words, size=rng.randint(4, 30), p=weights)) for _ in range(n_texts)]


CORPUS = make_corpus()
HELD_OUT = make_corpus(n_texts=40, seed=1)


@pytest.fixture
def seeded_global_rng():
    """Seeds NumPy's global random state per call (0.9's TruncatedSVD draws from it) and restores it afterwards."""
    saved = np.random.get_state()
    yield lambda: np.random.seed(7)
    np.random.set_state(saved)


def embetter_lite():
    from embetter.text import LiteTextEncoder as EmbetterLiteTextEncoder
    from embetter.text import learn_lite_text_embeddings as embetter_learn

    return embetter_learn, EmbetterLiteTextEncoder


@pytest.mark.parametrize("lite", [True, False])
def test_same_embeddings_as_embetter_09(tmp_path, seeded_global_rng, lite):
    embetter_learn, embetter_load = embetter_lite()
    seeded_global_rng()
    theirs = embetter_learn(iter(CORPUS), dim=24, lite=lite, path=str(tmp_path / "theirs.skops"))
    seeded_global_rng()
    ours = learn_lite_text_embeddings(iter(CORPUS), dim=24, lite=lite, path=tmp_path / "ours.lite")
    loaded = LiteTextEncoder(tmp_path / "ours.lite")
    # 0.9.1's own LiteTextEncoder cannot read its file back with today's skops (>= 0.10 refuses trusted=True,
    # CVE-2024-37065), so its saved pipeline is read here by listing the types it holds as trusted.
    import skops.io

    theirs_file = str(tmp_path / "theirs.skops")
    try:
        theirs_loaded = embetter_load(theirs_file)
    except TypeError as error:
        assert "CVE-2024-37065" in str(error)
        theirs_loaded = skops.io.load(theirs_file, trusted=skops.io.get_untrusted_types(file=theirs_file))
    expected = theirs.transform(HELD_OUT)
    assert expected.shape == (len(HELD_OUT), 24) and np.abs(expected).max() > 0.1
    for pipeline in (ours, loaded):
        got = pipeline.transform(HELD_OUT)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=0, atol=SAME_COMPUTATION)
    np.testing.assert_allclose(loaded.transform(CORPUS), theirs_loaded.transform(CORPUS), rtol=0, atol=SAME_COMPUTATION)
    stored = np.float16 if lite else np.float64
    assert loaded[-1].components_.dtype == stored and theirs[-1].components_.dtype == stored
    assert np.asarray(loaded[0].idf_).dtype == np.asarray(theirs[0].idf_).dtype
    assert loaded[0].vocabulary_ == theirs[0].vocabulary_
    assert loaded[0].get_params() == theirs[0].get_params()
    assert loaded[-1].get_params() == theirs[-1].get_params()


def test_lite_differs_from_full_precision_only_by_float16_rounding(seeded_global_rng):
    embetter_learn, _ = embetter_lite()
    seeded_global_rng()
    full = embetter_learn(iter(CORPUS), dim=24, lite=False)
    seeded_global_rng()
    lite = learn_lite_text_embeddings(iter(CORPUS), dim=24, lite=True)
    n_terms = len(full[0].vocabulary_)
    bound = 3 * 2.0**-11 + n_terms * 2.0**-25
    difference = np.abs(lite.transform(HELD_OUT) - full.transform(HELD_OUT)).max()
    assert 0 < difference <= bound, (difference, bound)


def test_lite_file_is_smaller_and_generators_work(tmp_path):
    texts = (text for text in CORPUS)  # read twice inside, through itertools.tee
    learn_lite_text_embeddings(texts, dim=24, lite=True, path=tmp_path / "lite", random_state=0)
    learn_lite_text_embeddings(CORPUS, dim=24, lite=False, path=tmp_path / "full", random_state=0)
    lite_size, full_size = (tmp_path / "lite").stat().st_size, (tmp_path / "full").stat().st_size
    assert lite_size < 0.5 * full_size
    (tmp_path / "plain").touch()  # permissions as the umask gives any new file
    assert (tmp_path / "lite").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    (tmp_path / "plain").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "lite"]  # no temporary files left behind


def test_keywords_go_to_the_step_that_takes_them(tmp_path):
    path = tmp_path / "e.lite"
    first = learn_lite_text_embeddings(CORPUS, dim=8, path=path, ngram_range=(1, 2), min_df=2, random_state=3,
                                       n_iter=7)
    assert first[0].ngram_range == (1, 2) and first[0].min_df == 2
    assert first[-1].random_state == 3 and first[-1].n_iter == 7
    assert any(" " in term for term in first[0].vocabulary_)
    again = learn_lite_text_embeddings(CORPUS, dim=8, ngram_range=(1, 2), min_df=2, random_state=3, n_iter=7)
    assert np.array_equal(first.transform(HELD_OUT), again.transform(HELD_OUT))
    loaded = LiteTextEncoder(str(path))
    assert loaded[0].ngram_range == (1, 2) and loaded[-1].random_state == 3
    assert np.array_equal(loaded.transform(HELD_OUT), first.transform(HELD_OUT))
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_neighbours'"):
        learn_lite_text_embeddings(CORPUS, dim=8, n_neighbours=3)
    with pytest.raises(TypeError, match="n_components is set by dim"):
        learn_lite_text_embeddings(CORPUS, n_components=8)
    with pytest.raises(TypeError, match="single string"):
        learn_lite_text_embeddings("one text", dim=8)
    with pytest.raises(TypeError, match="lite must be True or False"):
        learn_lite_text_embeddings(CORPUS, dim=8, lite="yes")
    with pytest.raises(ValueError, match="dim is 0; it must be a whole number >= 1"):
        learn_lite_text_embeddings(CORPUS, dim=0)
    with pytest.raises(ValueError, match="dim is 300, but the texts hold only 5 distinct terms"):
        learn_lite_text_embeddings(["alpha beta gamma", "beta gamma delta", "gamma delta epsilon"])
    with pytest.raises(FileNotFoundError, match="there is no directory .*missing"):
        learn_lite_text_embeddings(CORPUS, dim=8, path=tmp_path / "missing" / "e.lite")


def test_loaded_encoder_works_in_a_pipeline_clones_and_pickles(tmp_path):
    learned = learn_lite_text_embeddings(CORPUS, dim=8, path=tmp_path / "e.lite", random_state=0)
    frame = pd.DataFrame({"text": HELD_OUT})
    pipeline = make_pipeline(ColumnGrabber("text"), LiteTextEncoder(tmp_path / "e.lite"))
    out = pipeline.transform(frame)
    assert out.shape == (len(HELD_OUT), 8) and np.isfinite(out).all()
    assert np.array_equal(out, learned.transform(HELD_OUT))
    restored = pickle.loads(pickle.dumps(pipeline))
    assert np.array_equal(restored.transform(frame), out)
    # As in 0.9 it is a fitted Pipeline, so fitting it (or a clone) learns new embeddings from the texts given.
    refitted = clone(pipeline).fit(frame)
    assert refitted.transform(frame).shape == (len(HELD_OUT), 8)
    assert len(refitted[-1][0].vocabulary_) != len(pipeline[-1][0].vocabulary_)


def test_functions_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="tokenizer is a function; a lite embedding file holds no code"):
        learn_lite_text_embeddings(CORPUS, dim=8, path=tmp_path / "e.lite", tokenizer=str.split, token_pattern=None)
    with pytest.raises(ValueError, match="analyzer is a function"):
        learn_lite_text_embeddings(CORPUS, dim=8, path=tmp_path / "e.lite", analyzer=str.split)
    with pytest.raises(ValueError, match="strip_accents is a function"):
        learn_lite_text_embeddings(CORPUS, dim=8, path=tmp_path / "e.lite", strip_accents=str.lower)
    assert list(tmp_path.iterdir()) == []
    # Without a path nothing is stored, so a function is fine.
    unsaved = learn_lite_text_embeddings(CORPUS, dim=8, tokenizer=str.split, token_pattern=None)
    assert unsaved.transform(HELD_OUT).shape == (40, 8)


def test_what_could_not_be_loaded_is_not_saved(tmp_path):
    # Texts that are all alike have no variance, so TruncatedSVD's explained_variance_ratio_ is 0 / 0.
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="cannot be saved faithfully: member "
                                                     r"explained_variance_ratio.npy holds nan at \(0,\)"):
        learn_lite_text_embeddings(["the same words"] * 5, dim=2, path=tmp_path / "same.lite")
    assert list(tmp_path.iterdir()) == []


# ---- files that are not what they should be ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lite") / "good.lite"
    learn_lite_text_embeddings(CORPUS, dim=6, path=path, random_state=0, stop_words=["w1", "w2"])
    return path


def members_of(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_members(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def with_setting(change):
    def mutate(members):
        document = json.loads(members["lite-text-embeddings.json"])
        change(document)
        members["lite-text-embeddings.json"] = json.dumps(document).encode()

    return mutate


def with_member(name, data):
    def mutate(members):
        if data is None:
            del members[name]
        else:
            members[name] = data

    return mutate


def set_in(section, key, value):
    def change(document):
        document[section][key] = value

    return change


def delete_in(section, key):
    def change(document):
        del document[section][key]

    return change


def set_top(key, value):
    def change(document):
        document[key] = value

    return change


def components_as_float64(members):
    shape = np.load(io.BytesIO(members["components.npy"])).shape
    members["components.npy"] = npy(np.zeros(shape))

BROKEN_FILES = [
    ("format", with_setting(set_top("format", "skops")), "field format is 'skops'"),
    ("version", with_setting(set_top("version", 2)), "field version is 2; this libembetter reads version 1"),
    ("lite", with_setting(set_top("lite", "yes")), "field lite is 'yes'; it must be true or false"),
    ("missing field", with_setting(lambda d: d.pop("svd")), "field svd is missing"),
    ("extra field", with_setting(set_top("code", "import os")), "field code is not a field of this format"),
    ("ngram_range", with_setting(set_in("tfidf", "ngram_range", [2, 1])), r"field tfidf.ngram_range is \[2, 1\]"),
    ("tokenizer", with_setting(set_in("tfidf", "tokenizer", "os.system")), "field tfidf.tokenizer is 'os.system'"),
    ("dtype", with_setting(set_in("tfidf", "dtype", "object")), "field tfidf.dtype is 'object'"),
    ("norm", with_setting(set_in("tfidf", "norm", "l3")), "field tfidf.norm is 'l3'"),
    ("token_pattern", with_setting(set_in("tfidf", "token_pattern", "(")), "field tfidf.token_pattern is '\\(', not"),
    ("stop_words", with_setting(set_in("tfidf", "stop_words", [1])), r"field tfidf.stop_words is \[1\]"),
    ("min_df", with_setting(set_in("tfidf", "min_df", -1)), "field tfidf.min_df is -1"),
    ("missing setting", with_setting(delete_in("tfidf", "lowercase")), "field tfidf.lowercase is missing"),
    ("unknown setting", with_setting(set_in("svd", "callback", "x")), "field svd.callback is not a setting"),
    ("random_state", with_setting(set_in("svd", "random_state", 1.5)), "field svd.random_state is 1.5"),
    ("n_components", with_setting(set_in("svd", "n_components", 7)),
     r"member components.npy has shape \(6, \d+\); the settings and vocabulary call for \(7, \d+\)"),
    ("vocabulary type", with_setting(set_top("vocabulary", {"w1": 0})), "field vocabulary must be a non-empty list"),
    ("vocabulary term", with_setting(lambda d: d["vocabulary"].__setitem__(3, 17)),
     r"field vocabulary\[3\] is 17; every term must be a string"),
    ("vocabulary repeat", with_setting(lambda d: d["vocabulary"].__setitem__(4, d["vocabulary"][0])),
     r"field vocabulary\[4\] repeats the term"),
    ("vocabulary short", with_setting(lambda d: d["vocabulary"].pop()), r"member idf.npy has shape"),
    ("not JSON", with_member("lite-text-embeddings.json", b"{not json"), "lite-text-embeddings.json is not valid JSON"),
    ("JSON list", with_member("lite-text-embeddings.json", b"[]"), "must hold a JSON object"),
    ("no components", with_member("components.npy", None), "has no member components.npy"),
    ("truncated array", with_member("singular_values.npy", b"\x93NUMPY\x01\x00"),
     "singular_values.npy is not a readable"),
    ("int array", with_member("singular_values.npy", npy(np.arange(6))), "singular_values.npy has dtype int64"),
    ("NaN", with_member("explained_variance.npy", npy(np.array([1.0, np.nan, 1, 1, 1, 1]))),
     r"explained_variance.npy holds nan at \(1,\)"),
    ("lite dtype", components_as_float64, "components.npy has dtype float64; a file with lite true stores it as"),
]


@pytest.mark.parametrize("name, mutate, message", BROKEN_FILES, ids=[case[0] for case in BROKEN_FILES])
def test_a_broken_field_is_named(tmp_path, good_file, name, mutate, message):
    members = members_of(good_file)
    mutate(members)
    path = write_members(tmp_path / "broken.lite", members)
    with pytest.raises(ValueError, match=message) as raised:
        LiteTextEncoder(path)
    assert str(raised.value).startswith(f"{path}: ")


def test_the_good_file_loads(good_file):
    loaded = LiteTextEncoder(good_file)
    assert loaded.transform(HELD_OUT).shape == (40, 6)
    assert loaded[0].stop_words == ["w1", "w2"]


class TouchOnLoad:
    """Unpickling this creates a file: proof of code run by a loader."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_payload_is_refused_and_not_run(tmp_path, good_file):
    marker = tmp_path / "payload-ran"
    payload = np.empty(6, dtype=object)
    payload[:] = [TouchOnLoad(marker)] * 6
    members = members_of(good_file)
    members["singular_values.npy"] = npy(payload, allow_pickle=True)
    path = write_members(tmp_path / "payload.lite", members)
    # The payload is real: loading the member with pickles allowed runs it.
    np.load(io.BytesIO(members["singular_values.npy"]), allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError, match="singular_values.npy holds Python objects .a pickle.; they are refused"):
        LiteTextEncoder(path)
    assert not marker.exists()


def test_missing_files_and_other_formats(tmp_path, good_file):
    with pytest.raises(FileNotFoundError, match="gone.lite: no such lite text embedding file"):
        LiteTextEncoder(tmp_path / "gone.lite")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        LiteTextEncoder(tmp_path)
    (tmp_path / "text.lite").write_text("hello")
    with pytest.raises(ValueError, match=r"text.lite is not a lite text embedding file \(not a zip archive\)"):
        LiteTextEncoder(tmp_path / "text.lite")
    (tmp_path / "cut.lite").write_bytes(good_file.read_bytes()[:-40])
    with pytest.raises(ValueError, match="cut.lite"):
        LiteTextEncoder(tmp_path / "cut.lite")
    with pytest.raises(TypeError, match="path must be a file path"):
        LiteTextEncoder(None)


def test_any_flipped_byte_loads_or_is_named(tmp_path, good_file):
    """Damage anywhere in the file gives the same pipeline or a ValueError naming the file, never anything else."""
    original = good_file.read_bytes()
    expected = LiteTextEncoder(good_file).transform(HELD_OUT)
    damaged = tmp_path / "damaged.lite"
    outcomes = {"loaded": 0, "refused": 0}
    for offset in np.linspace(0, len(original) - 1, 300).astype(int):
        data = bytearray(original)
        data[offset] ^= 0x5A
        damaged.write_bytes(bytes(data))
        try:
            loaded = LiteTextEncoder(damaged)
        except ValueError as error:
            assert str(error).startswith(str(damaged)), (offset, error)
            outcomes["refused"] += 1
            continue
        # Bytes zip does not check (timestamps, the central directory's copies) may change and still load.
        assert np.array_equal(loaded.transform(HELD_OUT), expected), offset
        outcomes["loaded"] += 1
    assert outcomes["refused"] > 200, outcomes


def test_embetter_09_skops_files_are_not_read(tmp_path):
    embetter_learn, _ = embetter_lite()
    embetter_learn(iter(CORPUS), dim=6, path=str(tmp_path / "theirs.skops"))
    with pytest.raises(ValueError, match="no member lite-text-embeddings.json.*skops files are not read"):
        LiteTextEncoder(tmp_path / "theirs.skops")
