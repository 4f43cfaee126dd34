"""Every notebook executes at its small size (RANKJUMP_QUICK=1) through a Jupyter kernel.

The committed notebooks carry the outputs of their full-size runs; here they run small, in a
scratch copy (the committed file is not touched), and must finish without an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
ROOT = Path(__file__).resolve().parents[2]


def test_all_seven_notebooks_are_there():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_quick(path, monkeypatch):
    monkeypatch.setenv("RANKJUMP_QUICK", "1")
    # The kernel is a new process: it finds rankjump installed, or in the checkout.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "one parameter cell"
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    # Every notebook shows numbers and at least one figure.
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any(o.output_type == "stream" and o.name == "stdout" for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)
