"""examples/notebooks/finetuning.ipynb executes without an error in any cell.

The kernel is this test's own interpreter (the venv that has embetter
installed), through a kernel spec written to a temporary directory: the
machine's default "python3" kernel may be a different Python that cannot
import libembetter.
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


def test_verbose_training_shows_a_progress_widget_in_jupyter(kernel_for_this_interpreter):
    """verbose=True drives a progress bar from the C per-epoch callback; in a kernel it is a Jupyter widget."""
    code = (
        "import numpy as np\n"
        "from libembetter.finetune import FeedForwardFinetuner\n"
        "rng = np.random.default_rng(0)\n"
        "X, y = rng.normal(size=(60, 8)).astype('float32'), np.arange(60) % 3\n"
        "tuner = FeedForwardFinetuner(hidden_dim=4, n_epochs=25, verbose=True, random_state=0).fit(X, y)\n"
        "print('epochs', len(tuner.loss_curve_))\n"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    client = NotebookClient(notebook, kernel_name=kernel_for_this_interpreter, timeout=120, store_widget_state=False)
    # Debian 12's ipywidgets 6 opens its comms in an older protocol than nbclient's widget handler parses (it has
    # no 'state'); without the handler the comms are ignored, and the display message a front end turns into the
    # bar is still in the outputs.
    client.comm_open_handlers.pop("jupyter.widget", None)
    client.execute()
    errors = [o for o in notebook.cells[0].outputs if o.output_type == "error"]
    assert errors == []
    outputs = notebook.cells[0].outputs
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, f"no widget among the outputs: {outputs}"
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "epochs 25" in printed
