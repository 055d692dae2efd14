"""Rebuild a trained model from a run directory (``config.json`` + ``best.pt``), without the trainers.

It knows the model registry (``models.registry``) and the training options (``TrainConfig``), which is
why it lives in the training layer rather than in ``core``; it imports no trainer. A user's own program
(``inference.training.program_training.train_program``) is in no registry: ``load_run(run_dir,
program=(model, guide))`` rebuilds it around the user's code and the run's saved data
(``inference.training.program_run``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

import models  # noqa: F401  (fills the model registry)
from core.config import build_config
from core.errors import DGMError
from core.run_dir import BEST, CHECKPOINT, load_checkpoint, load_state, read_config
from data import load_dataset
from data.specs import DATASETS
from inference.training.config import TrainConfig
from inference.training.program_run import is_user_program_run, rebuild_program
from inference.training.user_program import ProgramLike
from models.registry import model_spec


@dataclass
class LoadedRun:
    """A trained model with its configs; ``model.model`` / ``model.guide`` are the Pyro pair."""

    run_dir: Path
    config: dict[str, Any]
    model: Any
    model_config: Any
    train_config: Any
    epoch: int
    #: the data of a user program's run (``data.pt``); None for a registered model's named data set
    data: Any = None

    @property
    def dataset(self):
        """The run's data set (loaded lazily, from the run's data directory; a user program's saved data)."""
        if self.data is not None:
            return self.data
        return load_dataset(self.config["dataset"], self.train_config.data_dir)


def build_model(config: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(model, model_config, train_config) from a ``config.json`` dict, untrained."""
    spec = model_spec(config["model"])
    model_config = build_config(spec.config_cls, config["model_options"])
    train_config = build_config(TrainConfig, config["train"])
    return spec.build(model_config, DATASETS[config["dataset"]]), model_config, train_config


def load_run(run_dir: str | Path, which: Literal["best", "last"] = "best",
             device: str | torch.device = "cpu", *, program: ProgramLike | None = None) -> LoadedRun:
    """Rebuild the model of ``run_dir`` with the weights of ``best.pt`` (or ``checkpoint.pt``), in eval mode.

    ``program``: for the run of a user's own program, the same program it was trained from (a pair ``(model,
    guide)``, an object with ``model`` and ``guide`` methods, or a ``PyroProgram``); its ``nn.Module``
    parameters and ``pyro.param`` values are restored. ``LoadedRun.model`` is then the
    ``inference.training.user_program.UserProgram`` and ``LoadedRun.dataset`` the run's saved data."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    data = None
    if is_user_program_run(config):
        if program is None:
            raise DGMError(f"{run_dir} holds the user program {config['model']!r}, which is in no model registry: "
                           f"pass its code, load_run({str(run_dir)!r}, program=(model, guide))")
        model, train_config, data = rebuild_program(run_dir, config, program)
        model_config = None
    elif program is not None:
        raise DGMError(f"{run_dir} holds the registered model {config['model']!r}, not a user program: "
                       "call load_run without program=")
    else:
        model, model_config, train_config = build_model(config)
    path = run_dir / (BEST if which == "best" else CHECKPOINT)
    if not path.is_file():
        raise DGMError(f"{run_dir} has no {path.name} (was the run trained for at least one epoch?)")
    state = load_checkpoint(path)
    load_state(model, state, path, config["model"])
    model.to(device).eval()
    return LoadedRun(run_dir, config, model, model_config, train_config, int(state["epoch"]), data)
