"""Figures written during training: sample grids (before, half way, end), curves, model extras."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from core.run_dir import METRICS, MetricsLog
from data.specs import DatasetSpec
from core.plots import run_label, save_curves, save_image_grid
from inference.training.config import TrainConfig
from models.protocols import FinalFigures

SAMPLE_SEED = 2024  # the same noise at every stage, so grids compare
CURVES_EVERY_S = 30.0  # redraw curves.png at most this often: a redraw costs more than a small model's epoch


class TrainingFigures:
    """Writes ``samples_epoch_EEE.png`` at epoch 0, half way and at the end, and ``curves.png``; every
    title names the model and its run (``vae (run runs/demo/vae): ...``)."""

    def __init__(self, model: Any, spec: DatasetSpec, run_dir: Path, config: TrainConfig, name: str, n: int = 64):
        self.model, self.spec, self.run_dir, self.config, self.n = model, spec, Path(run_dir), config, n
        self.label = run_label(name, run_dir)
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
                        title=f"{self.label}: {self.n} {getattr(self.model, 'mean_label', 'samples')} "
                              f"after {epoch} epoch{'' if epoch == 1 else 's'}")

    def curves(self) -> None:
        rows = MetricsLog(self.run_dir / METRICS).rows()
        if not rows:
            return
        epochs = [int(r["epoch"]) for r in rows]
        scale = self.spec.dim * math.log(2)
        bpd = {"train (objective)": [float(r["train_loss"]) / scale for r in rows],
               "validation": [float(r["val_bpd"]) for r in rows]} \
            if "val_bpd" in rows[0] and self.spec.levels is not None else None  # bits/dim of discrete data only
        if "val_elbo" in rows[0]:
            series = {"train ELBO (objective)": [-float(r["train_loss"]) for r in rows],
                      "validation ELBO": [float(r["val_elbo"]) for r in rows]}
            save_curves(epochs, series, "nats per example", self.run_dir / "curves.png",
                        f"{self.label}: ELBO per epoch")
            if bpd is not None:  # the same objective in the unit of the literature's image tables
                save_curves(epochs, bpd, "bits/dim (of the discrete data)", self.run_dir / "bpd_curves.png",
                            f"{self.label}: bits/dim per epoch on {self.spec.name}")
        elif bpd is not None:
            save_curves(epochs, bpd, "bits/dim", self.run_dir / "curves.png", f"{self.label}: bits/dim per epoch")

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        if time.monotonic() - self._curves_drawn_at >= CURVES_EVERY_S:
            self.curves()
            self._curves_drawn_at = time.monotonic()
        if epoch == math.ceil(self.config.epochs / 2) and epoch != self.config.epochs:
            self.samples(epoch)

    def final(self, epoch: int, test_images: torch.Tensor | None = None) -> None:
        """Curves, the last sample grid, and the story's own figures where it has any (``test_images``:
        the first test images, for figures that show data, e.g. a flow's interpolation)."""
        self.curves()
        self.samples(epoch)
        if isinstance(self.model, FinalFigures):
            self.model.final_figures(self.run_dir, test_images, self.label)
