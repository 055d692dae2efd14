"""The run directory (schema_version 1) and its files, written atomically.

Layout (see ``shared/CONVENTIONS.md``)::

    RUN_DIR/config.json      schema_version, model, dataset, seed, options, command, provenance
    RUN_DIR/metrics.csv      one row per epoch
    RUN_DIR/checkpoint.pt    last state, for --resume
    RUN_DIR/best.pt          best validation objective, for evaluation
    RUN_DIR/*.png            figures
    RUN_DIR/eval_<split>.json, eval_<split>_examples.csv

Checkpoints are plain dicts of tensors, numbers and strings, loadable with
``torch.load(path, weights_only=True)``.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any, Iterable

import torch

from core.errors import DGMError

SCHEMA_VERSION = 1
#: the entries of config.json that commands read, with their JSON types
CONFIG_KEYS: dict[str, type] = {"model": str, "dataset": str, "seed": int, "train": dict, "model_options": dict}
CONFIG = "config.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
PACKAGES = ("torch", "pyro-ppl", "torchvision", "arviz", "numpy", "pandas", "matplotlib", "scikit-learn")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; results are meant to be shared
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file, so a crash never leaves a half-written checkpoint."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; unreadable files give a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise DGMError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise DGMError(f"checkpoint {path} is unreadable (truncated or not a checkpoint): {type(exc).__name__}") from None
    if not isinstance(state, dict) or "model_state" not in state or "model" not in state:
        raise DGMError(f"{path} is not a checkpoint of this project (no model/model_state entries)")
    return state


def load_state(model: torch.nn.Module, state: dict[str, Any], path: Path, expected_model: str) -> None:
    """Load weights, turning a foreign or mismatched checkpoint into a one-line error."""
    if state["model"] != expected_model:
        raise DGMError(f"{path} holds a {state['model']!r} model, but the run is a {expected_model!r} model")
    weights = state["model_state"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise DGMError(f"{path} is damaged: its model_state is not a dict of tensors")
    bad = [name for name, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise DGMError(f"{path} holds non-finite weights (NaN or infinite, first in {bad[0]!r}): it cannot be used; "
                       "resume from an earlier copy or train again")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = " ".join(str(exc).split())[:300]
        raise DGMError(f"{path} does not fit the model of its config ({first}: {detail})") from None


def check_resumable(state: dict[str, Any], path: Path, required: tuple[str, ...]) -> None:
    """A checkpoint to resume from must hold every entry the trainer restores (``required``) and the
    RNG states; a one-line error names the first missing one."""
    for key in ("epoch", "step", "rng", *required):
        if key not in state:
            raise DGMError(f"{path} is damaged or not a training checkpoint: it has no {key!r} entry; "
                           "resume is impossible (start a new run)")


def git_commit(cwd: Path | None = None) -> str:
    """The current git commit of the project (with ``-dirty`` if uncommitted changes), or "unknown"."""
    root = cwd or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device | None = None) -> dict[str, Any]:
    """CPU model and core count, GPU name (or None) of the machine that produced a run."""
    gpu = torch.cuda.get_device_name(device if device is not None and device.type == "cuda" else 0) \
        if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def command_line() -> str:
    """The command as typed: ``python -m package.module args`` for module entry points."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None and spec.name else (sys.argv[0] if sys.argv else "python")
    return " ".join([program] + sys.argv[1:])


def provenance(device: torch.device | None = None) -> dict[str, Any]:
    """What every result file records about where it came from."""
    return {
        "command": command_line(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware(device),
        "packages": package_versions(),
    }


def read_json(path: Path, what: str = "result file") -> dict[str, Any]:
    """A JSON object written by one of our commands, or a one-line error naming the file and the fault."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise DGMError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DGMError(f"{path} cannot be read ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise DGMError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); delete it or restore it") from None
    if not isinstance(value, dict):
        raise DGMError(f"{path} is not a {what} (a JSON object is expected, got {type(value).__name__})")
    return value


def read_config(run_dir: Path) -> dict[str, Any]:
    """``config.json`` of a run directory, with a one-line error if it is not a run."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise DGMError(f"{run_dir} is not a run directory (no {CONFIG})")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DGMError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise DGMError(f"{path} is not a run's config (a JSON object is expected, got {type(config).__name__})")
    if config.get("schema_version") != SCHEMA_VERSION:
        raise DGMError(f"{path}: schema_version {config.get('schema_version')!r} is not {SCHEMA_VERSION}")
    for key, kind in CONFIG_KEYS.items():
        if not isinstance(config.get(key), kind):
            raise DGMError(f"{path} is damaged: {key!r} should be a {kind.__name__}, got "
                           f"{type(config.get(key)).__name__}")
    return config


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: JSON has no such numbers (Python's
    ``NaN`` token is not JSON), so an undefined value is written as ``null``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Valid JSON, atomically (non-finite numbers as null)."""
    atomic_write_text(Path(path), json.dumps(finite_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the ``.NAME.XXXX.tmp`` files that an interrupted atomic write left (call with the run's lock)."""
    removed = []
    for tmp in Path(run_dir).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


class MetricsLog:
    """``metrics.csv``: one row per epoch; columns fixed by the first row."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs after ``epoch`` (a run killed after writing metrics but before its checkpoint)."""
        rows = [r for r in self.rows() if int(r["epoch"]) <= epoch]
        self._write(rows, list(rows[0].keys()) if rows else [])

    def append(self, row: dict[str, Any]) -> None:
        rows = self.rows()
        columns = list(rows[0].keys()) if rows else list(row.keys())
        for key in row:
            if key not in columns:
                columns.append(key)
        rows.append({k: _format(v) for k, v in row.items()})
        self._write(rows, columns)

    def _write(self, rows: list[dict[str, Any]], columns: list[str]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buffer.getvalue())


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return value
