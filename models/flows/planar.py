"""Planar flow (Rezende & Mohamed 2015): y = x + u_hat tanh(w^T x + b).

    u_hat = u + (m(w^T u) - w^T u) w / |w|^2,   m(a) = -1 + softplus(a)
    (so w^T u_hat = m(w^T u) > -1 and the map is invertible)
    log |det dy/dx| = log |1 + (1 - tanh^2(w^T x + b)) w^T u_hat|

No closed-form inverse: ``_inverse`` refuses (``NoClosedFormInverse``); torch's cache inverts the
values the transform itself produced, which is all a variational posterior needs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.flows.base import FlowTransform
from models.flows.registry import randomize_, register_transform


class Planar(FlowTransform):
    """y = x + u_hat tanh(w^T x + b) with w^T u_hat > -1 (see the module docstring)."""

    def __init__(self, dim: int):
        super().__init__(cache_size=1)
        self.dim = dim
        bound = 1.0 / math.sqrt(dim)
        self.bias = nn.Parameter(torch.zeros(1))
        self.u = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
        self.w = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))

    def u_hat(self) -> torch.Tensor:
        """u moved along w so that w^T u_hat = -1 + softplus(w^T u) > -1, (D,)."""
        wu = self.w @ self.u
        return self.u + (F.softplus(wu) - 1.0 - wu) * self.w / self.w.pow(2).sum()

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        u_hat = self.u_hat()
        act = torch.tanh(x @ self.w + self.bias[0])  # (...,)
        y = x + act.unsqueeze(-1) * u_hat
        ladj = torch.log(torch.abs(1.0 + (1.0 - act.pow(2)) * (self.w @ u_hat)))
        self._remember(x, y, ladj)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.refuse_inverse()


register_transform("planar", Planar, lambda shape, ctx, gen: randomize_(Planar(shape[0]), gen, 0.8),
                   closed_form_inverse=False, description="planar flow (no closed-form inverse)")
