"""Every analysis notebook executes top to bottom on CPU with the small settings, and its committed copy
shows its analysis: executed cells, a picture for every cell that draws one, no machine paths, no
warnings, no training log of one line per epoch."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from notebooks.run import NOTEBOOKS, ROOT, execute

#: a code cell draws a figure when its code (comments removed) calls pyplot (``plt.NAME(``), an ArviZ
#: plot (``az.plot_NAME(``) or a ``.plot(`` method (pandas, xarray), or makes a figure object (``fig =``,
#: ``fig, axes =``); such a cell must leave an ``image/png`` output
DRAWS = re.compile(r"\bplt\.\w+\(|\baz\.plot_\w+\(|\.plot\(|^\s*fig\s*(=|,)", re.M)
#: prefixes of absolute paths on a machine (and the repository's own location, wherever it is)
MACHINE_PATHS = ("/work/", "/home/", "/tmp/", "/root/", "/Users/", "/var/folders/", "C:\\", str(ROOT))
#: a training log of one line per epoch, as ``inference.train`` prints outside a notebook
EPOCH_LINE = re.compile(r"^epoch \d+\s+step \d+", re.M)


def _code(cell: nbformat.NotebookNode) -> str:
    return "\n".join(line.split("#", 1)[0] for line in cell.source.splitlines())


def draws_figure(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and bool(DRAWS.search(_code(cell)))


def has_image(cell: nbformat.NotebookNode) -> bool:
    return any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def output_texts(cell: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(kind, text) of every text a code cell shows: streams (kind ``stdout``/``stderr``), rich results
    (their text/plain and text/html) and errors."""
    texts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            texts.append((output.name, output.text))
        elif output.output_type in ("execute_result", "display_data"):
            texts += [(kind, output.data[kind]) for kind in ("text/plain", "text/html") if kind in output.data]
        elif output.output_type == "error":
            texts.append(("error", "\n".join(output.get("traceback", []))))
    return texts


def shown_problems(notebook: nbformat.NotebookNode) -> list[str]:
    """What a reader should not see in the outputs: machine paths, warnings on stderr, per-epoch logs."""
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for kind, text in output_texts(cell):
            paths = sorted({p for p in MACHINE_PATHS if p in text})
            if paths:
                problems.append(f"cell {index}: {kind} shows machine paths {paths}")
            if kind == "stderr" and "Warning" in text:
                problems.append(f"cell {index}: a warning on stderr: {text.strip().splitlines()[0][:200]}")
            if kind == "stdout" and len(EPOCH_LINE.findall(text)) > 0:
                problems.append(f"cell {index}: one line per training epoch (a summary line is expected)")
    return problems


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/NN_*.ipynb expected"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path) -> None:
    notebook = execute(path, quick=True, timeout=600, write=False)
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    warnings = [p for p in shown_problems(notebook) if "warning" in p]
    assert not warnings, "\n".join(warnings)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_copy_carries_outputs(path: Path) -> None:
    """The committed notebook shows its results on GitHub: every code cell was executed."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert cells and all(c.get("execution_count") for c in cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_copy_shows_its_figures(path: Path) -> None:
    """Every cell that draws a figure (:data:`DRAWS`) carries it as an inline PNG."""
    cells = nbformat.read(path, as_version=4).cells
    missing = [i for i, cell in enumerate(cells) if draws_figure(cell) and not has_image(cell)]
    assert not missing, f"cells that draw a figure but show no image: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_copy_shows_no_machine_paths_warnings_or_epoch_logs(path: Path) -> None:
    problems = shown_problems(nbformat.read(path, as_version=4))
    assert not problems, "\n".join(problems)


def test_the_figure_rule() -> None:
    def cell(source: str) -> nbformat.NotebookNode:
        return nbformat.v4.new_code_cell(source)

    for source in ("plt.figure(figsize=(7, 7)); plt.imshow(x)", "az.plot_khat(k);", "df.plot(x='K')",
                   "fig, ax = plt.subplots()", "fig = plt.figure()"):
        assert draws_figure(cell(source)), source
    for source in ("import matplotlib.pyplot as plt", "# plt.plot(x)", "config = 1", "print(figures)"):
        assert not draws_figure(cell(source)), source
