"""The notebooks of ``notebooks/`` run headless, top to bottom, in a Jupyter kernel, in their small
mode (``DETZOO_NOTEBOOK_SMALL=1``: tiny images, a few training steps, no DataLoader workers), each
in an empty folder where it writes its datasets. Each notebook asserts on what it shows, so a
notebook that runs but shows nonsense fails too. Nothing touches the network (W&B offline, the
Hugging Face hub offline, an empty detzoo cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_without_outputs():
    assert len(NOTEBOOKS) >= 4, "notebooks/ is missing"
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, (
                    f"{path.name} is committed with outputs: clear them (e.g. "
                    f"`jupyter nbconvert --clear-output --inplace {path.name}`)"
                )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_in_small_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("DETZOO_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DETZOO_CACHE", str(tmp_path / "detzoo_cache"))
    monkeypatch.setenv("MPLBACKEND", "agg")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,  # per cell
        kernel_name="python3",  # the kernel of this Python (jupyter_client runs sys.executable)
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute()
    shown = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not shown, shown
