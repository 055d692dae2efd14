"""Output paths checked before any work: a command that will write a file or a folder refuses, in one
line and up front, a destination that is a file where a folder is needed (or the reverse), that has the
wrong suffix, or whose nearest existing folder is not writable -- rather than failing after the work."""
from __future__ import annotations

import os
from pathlib import Path

from core.errors import DGMError


def _nearest_existing(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), Path("."))


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """``path`` is a folder, or can be created as one (its nearest existing ancestor is a writable folder)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DGMError(f"{option} {path} is a file, not a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise DGMError(f"{option} {path} cannot be created: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise DGMError(f"{option} {path}: {base} is not writable")
    return path


def check_output_file(path: str | os.PathLike, option: str, suffix: str | None = None) -> Path:
    """``path`` can be written as a file (not a folder; in a folder that exists or can be created; with
    ``suffix`` when given)."""
    path = Path(path)
    if path.is_dir():
        raise DGMError(f"{option} {path} is a folder; give a file name")
    if suffix is not None and path.suffix.lower() != suffix:
        raise DGMError(f"{option} {path}: the file is written as {suffix[1:].upper()}; give a name ending in {suffix}")
    check_output_dir(path.parent if str(path.parent) else Path("."), option)
    return path


def display_path(path: str | os.PathLike) -> str:
    """``path`` as a user reads it in messages and figure titles: relative to the working directory (the
    repository root, for the commands and notebooks) when it lies inside it, else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)
