"""The peer libraries of ``benchmarks/peers.py``: optional imports, never installed by the benchmark.

They are listed in ``requirements-bench.txt`` (pythae with ``--no-deps``, see there). A peer that is not
installed, or fails to import on this Python, is skipped and named in the output.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

#: import name -> distribution name on the package index
PEERS = {"zuko": "zuko", "nflows": "nflows", "normflows": "normflows", "pythae": "pythae"}
#: the submodules each benchmark uses, imported with the peer so that a broken install is caught here
SUBMODULES = {"zuko": ["zuko.flows", "zuko.lazy", "zuko.distributions"],
              "nflows": ["nflows.flows", "nflows.transforms", "nflows.distributions"],
              "normflows": ["normflows.flows", "normflows.distributions"],
              "pythae": ["pythae.models", "pythae.models.nn", "pythae.models.base.base_utils"]}


def peer(name: str) -> ModuleType | None:
    """The peer's top-level module with its submodules imported, or None when it cannot be imported."""
    try:
        module = importlib.import_module(name)  # optional dependency: imported only when the benchmark runs
        for sub in SUBMODULES.get(name, []):
            importlib.import_module(sub)
    except Exception:  # ImportError, or a peer broken on this Python (e.g. a missing dependency of pythae)
        return None
    return module


def version(name: str) -> str:
    """The installed version of peer ``name`` ("?" when its metadata is missing)."""
    try:
        return importlib.metadata.version(PEERS.get(name, name))
    except importlib.metadata.PackageNotFoundError:
        return "?"


def available(names: list[str]) -> tuple[dict[str, ModuleType], list[str]]:
    """(importable peers by name, names of those that are not)."""
    found = {n: m for n in names if (m := peer(n)) is not None}
    return found, [n for n in names if n not in found]
