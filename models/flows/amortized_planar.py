"""Amortised planar flow (Rezende & Mohamed 2015, section 4): u, w, b of each example from its context.

For parameters u, w (..., D) and b (...) (one set per example, broadcast against the batch of x):

    u_hat = u + (m(w^T u) - w^T u) w / |w|^2,   m(a) = -1 + softplus(a)    (w^T u_hat > -1: invertible)
    y = x + u_hat tanh(w^T x + b)
    log |det dy/dx| = log |1 + (1 - tanh^2(w^T x + b)) w^T u_hat|

The map of ``models.flows.planar`` with per-example parameters. No closed-form inverse (refused);
a posterior only scores the samples it drew, from the cache.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.flows.amortized import AmortizedTransformModule, split_last
from models.flows.base import FlowTransform
from models.flows.registry import randomize_, register_transform


class _PlanarMap(FlowTransform):
    """y = x + u_hat tanh(w^T x + b) with per-example u, w (..., D), b (...)."""

    def __init__(self, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
        super().__init__(cache_size=1)
        self.u, self.w, self.b = u, w, b

    def u_hat(self) -> torch.Tensor:
        """u moved along w so that w^T u_hat = -1 + softplus(w^T u), (..., D)."""
        wu = (self.w * self.u).sum(-1, keepdim=True)
        return self.u + (F.softplus(wu) - 1.0 - wu) * self.w / self.w.pow(2).sum(-1, keepdim=True)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        u_hat = self.u_hat()
        act = torch.tanh((x * self.w).sum(-1) + self.b)                     # (...,)
        y = x + act.unsqueeze(-1) * u_hat
        w_u_hat = (self.w * u_hat).sum(-1)
        ladj = torch.log(torch.abs(1.0 + (1.0 - act.pow(2)) * w_u_hat))
        self._remember(x, y, ladj)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.refuse_inverse()


class AmortizedPlanar(AmortizedTransformModule):
    """Planar layer with u, w, b = linear head of the context (P = 2 D + 1)."""

    def num_params(self) -> int:
        return 2 * self.dim + 1

    def transform(self, params: torch.Tensor) -> _PlanarMap:
        u, w, b = split_last(params, [self.dim, self.dim, 1])
        return _PlanarMap(u, w, b.squeeze(-1))


register_transform("amortized_planar", AmortizedPlanar,
                   lambda shape, ctx, gen: randomize_(AmortizedPlanar(shape[0], ctx), gen, 0.5),
                   closed_form_inverse=False, conditional=True,
                   description="planar layer whose u, w, b come from a context (VAE posteriors)")
