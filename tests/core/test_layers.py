"""The one-way layers (``.importlinter``): the contract holds, and no project module escapes it."""
from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"


def _layers() -> list[list[str]]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    lines = [line.strip() for line in parser["importlinter:contract:layers"]["layers"].splitlines() if line.strip()]
    return [re.split(r"\s*[|:]\s*", line) for line in lines]


def _modules(package: str) -> list[str]:
    return [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for p in (ROOT / package).rglob("*.py")]


def test_every_project_module_belongs_to_a_layer() -> None:
    """A module outside every layer would be unconstrained; only the split package ``inference`` itself
    (an empty ``__init__``) sits above its layers."""
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    roots = parser["importlinter"]["root_packages"].split()
    layers = [name for layer in _layers() for name in layer]
    unplaced = [m for root in roots for m in _modules(root)
                if not any(m == name or m.startswith(name + ".") for name in layers) and m != "inference"]
    assert not unplaced, f"modules in no layer of .importlinter: {unplaced}"
    assert (ROOT / "inference" / "__init__.py").read_text().strip().startswith('"""')
    assert "import" not in (ROOT / "inference" / "__init__.py").read_text()


def test_the_import_contract_holds() -> None:
    """``lint-imports`` (import-linter) on the whole project: every import, function-local ones included."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is not installed (requirements-dev.txt)"
    result = subprocess.run([exe, "--config", str(CONFIG), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_no_function_local_imports_of_project_modules() -> None:
    """Imports of our own packages sit at module level (a local import would be how a cycle is dodged)."""
    pattern = re.compile(r"^\s{4,}(from|import) (core|data|models|inference|evaluation|demo|benchmarks|notebooks)\b")
    found = [f"{p.relative_to(ROOT)}:{i}" for package in ("core", "data", "models", "inference", "evaluation", "demo",
                                                           "benchmarks", "notebooks")
             for p in (ROOT / package).rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.match(line)]
    assert not found, f"function-local imports of project modules: {found}"
