"""Every kind of bad input against every estimator, in one table.

Each row names an estimator, a bad call and what it must raise: the exception
type and a regular expression the message must match, which names the
problem (the row and column, the item, the parameter). Every row also checks
that the call emits no warning and that the estimator afterwards transforms
valid input to bit-identical output (for the finetuners: the same C model
bytes, classes and feature count too), i.e. the failed call changed nothing.
The decisions behind the rows are in docs/bad-input.md.
"""
import re
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import scipy.sparse
from PIL import Image

from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner
from libembetter.finetune._base import FinetunerBase
from libembetter.text import HashingEncoder, WordVectorEncoder
from libembetter.vision import ColorHistogramEncoder, ImageLoader

from conftest import make_blobs_dataset

X, Y = make_blobs_dataset(n_per_class=20, n_features=8, n_classes=3)
TEXTS = ["hello world", "the cat sat", "naïve café"]
IMAGES = [np.random.RandomState(0).randint(0, 256, (5, 7, 3)).astype(np.uint8),
          np.random.RandomState(1).randint(0, 256, (4, 3, 3)).astype(np.uint8)]


# scikit-learn's own messages, in the wording of 1.2 (Debian 12) or of today's releases.
SPARSE_REFUSED = (
    r"(A sparse matrix was passed|Sparse data was passed for X), but dense data is required\. "
    r"Use (X\.toarray\(\)|'\.toarray\(\)') to convert to a dense numpy array"
)
CONTINUOUS_Y_REFUSED = r"Unknown label type: ('continuous'|continuous\. Maybe you are trying to fit a classifier)"


def with_value(value, row=3, column=2):
    bad = X.copy()
    bad[row, column] = value
    return bad


def object_matrix(value):
    bad = X.astype(object)
    bad[1, 4] = value
    return bad


def string_matrix():
    bad = X.astype(str)
    bad[2, 5] = "seven"
    return bad


def with_nan_label():
    labels = Y.astype(float)
    labels[4] = np.nan
    return labels


@dataclass
class Subject:
    """A ready estimator (fitted for the finetuners) and a valid input to compare its output on."""
    estimator: object
    valid: object

    def snapshot(self):
        output = self.estimator.transform(self.valid)
        if isinstance(output, list):  # ImageLoader gives images
            output = [np.asarray(image) for image in output]
            return [image.tobytes() for image in output]
        state = [output.tobytes()]
        if isinstance(self.estimator, FinetunerBase):
            native = self.estimator._native
            state += [native.to_bytes(), self.estimator.classes_.tolist(), self.estimator.n_features_in_]
        return state


def feedforward(_):
    return Subject(FeedForwardFinetuner(hidden_dim=3, n_epochs=3, random_state=0).fit(X, Y), X)


def contrastive(_):
    return Subject(ContrastiveFinetuner(hidden_dim=3, n_epochs=2, random_state=0).fit(X, Y), X)


def hashing(_):
    return Subject(HashingEncoder(n_features=64), TEXTS)


def word_vectors(tmp_path):
    path = tmp_path / "vectors.vec"
    path.write_text("4 3\nhello 1 0 0\nworld 0 1 0\ncat 0 0 1\ncafé 1 1 1\n", encoding="utf-8")
    encoder = WordVectorEncoder(path)
    encoder.fit()
    return Subject(encoder, TEXTS)


def color_histogram(_):
    return Subject(ColorHistogramEncoder(n_buckets=8), IMAGES)


def image_loader(tmp_path):
    paths = []
    for i, array in enumerate(IMAGES):
        paths.append(str(tmp_path / f"image{i}.png"))
        Image.fromarray(array).save(paths[-1])
    (tmp_path / "not-an-image.png").write_bytes(b"plain text, not a PNG")
    # out="pil": the two valid images differ in size, which out="numpy" cannot stack (a case below).
    return Subject(ImageLoader(), paths)


SUBJECTS = {f.__name__: f for f in (feedforward, contrastive, hashing, word_vectors, color_histogram, image_loader)}
FINETUNERS = ("feedforward", "contrastive")
TEXT_ENCODERS = ("hashing", "word_vectors")


@dataclass
class Case:
    subject: str
    name: str
    call: Callable  # call(estimator, valid_input, tmp_path) makes the bad call
    error: type
    message: str

    @property
    def id(self):
        return f"{self.subject}-{self.name}"


def finetuner_cases(subject):
    name = {"feedforward": "FeedForwardFinetuner", "contrastive": "ContrastiveFinetuner"}[subject]
    nan_cell = r"X\[3, 2\] is NaN \(row 3, column 2\)"
    cases = [
        Case(subject, "NaN fit", lambda e, v, t: e.fit(with_value(np.nan), Y), ValueError, nan_cell),
        Case(subject, "NaN transform", lambda e, v, t: e.transform(with_value(np.nan)), ValueError, nan_cell),
        Case(subject, "NaN partial_fit", lambda e, v, t: e.partial_fit(with_value(np.nan), Y), ValueError, nan_cell),
        Case(subject, "+Inf fit", lambda e, v, t: e.fit(with_value(np.inf, 0, 7), Y), ValueError,
             r"X\[0, 7\] is \+?Inf \(row 0, column 7\)"),
        Case(subject, "-Inf transform", lambda e, v, t: e.transform(with_value(-np.inf, 9, 0)), ValueError,
             r"X\[9, 0\] is -Inf \(row 9, column 0\)"),
        Case(subject, "-Inf partial_fit", lambda e, v, t: e.partial_fit(with_value(-np.inf, 9, 0), Y), ValueError,
             r"X\[9, 0\] is -Inf"),
        Case(subject, "empty fit", lambda e, v, t: e.fit(X[:0], Y[:0]), ValueError, r"0 sample\(s\)"),
        Case(subject, "empty transform", lambda e, v, t: e.transform(X[:0]), ValueError, r"0 sample\(s\)"),
        Case(subject, "empty partial_fit", lambda e, v, t: e.partial_fit(X[:0], Y[:0]), ValueError, r"0 sample\(s\)"),
        Case(subject, "1-D fit", lambda e, v, t: e.fit(X[0], Y[:8]), ValueError, "Expected 2D array, got 1D array"),
        Case(subject, "1-D transform", lambda e, v, t: e.transform(X[0]), ValueError, "Expected 2D array, got 1D"),
        Case(subject, "3-D fit", lambda e, v, t: e.fit(X[:, :, None], Y), ValueError, "Found array with dim 3"),
        Case(subject, "3-D transform", lambda e, v, t: e.transform(X[:, :, None]), ValueError, "array with dim 3"),
        Case(subject, "object dtype dict", lambda e, v, t: e.transform(object_matrix({})), TypeError,
             r"X\[1, 4\] is \{\} \(a dict\), not a number"),
        Case(subject, "object dtype None", lambda e, v, t: e.fit(object_matrix(None), Y), ValueError,
             r"X\[1, 4\] is NaN"),
        Case(subject, "strings fit", lambda e, v, t: e.fit(string_matrix(), Y), ValueError,
             r"X\[2, 5\] is 'seven' \(a str\), not a number"),
        Case(subject, "strings transform", lambda e, v, t: e.transform(string_matrix()), ValueError,
             r"X\[2, 5\] is 'seven'"),
        Case(subject, "texts instead of vectors", lambda e, v, t: e.transform(TEXTS), ValueError,
             r"X\[0\] is 'hello world' \(a str\), not a number .*encode texts"),
        Case(subject, "sparse fit", lambda e, v, t: e.fit(scipy.sparse.csr_matrix(X), Y), TypeError,
             SPARSE_REFUSED),
        Case(subject, "sparse transform", lambda e, v, t: e.transform(scipy.sparse.csr_matrix(X)), TypeError,
             SPARSE_REFUSED),
        Case(subject, "sparse partial_fit", lambda e, v, t: e.partial_fit(scipy.sparse.csr_matrix(X), Y),
             TypeError, SPARSE_REFUSED),
        Case(subject, "n_features transform", lambda e, v, t: e.transform(X[:, :5]), ValueError,
             f"X has 5 features, but {name} is expecting 8 features"),
        Case(subject, "n_features partial_fit", lambda e, v, t: e.partial_fit(X[:, :5], Y), ValueError,
             f"X has 5 features, but {name} is expecting 8 features"),
        Case(subject, "y length fit", lambda e, v, t: e.fit(X, Y[:-1]), ValueError,
             r"inconsistent numbers of samples: \[60, 59\]"),
        Case(subject, "y length partial_fit", lambda e, v, t: e.partial_fit(X[:10], Y[:11]), ValueError,
             r"inconsistent numbers of samples: \[10, 11\]"),
        Case(subject, "y NaN fit", lambda e, v, t: e.fit(X, with_nan_label()), ValueError, "y contains NaN"),
        Case(subject, "y NaN partial_fit", lambda e, v, t: e.partial_fit(X, with_nan_label()), ValueError,
             "y contains NaN"),
        Case(subject, "unseen label partial_fit", lambda e, v, t: e.partial_fit(X[:4], np.array([0, 1, 7, 2])),
             ValueError, r"y\[2\] is 7, a label not in classes_ \[0, 1, 2\]"),
        Case(subject, "continuous y", lambda e, v, t: e.fit(X, np.linspace(0, 1, len(X))), ValueError,
             CONTINUOUS_Y_REFUSED),
    ]
    if subject == "contrastive":
        cases.append(Case(subject, "single class fit", lambda e, v, t: e.fit(X, np.zeros(len(X))), ValueError,
                          "needs at least 2 classes to learn from; y has 1 class"))
        cases.append(Case(subject, "single class first partial_fit",
                          lambda e, v, t: type(e)().partial_fit(X, Y * 0, classes=[0]), ValueError,
                          "needs at least 2 classes to learn from; y has 1 class"))
    params = ["hidden_dim", "n_epochs", "learning_rate", "batch_size"] + (["n_neg"] if subject == "contrastive" else [])
    for param in params:
        for value in (0, -1):
            for method in ("fit", "partial_fit"):
                def bad_call(e, v, t, param=param, value=value, method=method):
                    original = e.get_params()[param]
                    e.set_params(**{param: value})
                    try:
                        getattr(e, method)(X, Y)
                    finally:
                        e.set_params(**{param: original})

                cases.append(Case(subject, f"{param}={value} {method}", bad_call, ValueError,
                                  rf"The '{param}' parameter of {name} must be .* Got {value} instead"))
    return cases


def text_cases(subject):
    cases = [
        Case(subject, "NaN", lambda e, v, t: e.transform(["ok", np.nan]), TypeError, "text 1 is a float, not a str"),
        Case(subject, "+Inf", lambda e, v, t: e.transform([np.inf]), TypeError, "text 0 is a float"),
        Case(subject, "-Inf", lambda e, v, t: e.transform(np.array(["a", -np.inf], dtype=object)), TypeError,
             "text 1 is a float"),
        Case(subject, "empty", lambda e, v, t: e.transform([]), ValueError, "the batch holds 0 texts"),
        Case(subject, "1-D numbers", lambda e, v, t: e.transform(np.array([1.5, 2.5])), TypeError,
             "text 0 is a float, not a str"),
        Case(subject, "2-D", lambda e, v, t: e.transform(np.array([["a", "b"], ["c", "d"]])), ValueError,
             r"X has shape \(2, 2\); a batch of texts is one-dimensional"),
        Case(subject, "3-D", lambda e, v, t: e.transform(np.array([[["a"]]])), ValueError,
             r"X has shape \(1, 1, 1\)"),
        Case(subject, "object dtype int", lambda e, v, t: e.transform(np.array(["a", 3], dtype=object)), TypeError,
             "text 1 is a int, not a str"),
        Case(subject, "None", lambda e, v, t: e.transform(["a", None]), TypeError, "text 1 is None"),
        Case(subject, "a single string", lambda e, v, t: e.transform("hello"), TypeError, "X is a single string"),
        Case(subject, "sparse", lambda e, v, t: e.transform(scipy.sparse.csr_matrix(X)), TypeError,
             "text 0 is a csr_matrix"),
        Case(subject, "invalid UTF-8", lambda e, v, t: e.transform([b"ok", b"caf\xe9"]), ValueError,
             r"row 1.*byte 3|text 1.*byte 3"),
        Case(subject, "lone surrogate", lambda e, v, t: e.transform(["ok", "\ud800"]), ValueError,
             "text 1 is not valid Unicode"),
        Case(subject, "n_threads=0", lambda e, v, t: e.set_params(n_threads=0).transform(v), ValueError,
             r"n_threads is 0; it must be None \(automatic\) or 1\.\.64"),
    ]
    if subject == "hashing":
        cases += [
            Case(subject, f"n_features={n}", lambda e, v, t, n=n: e.set_params(n_features=n).transform(v), ValueError,
                 rf"n_features is {n}; it must be between 1 and 2147483647")
            for n in (0, -1)
        ]
        cases.append(Case(subject, "ngram_range=(0, 2)", lambda e, v, t: e.set_params(ngram_range=(0, 2)).transform(v),
                          ValueError, r"ngram_range\[0\] is 0; it must be >= 1"))
    else:
        cases.append(Case(subject, "missing file", lambda e, v, t: e.set_params(path=t / "none.vec").transform(v),
                          OSError, r"cannot open .*none\.vec: No such file"))
        cases.append(Case(subject, "malformed file", lambda e, v, t: malformed_vectors(e, v, t, "world 1 2\n"),
                          ValueError, "line 3: 2 values after the word, expected 3"))
        # Found by tests/fuzz/fuzz_word_vectors.c: this 17-byte file used to make the loader allocate 4 GB.
        cases.append(Case(subject, "header announcing 10^9 dimensions",
                          lambda e, v, t: malformed_vectors(e, v, t, "a 1\n", header="1 1000000000"), ValueError,
                          "line 2 has 3 bytes, too few for the 1000000000 values the header announces"))
    return cases


def malformed_vectors(encoder, valid, tmp_path, last_line, header="2 3"):
    path = tmp_path / "broken.vec"
    path.write_text(f"{header}\n" + ("hello 1 2 3\n" if header == "2 3" else "") + last_line)
    encoder.set_params(path=path).transform(valid)


def image_cases(subject):
    picture = IMAGES[0]
    return [
        Case(subject, "NaN", lambda e, v, t: e.transform([picture, np.nan]), TypeError, "image 1 is a float"),
        Case(subject, "+Inf", lambda e, v, t: e.transform([np.inf]), TypeError, "image 0 is a float"),
        Case(subject, "empty", lambda e, v, t: e.transform([]), ValueError, "the batch holds 0 images"),
        Case(subject, "1-D", lambda e, v, t: e.transform(np.arange(6, dtype=np.uint8)), TypeError,
             "image 0 is a uint8"),
        Case(subject, "2-D: one grey image", lambda e, v, t: e.transform(picture[:, :, 0]), TypeError,
             "X is a single image; pass a list of images"),
        Case(subject, "3-D: one image", lambda e, v, t: e.transform(picture), TypeError, "X is a single image"),
        Case(subject, "5-D", lambda e, v, t: e.transform(picture[None, None]), ValueError,
             r"image 0 has shape \(1, 5, 7, 3\); expected H x W"),
        Case(subject, "object dtype with None", lambda e, v, t: e.transform(np.array([picture, None], dtype=object)),
             TypeError, "image 1 is None"),
        Case(subject, "strings", lambda e, v, t: e.transform(["photo.png"]), TypeError, "image 0 is a str"),
        Case(subject, "sparse", lambda e, v, t: e.transform(scipy.sparse.csr_matrix(X)), TypeError,
             "image 0 is a csr_matrix"),
        Case(subject, "float pixels", lambda e, v, t: e.transform([picture / 255.0]), TypeError,
             "image 0 has dtype float64; ColorHistogramEncoder takes uint8"),
        Case(subject, "NaN pixels", lambda e, v, t: e.transform([np.full((2, 2, 3), np.nan)]), TypeError,
             "image 0 has dtype float64"),
        Case(subject, "two channels", lambda e, v, t: e.transform([picture[:, :, :2]]), ValueError,
             r"image 0 has shape \(5, 7, 2\)"),
        Case(subject, "zero pixels", lambda e, v, t: e.transform([picture, picture[:0]]), ValueError,
             "image 1 is 7 x 0 pixels; it must have at least one"),
    ] + [
        Case(subject, f"n_buckets={n}", lambda e, v, t, n=n: e.set_params(n_buckets=n).transform(v), ValueError,
             rf"n_buckets is {n}; it must be between 1 and 256")
        for n in (0, -1, 257)
    ] + [
        Case(subject, "n_threads=-2", lambda e, v, t: e.set_params(n_threads=-2).transform(v), ValueError,
             "n_threads is -2"),
    ]


def loader_cases(subject):
    return [
        Case(subject, "NaN", lambda e, v, t: e.transform([v[0], np.nan]), TypeError,
             r"image 1 is a float; pass paths \(str or Path\) or open files"),
        Case(subject, "+Inf", lambda e, v, t: e.transform([np.inf]), TypeError, "image 0 is a float"),
        Case(subject, "empty", lambda e, v, t: e.transform([]), ValueError, "the batch holds 0 paths"),
        Case(subject, "2-D", lambda e, v, t: e.transform(np.array([v, v])), ValueError,
             r"X has shape \(2, 2\); a batch of paths is one-dimensional"),
        Case(subject, "3-D", lambda e, v, t: e.transform(np.array([[v]])), ValueError, r"X has shape \(1, 1, 2\)"),
        Case(subject, "object dtype int", lambda e, v, t: e.transform(np.array([v[0], 3], dtype=object)), TypeError,
             "image 1 is a int"),
        Case(subject, "None", lambda e, v, t: e.transform([None]), TypeError, "image 0 is a NoneType"),
        Case(subject, "a single path", lambda e, v, t: e.transform(v[0]), TypeError, "X is a single path"),
        Case(subject, "sparse", lambda e, v, t: e.transform(scipy.sparse.csr_matrix(X)), TypeError,
             "image 0 is a csr_matrix"),
        Case(subject, "missing file", lambda e, v, t: e.transform([v[0], str(t / "gone.png")]), FileNotFoundError,
             r"image 1: no file '.*gone\.png'"),
        Case(subject, "not an image", lambda e, v, t: e.transform([str(t / "not-an-image.png")]), ValueError,
             r"image 0 \('.*not-an-image\.png'\) cannot be read: cannot identify image file"),
        Case(subject, "out='tensor'", lambda e, v, t: e.set_params(out="tensor").transform(v), ValueError,
             "out is 'tensor'; it must be 'pil' or 'numpy'"),
        Case(subject, "out='numpy', sizes differ", lambda e, v, t: e.set_params(out="numpy").transform(v), ValueError,
             "image 1 is 3 x 4 pixels in mode RGB, image 0 is 7 x 5 in mode RGB; out='numpy' stacks"),
    ]


CASES = (
    [case for subject in FINETUNERS for case in finetuner_cases(subject)]
    + [case for subject in TEXT_ENCODERS for case in text_cases(subject)]
    + image_cases("color_histogram")
    + loader_cases("image_loader")
)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(case, tmp_path):
    subject = SUBJECTS[case.subject](tmp_path)
    estimator = subject.estimator
    params = estimator.get_params()
    before = subject.snapshot()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(case.error) as raised:
            case.call(estimator, subject.valid, tmp_path)
    assert re.search(case.message, str(raised.value)), f"{raised.value!r} does not match {case.message!r}"
    assert [str(w.message) for w in caught] == []
    # Parameters the case changed on purpose are put back before comparing.
    estimator.set_params(**params)
    assert subject.snapshot() == before


def test_every_estimator_has_rows_for_every_input_problem():
    """The table stays a matrix: each estimator is checked against each problem that applies to it."""
    names = {}
    for case in CASES:
        names.setdefault(case.subject, set()).add(case.name.split(" ")[0])
    for subject in SUBJECTS:
        assert {"NaN", "+Inf", "-Inf", "empty", "sparse"} - names[subject] <= {"-Inf"}, subject
    for subject in FINETUNERS:
        assert {"1-D", "3-D", "object", "strings", "n_features", "y", "unseen"} <= names[subject]
        assert {f"{p}={v}" for p in ("hidden_dim", "n_epochs", "learning_rate", "batch_size") for v in (0, -1)} <= names[subject]
    assert {"n_neg=0", "n_neg=-1", "single"} <= names["contrastive"]
