"""The fortunes walk-through runs, draws its plots, shows fine-tuning helping,
and the numbers in docs/finetuners.md are the ones it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "python"
WALKTHROUGH = EXAMPLES / "finetune_walkthrough.py"
GUIDE = REPO_ROOT / "docs" / "finetuners.md"

sys.path.insert(0, str(EXAMPLES))
import fortunes_data  # noqa: E402

TASKS = ("two-class", "five-class")
PLOTS = [f"{task}_{name}.png" for task in TASKS
         for name in ("raw", "feedforward", "feedforward_dim10", "contrastive", "overview")] + ["five-class_streamed.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SECTION = re.compile(r"^== (?P<task>[a-z-]+): ")
TABLE_ROW = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<dims>\d+)\s+(?P<logreg>\d\.\d{3})\s+(?P<knn>\d\.\d{3})"
    r"\s+(?P<silhouette>[+-]\d\.\d{3})\s+(?P<plot>\S+\.png)$"
)
TUNED_LINE = re.compile(r"^raw features, logreg with C=\S+ chosen by 5-fold CV on the training rows: (\d\.\d{3})$")


def parse_table(text: str) -> dict[str, dict]:
    """Rows keyed "task/embedding"; each task's tuned-logreg line as "task/tuned raw logreg"."""
    rows = {}
    task = None
    for line in text.splitlines():
        line = line.rstrip()
        section = SECTION.match(line)
        if section:
            task = section.group("task")
            continue
        match = TABLE_ROW.match(line)
        if match:
            row = match.groupdict()
            for key in ("logreg", "knn", "silhouette"):
                row[key] = float(row[key])
            row["dims"] = int(row["dims"])
            rows[f"{task}/{row['name']}"] = row
        tuned = TUNED_LINE.match(line)
        if tuned:
            rows[f"{task}/tuned raw logreg"] = {"logreg": float(tuned.group(1))}
    return rows


def row_starting(rows, task, prefix):
    found = [row for name, row in rows.items() if name.startswith(f"{task}/{prefix}")]
    assert len(found) == 1, f"expected one {task} table row starting {prefix!r}, found {list(rows)}"
    return found[0]


def run_walkthrough(cwd: Path, *args: str, env=None, expect_exit=0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(WALKTHROUGH), *args],
        cwd=cwd, capture_output=True, text=True, timeout=900,
        env={**os.environ, "MPLBACKEND": "Agg", **(env or {})},
    )
    assert result.returncode == expect_exit, (
        f"walkthrough exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def assert_valid_png(path: Path):
    assert path.is_file(), f"{path.name} was not written"
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path.name} does not start with the PNG signature"
    import matplotlib.image

    pixels = matplotlib.image.imread(path)  # decodes the whole file
    assert pixels.shape[0] >= 200 and pixels.shape[1] >= 200, f"{path.name} is only {pixels.shape}"
    assert float(np.std(pixels)) > 0.01, f"{path.name} is a blank image"


def assert_complete_tables(rows, raw_dims):
    assert len(rows) == 4 + 1 + 5 + 1, rows  # rows and the tuned line of each task
    for task in TASKS:
        assert row_starting(rows, task, "raw")["dims"] == raw_dims
        assert row_starting(rows, task, "feed-forward, hidden_dim=50")["dims"] == 50
        assert row_starting(rows, task, "feed-forward, hidden_dim=10")["dims"] == 10
        assert row_starting(rows, task, "contrastive")["dims"] == raw_dims
    assert row_starting(rows, "five-class", "feed-forward, partial_fit")["dims"] == 50
    for row in rows.values():
        for key in ("logreg", "knn"):
            if key in row:
                assert 0.0 <= row[key] <= 1.0


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The default run, MiniLM embeddings (the model files must be fetched: bash scripts/fetch-models.sh)."""
    workdir = tmp_path_factory.mktemp("full")
    # Without --out the plots go to ./walkthrough-output.
    result = run_walkthrough(workdir)
    return workdir / "walkthrough-output", result.stdout, parse_table(result.stdout)


def test_full_run_uses_the_sentence_encoder(full_run):
    _, stdout, rows = full_run
    assert "encoder: sentence embeddings of all-MiniLM-L6-v2" in stdout, stdout
    assert "FALLBACK" not in stdout
    assert_complete_tables(rows, raw_dims=384)


def test_full_run_writes_valid_pngs(full_run):
    out, _, _ = full_run
    for name in PLOTS:
        assert_valid_png(out / name)


@pytest.mark.parametrize("finetuned", ["feed-forward, hidden_dim=50", "feed-forward, hidden_dim=10", "contrastive"])
def test_every_finetuner_pulls_the_two_classes_apart(full_run, finetuned):
    _, stdout, rows = full_run
    assert row_starting(rows, "two-class", finetuned)["silhouette"] > row_starting(rows, "two-class", "raw")[
        "silhouette"], stdout


def test_full_run_labels_new_texts_through_the_pipeline(full_run):
    _, stdout, _ = full_run
    lines = stdout.split("pipeline text -> encoder -> finetuner -> logreg", 1)[1].splitlines()[1:4]
    predicted = [line.split("<-")[0].strip() for line in lines]
    assert len(predicted) == 3 and set(predicted) <= set(fortunes_data.DEFAULT_CATEGORIES), stdout


def docs_table() -> dict[str, dict]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## The numbers, from the script", 1)
    assert len(section) == 2, "docs/finetuners.md lost its 'The numbers, from the script' section"
    block = re.search(r"```text\n(.*?)```", section[1], re.S)
    assert block, "no text block with the script's table in docs/finetuners.md"
    return parse_table(block.group(1))


def test_full_run_prints_the_numbers_in_the_guide(full_run):
    _, stdout, printed = full_run
    documented = docs_table()
    assert set(printed) == set(documented), (sorted(printed), sorted(documented))
    # Same machine kind, same seeds: equal to the last digit in practice; the
    # tolerance only absorbs a BLAS build that sums in another order.
    for name, row in documented.items():
        for key, value in row.items():
            if isinstance(value, float):
                assert printed[name][key] == pytest.approx(value, abs=0.01), (name, key, stdout)
            else:
                assert printed[name][key] == value, (name, key)


def test_missing_model_falls_back_to_hashing_and_says_so(tmp_path):
    out = tmp_path / "plots"
    result = run_walkthrough(tmp_path, "--quick", "--out", str(out),
                             env={"LIBEMBETTER_MODEL_CACHE": str(tmp_path / "empty-cache")})
    stdout = result.stdout
    assert "encoder: hashed character n-grams, 1024 dims: FALLBACK" in stdout, stdout
    assert "bash scripts/fetch-models.sh all-MiniLM-L6-v2" in stdout
    assert "quick run:" in stdout
    rows = parse_table(stdout)
    assert_complete_tables(rows, raw_dims=1024)
    for name in PLOTS:
        assert_valid_png(out / name)
    # On hashed n-grams every finetuner beats the raw features on the five categories, on all three counts.
    raw = row_starting(rows, "five-class", "raw")
    for finetuned in ("feed-forward, hidden_dim=50", "feed-forward, hidden_dim=10", "feed-forward, partial_fit",
                      "contrastive"):
        tuned = row_starting(rows, "five-class", finetuned)
        for key in ("logreg", "knn", "silhouette"):
            assert tuned[key] > raw[key], (finetuned, key, stdout)


def test_sentence_encoder_required_but_missing_is_a_clear_error(tmp_path):
    result = run_walkthrough(tmp_path, "--quick", "--encoder", "sentence", expect_exit=1,
                             env={"LIBEMBETTER_MODEL_CACHE": str(tmp_path / "empty-cache")})
    assert "bash scripts/fetch-models.sh all-MiniLM-L6-v2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "walkthrough-output").exists()


def test_walkthrough_rejects_unknown_arguments(tmp_path):
    result = run_walkthrough(tmp_path, "--epochs", "3", expect_exit=2)
    assert "unrecognized arguments: --epochs" in result.stderr


def test_walkthrough_without_the_data_says_how_to_install_it(tmp_path):
    result = run_walkthrough(tmp_path, "--quick", "--fortunes-dir", str(tmp_path / "absent"), expect_exit=1)
    assert "apt-get install fortunes" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "walkthrough-output").exists()


# ---- the corpus loader ---------------------------------------------------------


def test_parse_fortunes_splits_on_percent_lines_only():
    text = "first\n  indented line\n%\n\n%\nsecond 100% sure\n%\nlast, no closing separator\n"
    assert fortunes_data.parse_fortunes(text) == [
        "first\n  indented line",
        "second 100% sure",
        "last, no closing separator",
    ]


def test_default_categories_give_enough_texts():
    texts, labels = fortunes_data.load_fortunes()
    assert len(texts) == len(labels) >= 2200
    assert set(labels) == set(fortunes_data.DEFAULT_CATEGORIES)
    assert all(text.strip() == text and text for text in texts)
    assert not any("\n%\n" in f"\n{text}\n" for text in texts)


def test_categories_skip_index_files_and_symlinks(tmp_path):
    (tmp_path / "jokes").write_text("a\n%\nb\n", encoding="utf-8")
    (tmp_path / "jokes.dat").write_bytes(b"\x00\x00\x00\x02")
    (tmp_path / "jokes.u8").symlink_to(tmp_path / "jokes")
    (tmp_path / "poems").write_text("c\n", encoding="utf-8")
    assert fortunes_data.available_categories(tmp_path) == ["jokes", "poems"]
    texts, labels = fortunes_data.load_fortunes(["jokes", "poems"], tmp_path)
    assert texts == ["a", "b", "c"]
    assert list(labels) == ["jokes", "jokes", "poems"]


def test_missing_package_says_how_to_install(tmp_path):
    with pytest.raises(fortunes_data.FortunesNotInstalled, match="apt-get install fortunes"):
        fortunes_data.load_fortunes(["computers", "zippy"], tmp_path / "absent")


def test_unknown_category_lists_the_available_ones(tmp_path):
    (tmp_path / "jokes").write_text("a\n", encoding="utf-8")
    with pytest.raises(fortunes_data.FortunesNotInstalled, match=r"'riddles' not found .*available: jokes"):
        fortunes_data.load_fortunes(["jokes", "riddles"], tmp_path)


def test_invalid_utf8_names_file_and_byte(tmp_path):
    (tmp_path / "good").write_text("fine\n", encoding="utf-8")
    (tmp_path / "bad").write_bytes(b"caf\xe9\n%\nok\n")
    with pytest.raises(ValueError, match=r"bad is not valid UTF-8 at byte 3"):
        fortunes_data.load_fortunes(["good", "bad"], tmp_path)


def test_one_category_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least two categories"):
        fortunes_data.load_fortunes(["computers"])


def test_examples_share_one_encoder_setting():
    import json

    import finetune_walkthrough

    from libembetter.text import HashingEncoder

    walkthrough = HashingEncoder(**finetune_walkthrough.ENCODER_SETTINGS).get_params()
    assert fortunes_data.make_text_encoder().get_params() == walkthrough
    # The fallback of both examples is make_text_encoder, through choose_encoder.
    encoder, description = fortunes_data.choose_encoder(kind="hashing")
    assert encoder.get_params() == walkthrough and "hashed character n-grams" in description
    notebook = json.loads((REPO_ROOT / "examples" / "notebooks" / "finetuning.ipynb").read_text(encoding="utf-8"))
    sources = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert any("encoder, description = choose_encoder()" in source for source in sources)


def test_encoder_gives_the_features_the_numbers_were_measured_on():
    """The documented numbers were first measured on scikit-learn's HashingVectorizer
    made dense; the library's encoder must give exactly those features."""
    import pickle

    from sklearn.feature_extraction.text import HashingVectorizer

    texts, _ = fortunes_data.load_fortunes()
    encoder = fortunes_data.make_text_encoder()
    X = encoder.transform(texts)
    assert isinstance(X, np.ndarray) and X.dtype == np.float32 and X.shape == (len(texts), 1024)
    reference = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=1024, alternate_sign=False)
    np.testing.assert_array_equal(X, reference.transform(texts).toarray().astype(np.float32))
    assert X.min() >= 0.0
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    again = pickle.loads(pickle.dumps(encoder)).transform(texts[:50])
    np.testing.assert_array_equal(again, X[:50])
