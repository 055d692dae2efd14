"""Progress bars: text bars, silent where stderr is not a terminal; tqdm.auto imported without a warning."""
from __future__ import annotations

import sys

from core.progress import in_notebook, progress_bar


def test_tqdm_auto_is_imported_by_the_project() -> None:
    assert "tqdm.auto" in sys.modules  # before Pyro could import it and warn in a notebook


def test_bars_are_off_without_a_terminal_and_outside_a_notebook() -> None:
    bar = progress_bar(range(3), desc="x")
    assert list(bar) == [0, 1, 2]
    assert bar.disable  # pytest's captured stderr is no terminal
    assert progress_bar(range(1), enabled=False).disable
    assert not in_notebook()
