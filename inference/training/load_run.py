"""Rebuild a trained model from a run directory (``config.json`` + ``best.pt``), without the trainers.

It knows the model registry (``models.registry``) and the training options (``TrainConfig``), which is
why it lives in the training layer rather than in ``core``; it imports no trainer.
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

    @property
    def dataset(self):
        """The run's data set (loaded lazily, from the run's data directory)."""
        return load_dataset(self.config["dataset"], self.train_config.data_dir)


def build_model(config: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(model, model_config, train_config) from a ``config.json`` dict, untrained."""
    spec = model_spec(config["model"])
    model_config = build_config(spec.config_cls, config["model_options"])
    train_config = build_config(TrainConfig, config["train"])
    return spec.build(model_config, DATASETS[config["dataset"]]), model_config, train_config


def load_run(run_dir: str | Path, which: Literal["best", "last"] = "best",
             device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of ``run_dir`` with the weights of ``best.pt`` (or ``checkpoint.pt``), in eval mode."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    model, model_config, train_config = build_model(config)
    path = run_dir / (BEST if which == "best" else CHECKPOINT)
    if not path.is_file():
        raise DGMError(f"{run_dir} has no {path.name} (was the run trained for at least one epoch?)")
    state = load_checkpoint(path)
    load_state(model, state, path, config["model"])
    model.to(device).eval()
    return LoadedRun(run_dir, config, model, model_config, train_config, int(state["epoch"]))
