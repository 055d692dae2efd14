"""Figures written during training: sample grids (before, half way, end), curves, model extras."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from core.run_dir import METRICS, MetricsLog
from data.specs import DatasetSpec
from evaluation.plots import save_curves, save_image_grid
from inference.train_config import TrainConfig

SAMPLE_SEED = 2024  # the same noise at every stage, so grids compare
CURVES_EVERY_S = 30.0  # redraw curves.png at most this often: a redraw costs more than a small model's epoch


class TrainingFigures:
    """Writes ``samples_epoch_EEE.png`` at epoch 0, half way and at the end, and ``curves.png``."""

    def __init__(self, model: Any, spec: DatasetSpec, run_dir: Path, config: TrainConfig, n: int = 64):
        self.model, self.spec, self.run_dir, self.config, self.n = model, spec, Path(run_dir), config, n
        self._curves_drawn_at = -math.inf

    def samples(self, epoch: int) -> None:
        device = next(self.model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(SAMPLE_SEED)
            was_training = self.model.training
            self.model.eval()
            images = self.model.sample(self.n, mean=True)
            self.model.train(was_training)
        save_image_grid(images, self.spec.levels, self.run_dir / f"samples_epoch_{epoch:03d}.png",
                        title=f"samples after {epoch} epochs")

    def curves(self) -> None:
        rows = MetricsLog(self.run_dir / METRICS).rows()
        if not rows:
            return
        epochs = [int(r["epoch"]) for r in rows]
        if "val_elbo" in rows[0]:
            series = {"train ELBO (objective)": [-float(r["train_loss"]) for r in rows],
                      "validation ELBO": [float(r["val_elbo"]) for r in rows]}
            save_curves(epochs, series, "nats per example", self.run_dir / "curves.png", "ELBO per epoch")
        else:
            scale = self.spec.dim * math.log(2)
            series = {"train": [float(r["train_loss"]) / scale for r in rows],
                      "validation": [float(r["val_bpd"]) for r in rows]}
            save_curves(epochs, series, "bits/dim", self.run_dir / "curves.png", "bits/dim per epoch")

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        if time.monotonic() - self._curves_drawn_at >= CURVES_EVERY_S:
            self.curves()
            self._curves_drawn_at = time.monotonic()
        if epoch == math.ceil(self.config.epochs / 2) and epoch != self.config.epochs:
            self.samples(epoch)

    def final(self, epoch: int) -> None:
        self.curves()
        self.samples(epoch)
        self.model.final_figures(self.run_dir)
