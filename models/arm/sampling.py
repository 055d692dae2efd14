"""Drawing images from an autoregressive model pixel by pixel, in raster order: naive and cached.

Both samplers draw pixel i from log p(x_i = k | x_<i), k = 0..L-1, by the Gumbel-max trick::

    x_i = argmax_k [log p(x_i = k | x_<i) + g_ik],      g_ik = -log(-log u_ik),  u_ik ~ U(0, 1)

so that, given the same pre-drawn noise g (``gumbel_noise``), two samplers computing the same
conditionals draw the same images; the tests use this to check that both compute the same logits.

* naive: a full forward pass over the whole image for every pixel, D passes of cost O(D) each (the
  masked weights W * M multiplied once per call, ``models.arm.masked_conv.masks_applied_once``).
* cached (Ramachandran et al. 2017, "Fast generation for convolutional autoregressive models"):
  the model's ``incremental`` state keeps every layer's input computed so far and evaluates each
  layer only where the next pixel needs it (one pixel; for the gated PixelCNN's vertical stack, one
  row per row), so each pixel costs O(1) network work instead of O(D).
"""
from __future__ import annotations

from typing import Any

import torch

from models.arm.masked_conv import masks_applied_once


def gumbel_noise(n: int, dim: int, levels: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise g = -log(-log u), u ~ U(0, 1), of shape (n, D, L)."""
    tiny = torch.finfo(dtype).tiny
    u = torch.rand(n, dim, levels, dtype=dtype, device=device, generator=generator).clamp(tiny, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def _draw(log_probs: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """Gumbel-max draw of one level per row of log_probs (n, L); fresh noise when none is given."""
    if noise is None:
        tiny = torch.finfo(log_probs.dtype).tiny
        u = torch.rand_like(log_probs).clamp(tiny, 1.0 - 1e-7)
        noise = -torch.log(-torch.log(u))
    return (log_probs + noise).argmax(-1)


def _setup(model: Any, n: int, gumbel: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    parameter = next(model.parameters())
    _, height, width = model.spec.shape
    if gumbel is not None and tuple(gumbel.shape) != (n, height * width, model.spec.levels):
        raise ValueError(f"gumbel noise must have shape ({n}, {height * width}, {model.spec.levels})")
    images = parameter.new_zeros(n, *model.spec.shape)
    levels = torch.arange(model.spec.levels, dtype=parameter.dtype, device=parameter.device)
    return images, levels, height, width


@torch.no_grad()
def sample_naive(model: Any, n: int, *, y: torch.Tensor | None = None, gumbel: torch.Tensor | None = None,
                 mean: bool = False, record: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Draw ``n`` images with one full forward pass per pixel (the reference the cached sampler must match).

    ``gumbel``: pre-drawn noise (n, D, L), else fresh noise. ``record``: receives log p(x_i = . | x_<i),
    (n, L), for every pixel i. ``mean``: return the conditional means E[x_i | x_<i] along the drawn images.
    """
    images, levels, height, width = _setup(model, n, gumbel)
    means = torch.zeros_like(images)
    with masks_applied_once(model):
        for i in range(height * width):
            r, c = divmod(i, width)
            params = model(images, y)[:, :, r, c]
            log_probs = model.level_log_probs(params)
            if record is not None:
                record.append(log_probs)
            images[:, 0, r, c] = _draw(log_probs, None if gumbel is None else gumbel[:, i]).to(images.dtype)
            means[:, 0, r, c] = log_probs.exp() @ levels
    return means if mean else images


@torch.no_grad()
def sample_cached(model: Any, n: int, *, y: torch.Tensor | None = None, gumbel: torch.Tensor | None = None,
                  mean: bool = False, record: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Draw ``n`` images with the model's cached incremental network; arguments as ``sample_naive``."""
    images, levels, height, width = _setup(model, n, gumbel)
    means = torch.zeros_like(images)
    state = model.incremental(n, y)
    for i in range(height * width):
        r, c = divmod(i, width)
        log_probs = model.level_log_probs(state.params(r, c))
        if record is not None:
            record.append(log_probs)
        value = _draw(log_probs, None if gumbel is None else gumbel[:, i]).to(images.dtype)
        images[:, 0, r, c] = value
        means[:, 0, r, c] = log_probs.exp() @ levels
        state.observe(value, r, c)
    return means if mean else images
