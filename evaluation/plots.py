"""Figures shared by training, evaluation and notebooks (matplotlib, Agg backend, PNG files)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def image_grid(images: torch.Tensor, levels: int, nrow: int | None = None, pad: int = 1) -> torch.Tensor:
    """Tile images (N, C, H, W) on the data scale 0..levels-1 into one (H', W') or (H', W', 3) array in [0, 1]."""
    images = images.detach().float().cpu() / max(levels - 1, 1)
    n, c, h, w = images.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol = int(math.ceil(n / nrow))
    grid = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
    grid = grid.clamp(0, 1)
    return grid[0] if c == 1 else grid.permute(1, 2, 0)


def save_image_grid(images: torch.Tensor, levels: int, path: Path, title: str | None = None,
                    nrow: int | None = None) -> None:
    """Write a grid of images as a PNG (grey levels, black background digits shown white)."""
    grid = image_grid(images, levels, nrow)
    size = max(3.0, min(10.0, grid.shape[1] / 25))
    fig, ax = plt.subplots(figsize=(size, size * grid.shape[0] / grid.shape[1] + (0.4 if title else 0)))
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_curves(epochs: Sequence[float], series: dict[str, Sequence[float]], ylabel: str, path: Path,
                title: str | None = None) -> None:
    """Line plot of several per-epoch series (e.g. train and validation objective)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series.items():
        ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def manifold_latents(steps: int = 20, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """Grid of 2-D latents z = Phi^{-1}(u) for u on an even grid in [low, high]^2 (Kingma & Welling fig. 4b)."""
    u = torch.linspace(low, high, steps, dtype=torch.float64)
    z = torch.distributions.Normal(0.0, 1.0).icdf(u)
    zy, zx = torch.meshgrid(z.flip(0), z, indexing="ij")
    return torch.stack([zx, zy], dim=-1).reshape(-1, 2).float()
