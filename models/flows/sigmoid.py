"""The squashing map of variational dequantization: real values -> noise u in the unit interval.

    _call:    u = (1 - eps) * sigmoid(v)                  in (0, 1 - eps): never 1, even in float32
    _inverse: v = logit(u / (1 - eps))
    log |det du/dv| = sum_i [log sigmoid(v_i) + log sigmoid(-v_i)] + D log(1 - eps)

Flow++ (Ho et al. 2019) ends its dequantizer q(u | x) with a sigmoid; the factor 1 - eps (default
1e-6, an exact part of the map and of its Jacobian) keeps a saturated float32 sigmoid from
returning u = 1, where the uniform prior of the dequantization noise (support [0, 1)) is zero.
Elementwise on images (event shape (C, H, W)).

The map's image is the open interval (0, 1 - eps): a value u outside it (u <= 0, or u >= 1 - eps)
has density 0 under any distribution pushed through this transform. ``_inverse`` gives such an
image the placeholder v = 0 and log |det du/dv| = +inf, so a density read through the inverse is
exactly 0 there (log -inf), with no NaN from logit(0) or logit(>= 1) reaching the layers below.
Samples of the map itself (a saturated float32 sigmoid can return exactly 1 - eps) are scored from
the cache of the pass that drew them, never through this test.
"""
from __future__ import annotations

import math

import torch
from pyro.distributions import constraints

from core.errors import DGMError
from models.flows.image import ImageFlowTransform, sum_event
from models.flows.log_sigmoid_derivative import log_sigmoid_derivative
from models.flows.registry import register_transform


class Sigmoid(ImageFlowTransform):
    """u = (1 - eps) sigmoid(v), elementwise on images."""

    codomain = constraints.independent(constraints.unit_interval, 3)

    def __init__(self, eps: float = 1e-6):
        super().__init__(cache_size=1)
        if not 0.0 <= eps < 1.0:
            raise DGMError(f"the sigmoid's eps must lie in [0, 1), got {eps}")
        self.eps = float(eps)

    def _ladj(self, v: torch.Tensor) -> torch.Tensor:
        pixels = v.shape[-1] * v.shape[-2] * v.shape[-3]
        return sum_event(log_sigmoid_derivative(v)) + pixels * math.log1p(-self.eps)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image(x)
        y = (1.0 - self.eps) * torch.sigmoid(x)
        self._remember(x, y, self._ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self.check_image(y)
        s = y / (1.0 - self.eps)
        outside = (s <= 0) | (s >= 1)                          # not an image of the map (module docstring)
        s = torch.where(outside, torch.full_like(s, 0.5), s)    # placeholder v = logit(1/2) = 0
        x = torch.logit(s)
        ladj = torch.where(outside.flatten(-3).any(-1), torch.full_like(x[..., 0, 0, 0], math.inf), self._ladj(x))
        self._remember(x, y, ladj)
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._ladj(x)


register_transform("sigmoid", Sigmoid, lambda shape, ctx, gen: Sigmoid(0.01), event="image",
                   description="(1 - eps) sigmoid: real values to dequantization noise in [0, 1)")
