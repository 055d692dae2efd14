"""Radial flow (Rezende & Mohamed 2015): y = x + beta h(alpha, r) (x - x0), r = |x - x0|.

    alpha = softplus(alpha'),  beta = -alpha + softplus(beta')     (so beta > -alpha: invertible)
    h = 1 / (alpha + r),  h' = -h^2
    log |det dy/dx| = (D - 1) log(1 + beta h) + log(1 + beta h + beta h' r)

No closed-form inverse: ``_inverse`` refuses (``NoClosedFormInverse``); cached values invert.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.flows.base import FlowTransform
from models.flows.registry import randomize_, register_transform


class Radial(FlowTransform):
    """Contraction or expansion around a learned centre x0 (see the module docstring)."""

    def __init__(self, dim: int):
        super().__init__(cache_size=1)
        self.dim = dim
        bound = 1.0 / math.sqrt(dim)
        self.x0 = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
        self.alpha_prime = nn.Parameter(torch.empty(1).uniform_(-bound, bound))
        self.beta_prime = nn.Parameter(torch.empty(1).uniform_(-bound, bound))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        alpha = F.softplus(self.alpha_prime)
        beta = -alpha + F.softplus(self.beta_prime)
        diff = x - self.x0
        r = diff.norm(dim=-1, keepdim=True)
        h = 1.0 / (alpha + r)
        beta_h = beta * h
        y = x + beta_h * diff
        ladj = ((self.dim - 1) * torch.log1p(beta_h) + torch.log1p(beta_h - beta * h.pow(2) * r)).squeeze(-1)
        self._remember(x, y, ladj)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.refuse_inverse()


register_transform("radial", Radial, lambda shape, ctx, gen: randomize_(Radial(shape[0]), gen, 0.8),
                   closed_form_inverse=False, description="radial flow (no closed-form inverse)")
