"""Execute the analysis notebooks top to bottom and store their outputs (``make notebooks``).

``python -m notebooks.run [--quick] [--timeout S] [NAME.ipynb ...]`` runs each notebook with the
repository root as working directory. ``--quick`` sets ``DGM_NOTEBOOK_QUICK=1`` (the tests' small
settings) and writes nothing back; without it the notebooks are rewritten in place with outputs,
which is how the committed copies are made.
"""
from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import nbformat
from nbclient import NotebookClient

from core.config import OneLineErrorParser
from core.errors import DGMError, run_cli

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


#: matplotlib's backend in the kernel: the inline one, whatever this process uses (the tests' ``Agg``
#: would leave every figure undrawn in the stored outputs)
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextmanager
def kernel_environment(quick: bool) -> Iterator[None]:
    """The environment the kernel inherits: ``DGM_NOTEBOOK_QUICK`` and the inline backend; restored after."""
    saved = {key: os.environ.get(key) for key in ("DGM_NOTEBOOK_QUICK", "MPLBACKEND")}
    os.environ.update({"DGM_NOTEBOOK_QUICK": "1" if quick else "0", "MPLBACKEND": INLINE_BACKEND})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute(path: Path, quick: bool, timeout: int = 1200, write: bool = True) -> nbformat.NotebookNode:
    """Run ``path`` in a fresh kernel (cwd = repository root); save outputs unless ``write`` is False."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    with kernel_environment(quick):
        client.execute()
    if write:
        nbformat.write(notebook, path)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m notebooks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, default=NOTEBOOKS,
                        help="notebooks to execute (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--quick", action="store_true", help="small settings; outputs are not saved")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds a cell may take (default: 1200)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not Path(p).is_file()]
    if missing:
        raise DGMError(f"no such notebook: {', '.join(missing)} (the notebooks are {', '.join(p.name for p in NOTEBOOKS)})")
    if args.timeout < 1:
        raise DGMError(f"--timeout must be at least 1 second, got {args.timeout}")
    for path in args.notebooks:
        print(f"executing {path.name} ...", flush=True)
        start = time.perf_counter()
        execute(path, args.quick, args.timeout, write=not args.quick)
        print(f"executed {path.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
