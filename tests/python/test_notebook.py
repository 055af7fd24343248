"""examples/notebooks/finetuning.ipynb executes without an error in any cell.

The kernel is this test's own interpreter (the venv that has embetter
installed), through a kernel spec written to a temporary directory: the
machine's default "python3" kernel may be a different Python that cannot
import embetter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "examples" / "notebooks" / "finetuning.ipynb"
KERNEL_NAME = "embetter-test-interpreter"


def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_stored_without_outputs():
    notebook = read_notebook()
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has stored outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"


@pytest.fixture
def kernel_for_this_interpreter(tmp_path, monkeypatch):
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (test interpreter)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # Quiets the debugger's note about frozen modules that ipykernel prints on start.
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return KERNEL_NAME


def test_notebook_runs_every_cell(kernel_for_this_interpreter):
    notebook = read_notebook()
    # Appended to the in-memory copy only: which interpreter ran it, and the scores.
    notebook.cells.append(
        nbformat.v4.new_code_cell("import json, sys\nprint(json.dumps({'python': sys.executable, 'results': results}))")
    )
    client = NotebookClient(
        notebook,
        kernel_name=kernel_for_this_interpreter,
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the cell on any error

    errors = [
        (index, output.get("ename"))
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []

    images = sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "display_data" and "image/png" in output.get("data", {})
    )
    assert images >= 4, f"expected the scatter and loss plots inline, got {images} images"

    report = json.loads(notebook.cells[-1].outputs[0]["text"])
    assert Path(report["python"]).resolve() == Path(sys.executable).resolve()
    results = report["results"]
    raw = results["raw"]
    for name in ("feed-forward", "feed-forward, hidden_dim=10", "feed-forward, partial_fit", "contrastive"):
        assert results[name]["logreg"] > raw["logreg"], (name, results)
        assert results[name]["5-NN"] > raw["5-NN"], (name, results)
