"""Planar flow (Rezende & Mohamed 2015): y = x + u_hat tanh(w^T x + b).

    u_hat = u + (m(w^T u) - w^T u) w / |w|^2,   m(a) = -1 + softplus(a)
    (so w^T u_hat = m(w^T u) > -1 and the map is invertible)
    log |det dy/dx| = log |1 + (1 - tanh^2(w^T x + b)) w^T u_hat|

The maths is :func:`planar_forward`, shared by :class:`Planar` (its own u, w, b) and the amortised
layer of ``models.flows.amortized_planar`` (u, w, b per example from a context).
No closed-form inverse: ``_inverse`` refuses (``NoClosedFormInverse``); torch's cache inverts the
values the transform itself produced, which is all a variational posterior needs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.flows.parametric import LayerMaths, ParametricLayer
from models.flows.registry import randomize_, register_transform


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a^T b over the last dimension, broadcast: (..., D), (..., D) -> (...)."""
    return (a * b).sum(-1)


def planar_u_hat(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """u moved along w so that w^T u_hat = -1 + softplus(w^T u) > -1: u, w (..., D) -> (..., D)."""
    wu = dot(w, u).unsqueeze(-1)
    return u + (F.softplus(wu) - 1.0 - wu) * w / w.pow(2).sum(-1, keepdim=True)


def planar_forward(x: torch.Tensor, u: torch.Tensor, w: torch.Tensor,
                   b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x + u_hat tanh(w^T x + b) and log |det dy/dx|, for x (..., D), u, w (..., D), b (...)."""
    u_hat = planar_u_hat(u, w)
    act = torch.tanh(dot(x, w) + b)                                     # (...,)
    y = x + act.unsqueeze(-1) * u_hat
    return y, torch.log(torch.abs(1.0 + (1.0 - act.pow(2)) * dot(w, u_hat)))


PLANAR = LayerMaths(planar_forward)


class Planar(ParametricLayer):
    """y = x + u_hat tanh(w^T x + b) with w^T u_hat > -1 (see the module docstring)."""

    maths = PLANAR

    def __init__(self, dim: int):
        super().__init__(cache_size=1)
        self.dim = dim
        bound = 1.0 / math.sqrt(dim)
        self.bias = nn.Parameter(torch.zeros(1))
        self.u = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
        self.w = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))

    def layer_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.u, self.w, self.bias[0]


register_transform("planar", Planar, lambda shape, ctx, gen: randomize_(Planar(shape[0]), gen, 0.8),
                   closed_form_inverse=False, description="planar flow (no closed-form inverse)")
