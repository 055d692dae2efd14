"""Householder flow (Tomczak & Welling 2016): K reflections, an orthogonal map of determinant +-1.

    H_k = I - 2 v_k v_k^T / |v_k|^2,   _call: y = H_K ... H_2 H_1 x,   _inverse: x = H_1 H_2 ... H_K y
    log |det dy/dx| = 0

(H_1 is applied first, as in Pyro's ``Householder``; each H_k is its own inverse.) The maths is
:func:`householder_forward` / :func:`householder_inverse` of unit normals (..., K, D), shared by
:class:`Householder` (its own vectors), the amortised layer (``models.flows.amortized_householder``)
and the Householder variant of Sylvester's Q (``models.flows.sylvester``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from core.errors import DGMError
from models.flows.base import zeros_ladj
from models.flows.parametric import LayerMaths, ParametricLayer
from models.flows.registry import randomize_, register_transform


def unit_normals(vectors: torch.Tensor) -> torch.Tensor:
    """v_k / |v_k| for reflection vectors (..., K, D)."""
    return vectors / vectors.norm(dim=-1, keepdim=True)


def reflect(x: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """H x = x - 2 (v^T x) v for unit vectors v (..., D) broadcast against x (..., D)."""
    return x - 2.0 * (x * unit).sum(-1, keepdim=True) * unit


def reflect_all(x: torch.Tensor, units: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """H_K ... H_1 x (H_1 first), or H_1 ... H_K x with ``reverse``, for unit normals (..., K, D)."""
    order = reversed(range(units.shape[-2])) if reverse else range(units.shape[-2])
    for k in order:
        x = reflect(x, units[..., k, :])
    return x


def householder_forward(x: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y = H_K ... H_1 x and log |det| = 0 (of the broadcast batch shape), x (..., D), units (..., K, D)."""
    y = reflect_all(x, units)
    return y, zeros_ladj(y)


def householder_inverse(y: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x = H_1 ... H_K y and log |det| = 0."""
    x = reflect_all(y, units, reverse=True)
    return x, zeros_ladj(x)


HOUSEHOLDER = LayerMaths(householder_forward, householder_inverse)


def check_reflections(count: int) -> None:
    """One-line error unless there is at least one reflection."""
    if count < 1:
        raise DGMError(f"a Householder flow needs at least one reflection, got {count}")


class Householder(ParametricLayer):
    """Product of K learned Householder reflections (volume preserving)."""

    maths = HOUSEHOLDER
    volume_preserving = True

    def __init__(self, dim: int, count: int = 1):
        super().__init__(cache_size=1)
        check_reflections(count)
        self.dim = dim
        bound = 1.0 / math.sqrt(dim)
        self.vectors = nn.Parameter(torch.empty(count, dim).uniform_(-bound, bound))

    def layer_params(self) -> tuple[torch.Tensor]:
        return (unit_normals(self.vectors),)

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return zeros_ladj(x)


register_transform("householder", Householder, lambda shape, ctx, gen: randomize_(Householder(shape[0], 3), gen, 1.0),
                   volume_preserving=True, description="product of Householder reflections")
