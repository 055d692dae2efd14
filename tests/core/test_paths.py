"""Paths as users read them: relative to the working directory (the repository root) when inside it."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.paths import display_path
from core.plots import run_label


def test_paths_inside_the_working_directory_are_shown_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "runs" / "vae") == "runs/vae"
    assert display_path("runs/vae") == "runs/vae"
    assert display_path("/elsewhere/run") == "/elsewhere/run"
    assert run_label("vae", tmp_path / "runs" / "demo" / "vae") == "vae (run runs/demo/vae)"
