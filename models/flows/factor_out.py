"""Multi-scale factor-out (RealNVP, Dinh et al. 2017, section 3.6) as one bijection of a fixed shape,
so that a multi-scale flow is an ordinary list of transforms in Pyro's ``TransformedDistribution``.

In the data -> base direction a multi-scale flow sends half of the channels straight to the latent
("factors them out") and keeps transforming the other half at a coarser scale. Written base -> data,
as Pyro composes transforms, this is an identity on the factored half and the inner (coarser) flow
on the kept half::

    _call:    y = concat_c( inner(x[:keep]),  x[keep:] )      (concat over channels)
    _inverse: x = concat_c( inner^-1(y[:keep]),  y[keep:] )
    log |det dy/dx| = log |det d inner / d x[:keep]|           (the identity adds nothing)

The inner flow must map (keep, H, W) to itself (its squeezes are undone inside it), so the whole
multi-scale flow maps images of the data's shape to latents of the same shape: a standard normal
base of shape (C, H, W) holds all factored halves, each in the pixels it came from, and sampling,
temperatures and latent interpolation need no bookkeeping of per-scale latents.

Priors on the factored half: RealNVP's factored half is standard normal (this transform alone).
Glow's learned prior z_2 ~ N(mu(h_1), sigma(h_1)^2), conditioned on the kept half h_1 at the split,
is the affine map h_2 = mu(h_1) + sigma(h_1) * eps with eps ~ N(0, I): exactly an affine channel
coupling in which the kept channels condition the factored ones. ``models.flows.multiscale``
places that coupling on the data side of the factor-out (the "split prior"), so both papers'
choices are the same two registered transforms, and the log-det of the learned prior is the
coupling's.
"""
from __future__ import annotations

from typing import Sequence

import torch

from core.errors import DGMError
from models.flows.base import FlowTransform
from models.flows.chain import Chain
from models.flows.image import ImageFlowTransform
from models.flows.registry import register_transform
from models.flows.conv_coupling import conv_affine_coupling
from models.flows.registry import randomize_
from models.flows.squeeze import Squeeze, Unsqueeze


class FactorOut(ImageFlowTransform):
    """Identity on channels keep.. (factored out to the base), ``inner`` on channels :keep."""

    def __init__(self, inner: Sequence[FlowTransform] | Chain, keep: int, shape: tuple[int, int, int]):
        super().__init__(cache_size=1)
        channels, height, width = shape
        if not 0 < keep < channels:
            raise DGMError(f"a factor-out must keep some of the {channels} channels and factor out the others, "
                           f"got keep={keep}")
        self.inner = inner if isinstance(inner, Chain) else Chain(inner)
        self.inner._cache_size = 0
        kept = (keep, height, width)
        if tuple(self.inner.forward_shape(kept)) != kept:
            raise DGMError(f"the inner flow of a factor-out must map {kept} to itself, got "
                           f"{tuple(self.inner.forward_shape(kept))}")
        self.keep, self.shape = keep, tuple(shape)

    def _check(self, v: torch.Tensor) -> None:
        self.check_image(v, self.shape[0])

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        x_keep, x_out = x[..., :self.keep, :, :], x[..., self.keep:, :, :]
        y_keep = self.inner(x_keep)
        y = torch.cat([y_keep, x_out], dim=-3)
        self._remember(x, y, self.inner.log_abs_det_jacobian(x_keep, y_keep))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y)
        y_keep, y_out = y[..., :self.keep, :, :], y[..., self.keep:, :, :]
        x_keep = self.inner._inv_call(y_keep)
        x = torch.cat([x_keep, y_out], dim=-3)
        self._remember(x, y, self.inner.log_abs_det_jacobian(x_keep, y_keep))
        return x


def _example(shape: tuple[int, ...], ctx: int, gen: torch.Generator) -> FactorOut:

    c, h, w = shape
    keep = c // 2
    inner = [Squeeze(), conv_affine_coupling((4 * keep, h // 2, w // 2), "channel", 1, hidden=6, blocks=0),
             Unsqueeze(), conv_affine_coupling((keep, h, w), "checkerboard", 0, hidden=6, blocks=0)]
    return randomize_(FactorOut(inner, keep, shape), gen, 0.3)


register_transform("factor_out", FactorOut, _example, event="image",
                   description="multi-scale factor-out: the inner flow on the kept channels, identity on the rest")
