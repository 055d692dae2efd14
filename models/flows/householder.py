"""Householder flow (Tomczak & Welling 2016): K reflections, an orthogonal map of determinant +-1.

    H_k = I - 2 v_k v_k^T / |v_k|^2,   _call: y = H_K ... H_2 H_1 x,   _inverse: x = H_1 H_2 ... H_K y
    log |det dy/dx| = 0

(H_1 is applied first, as in Pyro's ``Householder``; each H_k is its own inverse.)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from core.errors import DGMError
from models.flows.base import FlowTransform, zeros_ladj
from models.flows.registry import randomize_, register_transform


def reflect(x: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """x - 2 (v^T x) v for a unit vector v (D,): the reflection through the hyperplane normal to v."""
    return x - 2.0 * (x @ unit).unsqueeze(-1) * unit


class Householder(FlowTransform):
    """Product of K learned Householder reflections (volume preserving)."""

    volume_preserving = True

    def __init__(self, dim: int, count: int = 1):
        super().__init__(cache_size=1)
        if count < 1:
            raise DGMError(f"Householder needs at least one reflection, got {count}")
        self.dim = dim
        bound = 1.0 / math.sqrt(dim)
        self.vectors = nn.Parameter(torch.empty(count, dim).uniform_(-bound, bound))

    def units(self) -> torch.Tensor:
        """The reflection normals v_k / |v_k|, (K, D)."""
        return self.vectors / self.vectors.norm(dim=-1, keepdim=True)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for unit in self.units():
            y = reflect(y, unit)
        self._remember(x, y, zeros_ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = y
        for unit in reversed(self.units()):
            x = reflect(x, unit)
        self._remember(x, y, zeros_ladj(y))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return zeros_ladj(x)


register_transform("householder", Householder, lambda shape, ctx, gen: randomize_(Householder(shape[0], 3), gen, 1.0),
                   volume_preserving=True, description="product of Householder reflections")
