"""Activation normalisation (Glow, Kingma & Dhariwal 2018, section 3.1): a per-channel affine map
whose parameters are initialised from the first training batch.

    _call (base -> data):    y[c] = x[c] * exp(s_c) + b_c
    _inverse (data -> base): x[c] = (y[c] - b_c) * exp(-s_c)
    log |det dy/dx| = H * W * sum_c s_c

Data-dependent initialisation: the first ``_inverse`` in training mode (the density pass of the
first training batch, data -> base) sets b_c = mean and s_c = log std of channel c of its input y
over the batch and the pixels, so that the output x has zero mean and unit variance per channel.
The ``initialized`` buffer is saved with the model, so a resumed or loaded model never initialises
again; evaluation (eval mode) and sampling never initialise. An uninitialised layer is the identity.
"""
from __future__ import annotations

import torch
from torch import nn

from models.flows.image import ImageFlowTransform
from models.flows.registry import randomize_, register_transform


class ActNorm(ImageFlowTransform):
    """y = x * exp(s) + b per channel; b and s from the first training batch (see the module docstring)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(cache_size=1)
        self.channels = channels
        self.eps = eps
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _ladj(self, v: torch.Tensor) -> torch.Tensor:
        return (v.shape[-1] * v.shape[-2] * self.log_scale.sum()).expand(v.shape[:-3])

    def _params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loc.view(-1, 1, 1), self.log_scale.view(-1, 1, 1)

    @torch.no_grad()
    def initialize(self, y: torch.Tensor) -> None:
        """b_c = mean, s_c = log std of channel c of y (..., C, H, W) over everything but the channel."""
        per_channel = y.detach().movedim(-3, 0).reshape(self.channels, -1)
        self.loc.copy_(per_channel.mean(1))
        self.log_scale.copy_(torch.log(per_channel.std(1, unbiased=False) + self.eps))
        self.initialized.fill_(True)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image(x, self.channels)
        loc, log_scale = self._params()
        y = x * log_scale.exp() + loc
        self._remember(x, y, self._ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self.check_image(y, self.channels)
        if self.training and not bool(self.initialized):
            self.initialize(y)
        loc, log_scale = self._params()
        x = (y - loc) * (-log_scale).exp()
        self._remember(x, y, self._ladj(y))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._ladj(x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, initialized={bool(self.initialized)}"


def _example(shape: tuple[int, ...], ctx: int, gen: torch.Generator) -> ActNorm:
    layer = randomize_(ActNorm(shape[0]), gen, 0.5)
    layer.initialized.fill_(True)
    return layer


register_transform("actnorm", ActNorm, _example, event="image",
                   description="Glow actnorm: per-channel affine map with data-dependent initialisation")
