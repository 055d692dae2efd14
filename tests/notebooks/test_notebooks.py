"""Every analysis notebook executes top to bottom on CPU with the small settings."""
from __future__ import annotations

from pathlib import Path

import pytest

from notebooks.run import NOTEBOOKS, execute


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/NN_*.ipynb expected"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path) -> None:
    notebook = execute(path, quick=True, timeout=600, write=False)
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_copy_carries_outputs(path: Path) -> None:
    """The committed notebook shows its results on GitHub: every code cell was executed."""
    import nbformat

    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert cells and all(c.get("execution_count") for c in cells)
