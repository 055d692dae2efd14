"""Learned linear flows: an invertible linear map in LU form (Glow's 1x1 convolution for vectors)
and an elementwise affine map (NICE's final scaling layer).

LU (Kingma & Dhariwal 2018, section 3.2), W = P L (U + diag(sign * exp(log_s))) with P a fixed
permutation, L unit lower triangular, U strictly upper triangular:

    _call:    y = W x + b                    log |det W| = sum_i log_s_i   (O(D), no determinant)
    _inverse: x = W^-1 (y - b)               two triangular solves after P^T

Elementwise affine: y = x * exp(log_scale) + loc, log |det J| = sum_i log_scale_i.
"""
from __future__ import annotations

import torch
from torch import nn

from core.errors import DGMError
from models.flows.base import FlowTransform
from models.flows.registry import randomize_, register_transform


class LULinear(FlowTransform):
    """y = P L (U + diag(sign exp(log_s))) x + b; starts at the identity (P = I, L = U = 0, log_s = 0)."""

    def __init__(self, dim: int, permutation: torch.Tensor | None = None):
        super().__init__(cache_size=1)
        perm = torch.arange(dim) if permutation is None else torch.as_tensor(permutation, dtype=torch.long)
        if sorted(perm.tolist()) != list(range(dim)):
            raise DGMError("LULinear needs a permutation of 0..D-1")
        self.dim = dim
        self.register_buffer("permutation", perm)
        self.register_buffer("diag_sign", torch.ones(dim))
        self.lower = nn.Parameter(torch.zeros(dim, dim))
        self.upper = nn.Parameter(torch.zeros(dim, dim))
        self.log_s = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """L (unit lower triangular) and U' = U + diag(sign exp(log_s)) (upper triangular), (D, D)."""
        eye = torch.eye(self.dim, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower.tril(-1) + eye
        upper = self.upper.triu(1) + torch.diag(self.diag_sign * self.log_s.exp())
        return lower, upper

    def weight(self) -> torch.Tensor:
        """W = P L U' as a dense (D, D) matrix (rows permuted by P)."""
        lower, upper = self.factors()
        return (lower @ upper).index_select(0, self.permutation.argsort())

    def _check(self, v: torch.Tensor) -> None:
        if v.shape[-1] != self.dim:
            raise DGMError(f"LULinear expects vectors of {self.dim} coordinates, got shape {tuple(v.shape)}")

    def _ladj(self, v: torch.Tensor) -> torch.Tensor:
        return self.log_s.sum().expand(v.shape[:-1])

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        y = x @ self.weight().T + self.bias
        self._remember(x, y, self._ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y)
        lower, upper = self.factors()
        flat = (y - self.bias).reshape(-1, self.dim).index_select(-1, self.permutation)  # P^T (y - b), rows
        z = torch.linalg.solve_triangular(lower, flat.T, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper, z, upper=True).T.reshape(y.shape)
        self._remember(x, y, self._ladj(y))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._ladj(x)


class ElementwiseAffine(FlowTransform):
    """y = x * exp(log_scale) + loc per coordinate (NICE's scaling layer); starts at the identity."""

    def __init__(self, dim: int):
        super().__init__(cache_size=1)
        self.dim = dim
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def _ladj(self, v: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(v.shape[:-1])

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.log_scale.exp() + self.loc
        self._remember(x, y, self._ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = (y - self.loc) * (-self.log_scale).exp()
        self._remember(x, y, self._ladj(y))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._ladj(x)


def _lu_example(shape: tuple[int, ...], ctx: int, gen: torch.Generator) -> LULinear:
    t = randomize_(LULinear(shape[0], torch.randperm(shape[0], generator=gen)), gen, 0.4)
    t.diag_sign.copy_(torch.where(torch.rand(shape[0], generator=gen) < 0.5, -1.0, 1.0))
    return t


register_transform("lu_linear", LULinear, _lu_example, description="learned invertible linear map, LU form")
register_transform("elementwise_affine", ElementwiseAffine,
                   lambda shape, ctx, gen: randomize_(ElementwiseAffine(shape[0]), gen, 0.4),
                   description="elementwise affine map (NICE scaling layer)")
