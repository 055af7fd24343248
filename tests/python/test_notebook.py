"""examples/notebooks/finetuning.ipynb executes without an error in any cell.

The kernel is this test's own interpreter (the venv that has embetter
installed), through a kernel spec written to a temporary directory: the
machine's default "python3" kernel may be a different Python that cannot
import libembetter.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
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
        # Encoding the corpus with MiniLM takes half a minute on two idle cores, minutes on busy ones.
        timeout=900,
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
    assert images >= 3, f"expected both tasks' scatter grids and the loss plot inline, got {images} images"

    report = json.loads(notebook.cells[-1].outputs[0]["text"])
    assert Path(report["python"]).resolve() == Path(sys.executable).resolve()
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs if output.output_type == "stream")
    # The tests run with the model files fetched (scripts/test.sh's "model files" stage).
    assert "encoder: sentence embeddings of all-MiniLM-L6-v2" in printed, printed
    results = report["results"]
    names = ("raw", "feed-forward, hidden_dim=50", "feed-forward, hidden_dim=10", "contrastive")
    for task in ("two-class", "five-class"):
        for name in names:
            assert f"{task}: {name}" in results, sorted(results)
    assert "five-class: feed-forward, partial_fit" in results
    # On two classes every finetuner pulls the categories apart in the PCA plot.
    for name in names[1:]:
        assert results[f"two-class: {name}"]["silhouette"] > results["two-class: raw"]["silhouette"], results


def ipywidgets_major_version():
    # The kernel runs this test's interpreter, so it has the same ipywidgets. Read from the package's
    # metadata: importing ipywidgets 6 here would only add its own deprecation warnings to the run.
    return int(re.match(r"\d+", importlib.metadata.version("ipywidgets")).group())


VERBOSE_FIT = (
    "import numpy as np\n"
    "from libembetter.finetune import FeedForwardFinetuner\n"
    "rng = np.random.default_rng(0)\n"
    "X, y = rng.normal(size=(60, 8)).astype('float32'), np.arange(60) % 3\n"
    "tuner = FeedForwardFinetuner(hidden_dim=4, n_epochs=25, verbose=True, random_state=0).fit(X, y)\n"
    "print('epochs', len(tuner.loss_curve_))\n"
)


def widget_outputs_and_stdout(cell):
    widgets = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
    return widgets, printed


def test_verbose_training_shows_a_progress_widget_in_jupyter(kernel_for_this_interpreter):
    """verbose=True drives a progress bar from the C per-epoch callback; in a kernel it is a Jupyter widget."""
    if ipywidgets_major_version() < 7:
        # Debian 12's ipywidgets 6: libembetter's own widget (see test_tqdm_notebook_bar_fails_on_ipywidgets_6).
        return check_own_widget_on_ipywidgets_6(kernel_for_this_interpreter)

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(VERBOSE_FIT)])
    # The widget handler records every widget's final state in the notebook's metadata.
    client = NotebookClient(notebook, kernel_name=kernel_for_this_interpreter, timeout=120, store_widget_state=True)
    client.execute()
    cell = notebook.cells[0]
    assert [o for o in cell.outputs if o.output_type == "error"] == []
    widgets, printed = widget_outputs_and_stdout(cell)
    assert len(widgets) == 1, f"expected one progress widget among the outputs: {cell.outputs}"
    assert "epochs 25" in printed

    # tqdm.auto's notebook bar: a progress widget and two labels, filled to the last epoch, with the loss.
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    progress = [model["state"] for model in state.values() if model["model_name"] == "FloatProgressModel"]
    assert [(p["value"], p["max"], p["bar_style"]) for p in progress] == [(25, 25, "success")]
    labels = " ".join(model["state"]["value"] for model in state.values() if model["model_name"] == "HTMLModel")
    assert "FeedForwardFinetuner" in labels
    assert "25/25" in labels
    assert "loss=" in labels


def check_own_widget_on_ipywidgets_6(kernel_name):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(VERBOSE_FIT)])
    client = NotebookClient(notebook, kernel_name=kernel_name, timeout=120, store_widget_state=False)
    # ipywidgets 6 opens its comms in an older protocol than nbclient's widget handler parses (it has no
    # 'state'); without the handler the comms are ignored, and the display message a front end turns into the
    # bar is still in the outputs.
    client.comm_open_handlers.pop("jupyter.widget", None)
    client.execute()
    cell = notebook.cells[0]
    assert [o for o in cell.outputs if o.output_type == "error"] == []
    widgets, printed = widget_outputs_and_stdout(cell)
    assert widgets, f"no widget among the outputs: {cell.outputs}"
    assert "epochs 25" in printed


def test_tqdm_notebook_bar_fails_on_ipywidgets_6(kernel_for_this_interpreter):
    """Why libembetter keeps a widget of its own for ipywidgets 6: tqdm.auto's bar breaks there.

    With ipywidgets 7 or newer tqdm.auto's bar works, and libembetter uses it.
    When this fails on ipywidgets 6, tqdm has fixed it and the own widget can go.
    """
    code = "from tqdm.auto import tqdm\nbar = tqdm(total=3)\nbar.update(3)\nbar.close()\nprint('closed')\n"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    client = NotebookClient(notebook, kernel_name=kernel_for_this_interpreter, timeout=120, allow_errors=True)
    if ipywidgets_major_version() < 7:
        client.comm_open_handlers.pop("jupyter.widget", None)  # as in check_own_widget_on_ipywidgets_6
    client.execute()
    outputs = notebook.cells[0].outputs
    errors = [(o.ename, o.evalue) for o in outputs if o.output_type == "error"]
    if ipywidgets_major_version() < 7:
        assert errors == [("AttributeError", "'FloatProgress' object has no attribute 'style'")]
    else:
        assert errors == []
        widgets, printed = widget_outputs_and_stdout(notebook.cells[0])
        assert len(widgets) == 1
        assert printed == "closed\n"
