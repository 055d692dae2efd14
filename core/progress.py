"""Progress reporting: text progress bars that never warn, and whether we run inside a notebook.

Our bars are ``tqdm.std`` bars on stderr, shown only when stderr is a terminal (``disable=None``): a
log file or a notebook cell gets no carriage-return debris. Importing this module (``core/__init__``
does, so every import of the project does, before any of it imports Pyro) also imports ``tqdm.auto``
once with its ``TqdmWarning`` silenced: Pyro's MCMC logger imports ``tqdm.auto`` at import time, and
in a Jupyter kernel without ipywidgets that import would print "IProgress not found" into the first
cell that touches Pyro. ``tqdm.auto`` then falls back to the text bar, which is what we want there.
"""
from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any, Iterable

from tqdm.std import TqdmWarning, tqdm

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)
    importlib.import_module("tqdm.auto")  # cached for Pyro's import, warning-free


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", enabled: bool = True) -> tqdm:
    """A text bar on stderr, redrawn at most once a second and removed when done; shown only when
    stderr is a terminal (and ``enabled``: e.g. on rank 0 alone under torchrun)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, mininterval=1.0, file=sys.stderr,
                disable=None if enabled else True)


def in_notebook() -> bool:
    """True inside a Jupyter (IPython) kernel, where one summary line per job reads better than a log."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    try:
        return get_ipython is not None and get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except Exception:  # an IPython without a usable shell object
        return False
