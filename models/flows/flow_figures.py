"""Figures of a trained flow density: samples at several temperatures and latent interpolation.

* Temperatures (Kingma & Dhariwal 2018, section 5): z = T eps, eps ~ N(0, I), the same eps in every
  row, y = f(z) shown as y - 1/2; lower T trades diversity for smoother, more typical images.
* Latent interpolation between two images x_a, x_b: z_a = f^-1(x_a + 1/2) (the centre of each
  pixel's bin), likewise z_b, then y(t) = f((1 - t) z_a + t z_b) for t in [0, 1]; the ends give back
  x_a and x_b exactly (up to float error), since f is a bijection.

``save_flow_figures`` writes ``samples_temperatures.png`` and ``interpolation.png`` (between two
given images, the first two test images when the trainer calls it) into a run directory; the
functions also serve notebooks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from core.errors import DGMError
from core.plots import save_image_grid

TEMPERATURES = (0.5, 0.7, 0.85, 1.0)
FIGURE_SEED = 2024


@torch.no_grad()
def samples_at_temperatures(model: Any, temperatures: Sequence[float] = TEMPERATURES, n: int = 8,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """(len(temperatures) * n, C, H, W) images y - 1/2, row r drawn at temperature T_r from the same eps."""
    if any(not t > 0 for t in temperatures):
        raise DGMError(f"temperatures must be positive, got {list(temperatures)}")
    device = model.base_loc.device
    eps = torch.randn((n, *model.event_shape), generator=generator).to(device, model.base_loc.dtype)
    return torch.cat([model.quantize(model.decode(t * eps), mean=True) for t in temperatures])


@torch.no_grad()
def interpolate(model: Any, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 9) -> torch.Tensor:
    """(steps, C, H, W) continuous images f((1 - t) z_a + t z_b), t = 0 .. 1, z = f^-1(x + 1/2)."""
    if steps < 2:
        raise DGMError(f"an interpolation needs at least 2 steps, got {steps}")
    pair = torch.stack([x_a, x_b]).to(model.base_loc.device, model.base_loc.dtype)
    model.check_data(pair)
    z = model.encode(pair + 0.5)
    t = torch.linspace(0.0, 1.0, steps, dtype=z.dtype, device=z.device).view(-1, *([1] * (z.dim() - 1)))
    return model.decode((1.0 - t) * z[0] + t * z[1])


def save_flow_figures(model: Any, run_dir: Path, images: torch.Tensor | None = None, label: str = "flow") -> None:
    """Write ``samples_temperatures.png``, and ``interpolation.png`` between ``images[0]`` and ``images[1]``
    when at least two images are given; titles start with ``label`` (the model and its run)."""
    run_dir = Path(run_dir)
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator().manual_seed(FIGURE_SEED)
        grid = samples_at_temperatures(model, TEMPERATURES, 8, generator)
        save_image_grid(grid, model.spec.levels, run_dir / "samples_temperatures.png", nrow=8,
                        title=f"{label}: samples, one row per temperature T = " + ", ".join(f"{t:g}" for t in TEMPERATURES))
        if images is not None and images.shape[0] >= 2:
            path = interpolate(model, images[0], images[1], 9)
            save_image_grid(model.quantize(path, mean=True), model.spec.levels, run_dir / "interpolation.png", nrow=9,
                            title=f"{label}: latent interpolation between two test images")
    finally:
        model.train(was_training)
