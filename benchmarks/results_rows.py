"""Rows of benchmarks/RESULTS.md, written one way by every benchmark script.

A row is ``| date | commit | hardware | `command` | data set | model | estimator (K) | result |``
(``shared/CONVENTIONS.md``, "Results"). Scripts build rows with :func:`results_row` and add them with
:func:`append_rows`; both the device that was measured and the command that was typed are always
written, so a CPU row can never be read as a GPU one.
"""
from __future__ import annotations

import datetime as dt
import shlex
import sys
from pathlib import Path
from typing import Iterable

import torch

from core.run_dir import command_line, cpu_model, git_commit, package_versions

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def commit_label() -> str:
    """Short commit, with ``-dirty`` when the working tree differs from it."""
    commit = git_commit()
    return commit[:7] + ("-dirty" if commit.endswith("-dirty") else "")


def hardware_label(device: torch.device) -> str:
    """E.g. "AMD EPYC, 2 cores, load average 3.9, 1 torch thread, no GPU used (measured on cpu; torch 2.15.0,
    pyro-ppl 1.9.2)", or with the GPU's name."""
    import os

    versions = package_versions(["torch", "pyro-ppl"])
    threads = torch.get_num_threads()
    where = f"GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "no GPU used"
    # the 1-minute load average when the row is written: on a shared machine it says how contended the run was
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"{cpu_model()}, {os.cpu_count()} cores{load}, {threads} torch thread{'s' if threads != 1 else ''}, "
            f"{where} (measured on {device.type}; torch {versions['torch']}, pyro-ppl {versions['pyro-ppl']})")


def typed_command() -> str:
    """The command as typed, quoted so that it can be pasted back (``--set "hidden=500 500"``)."""
    program = command_line()[:len(command_line()) - len(" ".join(sys.argv[1:]))].rstrip()
    return f"{program} {shlex.join(sys.argv[1:])}".strip()


def cell(text: object) -> str:
    """A markdown table cell: pipes escaped, no line breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")


def results_row(device: torch.device, dataset: str, model: str, estimator: str, result: str,
                command: str | None = None, command_note: str = "", hardware: str | None = None) -> str:
    """One RESULTS.md row (no trailing newline).

    ``command`` defaults to the command as typed (quoted); ``command_note`` follows it outside the code span;
    ``hardware`` replaces the label of this machine (for numbers read from a run made elsewhere)."""
    code = f"`{cell(command or typed_command())}`" + (f" {cell(command_note)}" if command_note else "")
    cells = [dt.date.today().isoformat(), commit_label(), hardware or hardware_label(device),
             code, dataset, model, estimator, result]
    return "| " + " | ".join(cell(c) if i != 3 else c for i, c in enumerate(cells)) + " |"


def append_rows(rows: Iterable[str], path: Path = RESULTS) -> None:
    """Append ``rows`` to RESULTS.md in one write (so concurrent writers do not interleave lines)."""
    text = "".join(row.rstrip("\n") + "\n" for row in rows)
    with path.open("a") as handle:
        handle.write(text)


def emit(rows: list[str], append: bool) -> int:
    """Print the RESULTS rows of a benchmark and, when asked, append them; the script's exit status (0)."""
    for row in rows:
        print(row)
    if append:
        append_rows(rows)
    return 0


def print_table(header: list[str], rows: list[list[object]]) -> None:
    """A plain fixed-width table on stdout: right-aligned columns sized to their widest entry."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)), flush=True)
        if i == 0:
            print("  ".join("-" * w for w in widths))
