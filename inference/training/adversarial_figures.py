"""Figures of a GAN run: 5x5 sample grids (start, half way, end), losses per epoch, the interpolation.

    samples_epoch_EEE.png   25 generator images G(z) (fixed z) before training, half way and at the end
    losses.png              generator and discriminator losses per epoch
    val_fd.png              the validation criterion per epoch, when there is one
    interpolation.png       9 images: G(z_a), 7 steps, G(z_b), where the classifier reads z_a and z_b's
                            images as two different digits

Interpolation: among 512 candidate codes (fixed seed) the classifier picks z_a, the code whose image
it reads most confidently, and z_b, the most confident one of another class; the path between them
is spherical (slerp, White 2016): z_t = sin((1 - t) w) / sin(w) z_a + sin(t w) / sin(w) z_b, with
cos(w) = z_a.z_b / (|z_a| |z_b|), t = 0, 1/8, ..., 1. Unlike the straight line, it keeps the
norms near sqrt(L), where N(0, I) codes live, so the middle images are not washed out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.run_dir import METRICS, MetricsLog
from data.specs import DatasetSpec
from core.plots import save_curves, save_image_grid
from inference.training.figures import TrainingFigures
from inference.training.config import TrainConfig

INTERPOLATION_SEED = 7
CANDIDATES = 512
STEPS = 7  # images strictly between the two end points: 9 in all


def slerp(z_a: torch.Tensor, z_b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between codes (L,) at fractions t (T,) -> (T, L); linear when nearly parallel."""
    t = t[:, None]
    cos = torch.dot(z_a, z_b) / (z_a.norm() * z_b.norm())
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-4:
        return (1 - t) * z_a + t * z_b
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)


@torch.no_grad()
def pick_two_classes(model: Any, classifier: Any, n: int = CANDIDATES,
                     seed: int = INTERPOLATION_SEED) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int],
                                                              tuple[float, float]]:
    """Codes z_a, z_b whose generated images the classifier reads as two different classes, most confidently.

    Returns (z_a, z_b, (class_a, class_b), (p_a, p_b)). If every candidate falls in one class (mode
    collapse), z_b is the most confident candidate of the runner-up class by probability.
    """
    device = model.latent_size.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        z = torch.randn(n, model.latent_dim, device=device)
    images = model.generate(z) * (model.spec.levels - 1)
    _, probs = classifier.features_and_probs(images, model.spec.levels, device=device)
    confidence, classes = probs.max(1)
    a = int(confidence.argmax())
    other = classes != classes[a]
    if other.any():
        b = int(torch.where(other, confidence, torch.full_like(confidence, -1.0)).argmax())
        class_b, p_b = int(classes[b]), float(confidence[b])
    else:  # one class only: the strongest second choice
        second = probs.clone()
        second[:, classes[a]] = -1.0
        best = second.max(1)
        b = int(best.values.argmax())
        class_b, p_b = int(best.indices[b]), float(best.values[b])
    return z[a].cpu(), z[b].cpu(), (int(classes[a]), class_b), (float(confidence[a]), p_b)


@torch.no_grad()
def interpolation_images(model: Any, z_a: torch.Tensor, z_b: torch.Tensor, steps: int = STEPS) -> torch.Tensor:
    """E[x | z_t] = (levels - 1) G(z_t) on the slerp path, (steps + 2, C, H, W) on the data scale."""
    device = model.latent_size.device
    z = slerp(z_a, z_b, torch.linspace(0, 1, steps + 2)).to(device)
    return model.generate(z) * (model.spec.levels - 1)


class GANFigures(TrainingFigures):
    """TrainingFigures with 25-image grids, loss curves of both players and the class-to-class interpolation."""

    def __init__(self, model: Any, spec: DatasetSpec, run_dir: Path, config: TrainConfig, name: str,
                 classifier: Any | None = None):
        super().__init__(model, spec, run_dir, config, name, n=25)
        self.classifier = classifier

    def curves(self) -> None:
        rows = MetricsLog(self.run_dir / METRICS).rows()
        if not rows:
            return
        epochs = [int(r["epoch"]) for r in rows]
        series = {"generator loss": [float(r["train_loss"]) for r in rows],
                  "discriminator loss": [float(r["train_d_loss"]) for r in rows]}
        loss = self.model.config.loss
        save_curves(epochs, series, "loss (nats per example)" if loss in ("minimax", "non_saturating") else "loss",
                    self.run_dir / "losses.png", f"{self.label}: {loss} GAN losses per epoch")
        if "val_fd" in rows[0]:
            save_curves(epochs, {"validation FD": [float(r["val_fd"]) for r in rows]}, "Frechet distance",
                        self.run_dir / "val_fd.png",
                        f"{self.label}: validation FD (classifier features; lower is better)")

    def interpolation(self) -> None:
        if self.classifier is None:
            return
        was_training = self.model.training
        self.model.eval()
        z_a, z_b, (c_a, c_b), (p_a, p_b) = pick_two_classes(self.model, self.classifier)
        images = interpolation_images(self.model, z_a, z_b)
        self.model.train(was_training)
        save_image_grid(images, self.spec.levels, self.run_dir / "interpolation.png", nrow=images.shape[0],
                        title=f"{self.label}: from a {c_a} (classifier p={p_a:.2f}) to a {c_b} (p={p_b:.2f}), "
                              f"{STEPS} slerp steps")

    def final(self, epoch: int, test_images: torch.Tensor | None = None) -> None:
        super().final(epoch, test_images)
        self.interpolation()
