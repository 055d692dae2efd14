"""Amortised Sylvester flows (van den Berg et al. 2018): R, R~, b and Q of each example from its context.

The map of ``models.flows.sylvester`` with per-example parameters (broadcast against the batch of x):

    y = x + Q R tanh(R~ Q^T x + b),       Q (..., D, M) orthonormal columns, R, R~ (..., M, M) upper
                                          triangular with diagonals tanh(.) (so r_ii r~_ii > -1)
    log |det dy/dx| = sum_i log |1 + (1 - tanh^2(pre_i)) r_ii r~_ii|,   pre = R~ Q^T x + b

(Sylvester's determinant identity makes the Jacobian determinant that of an M x M triangular
matrix.) The head outputs the upper triangles of R and R~ (M (M + 1) / 2 values each, the diagonal
through tanh), b (M) and Q's parameters:

    orthogonal   B (D, M), Q = the orthonormal factor of B = Q T (reduced QR, differentiable): exactly
                 orthonormal columns for any B of full rank. van den Berg et al. orthogonalise
                 iteratively; the exponential of a per-example skew-symmetric D x D matrix (exactly
                 orthogonal too) made a training step several times slower on CPU
    householder  K reflection vectors (K D values), Q = H_1 H_2 ... H_K (M = D), applied to vectors
                 reflection by reflection, never formed as a matrix
    triangular   none: Q = I, or the reversal permutation with ``reverse=True`` (M = D); consecutive
                 layers alternate the two

No closed-form inverse (refused); a posterior scores its own samples from the cache.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from core.errors import DGMError
from models.flows.amortized import AmortizedTransformModule, split_last
from models.flows.amortized_householder import reflect_batch
from models.flows.base import FlowTransform
from models.flows.registry import randomize_, register_transform

Variant = Literal["orthogonal", "householder", "triangular"]
VARIANTS: tuple[str, ...] = ("orthogonal", "householder", "triangular")


def upper_triangular_tanh_diagonal(values: torch.Tensor, size: int) -> torch.Tensor:
    """(..., M (M + 1) / 2) values, row by row -> (..., M, M) upper triangular matrices, diagonal through tanh."""
    rows, cols = torch.triu_indices(size, size, device=values.device)
    values = torch.where(rows == cols, torch.tanh(values), values)
    flat = (rows * size + cols).expand(*values.shape[:-1], -1)
    full = values.new_zeros(*values.shape[:-1], size * size).scatter(-1, flat, values)
    return full.unflatten(-1, (size, size))


def matvec(matrix: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A v for A (..., P, Q), v (..., Q), broadcast: as a product and a sum (batched matrix-vector
    ``bmm`` of small matrices is several times slower on CPU)."""
    return (matrix * v.unsqueeze(-2)).sum(-1)


class _SylvesterMap(FlowTransform):
    """y = x + Q R tanh(R~ Q^T x + b) with per-example R, R~ (..., M, M), b (..., M) and Q (see the module)."""

    def __init__(self, r: torch.Tensor, r_tilde: torch.Tensor, b: torch.Tensor, variant: Variant,
                 q: torch.Tensor | None = None, units: torch.Tensor | None = None,
                 order: torch.Tensor | None = None):
        super().__init__(cache_size=1)
        self.r, self.r_tilde, self.b, self.variant = r, r_tilde, b, variant
        self.q, self.units, self.order = q, units, order

    def q_transpose_times(self, x: torch.Tensor) -> torch.Tensor:
        """Q^T x, (..., M)."""
        if self.variant == "orthogonal":
            return (self.q * x.unsqueeze(-1)).sum(-2)
        if self.variant == "householder":  # Q^T = H_K ... H_1: H_1 acts first
            for k in range(self.units.shape[-2]):
                x = reflect_batch(x, self.units[..., k, :])
            return x
        return x.index_select(-1, self.order)

    def q_times(self, v: torch.Tensor) -> torch.Tensor:
        """Q v, (..., D)."""
        if self.variant == "orthogonal":
            return matvec(self.q, v)
        if self.variant == "householder":  # Q = H_1 ... H_K: H_K acts first
            for k in reversed(range(self.units.shape[-2])):
                v = reflect_batch(v, self.units[..., k, :])
            return v
        return v.index_select(-1, self.order.argsort())

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        pre = matvec(self.r_tilde, self.q_transpose_times(x)) + self.b
        act = torch.tanh(pre)                                                   # (..., M)
        y = x + self.q_times(matvec(self.r, act))
        diag = self.r.diagonal(dim1=-2, dim2=-1) * self.r_tilde.diagonal(dim1=-2, dim2=-1)
        ladj = torch.log(torch.abs(1.0 + (1.0 - act.pow(2)) * diag)).sum(-1)
        self._remember(x, y, ladj)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.refuse_inverse()


class AmortizedSylvester(AmortizedTransformModule):
    """Sylvester layer with R, R~, b and Q from a linear head of the context (see the module docstring)."""

    def __init__(self, dim: int, context_features: int, variant: Variant = "orthogonal", *,
                 num_columns: int | None = None, num_reflections: int = 4, reverse: bool = False):
        if variant not in VARIANTS:
            raise DGMError(f"unknown Sylvester variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        columns = dim if num_columns is None else num_columns
        if variant != "orthogonal" and columns != dim:
            raise DGMError("only the orthogonal Sylvester variant takes num_columns M < D")
        if not 1 <= columns <= dim:
            raise DGMError(f"Sylvester needs 1 <= num_columns <= {dim}, got {columns}")
        if variant == "householder" and num_reflections < 1:
            raise DGMError(f"a Householder Sylvester layer needs at least one reflection, got {num_reflections}")
        self.variant, self.columns, self.num_reflections = variant, columns, num_reflections
        super().__init__(dim, context_features)
        order = (torch.arange(dim - 1, -1, -1) if reverse else torch.arange(dim)) if variant == "triangular" else None
        self.register_buffer("order", order)
        # R, R~ start near zero (the layer near the identity), as van den Berg et al.'s small initial outputs
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def _sizes(self) -> list[int]:
        m, d = self.columns, self.dim
        triangle = m * (m + 1) // 2
        q_size = {"orthogonal": d * m, "householder": self.num_reflections * d, "triangular": 0}
        return [triangle, triangle, m, q_size[self.variant]]

    def num_params(self) -> int:
        return sum(self._sizes())

    def transform(self, params: torch.Tensor) -> _SylvesterMap:
        r, r_tilde, b, q_params = split_last(params, self._sizes())
        m = self.columns
        r = upper_triangular_tanh_diagonal(r, m)
        r_tilde = upper_triangular_tanh_diagonal(r_tilde, m)
        if self.variant == "orthogonal":
            q = torch.linalg.qr(q_params.unflatten(-1, (self.dim, m))).Q
            return _SylvesterMap(r, r_tilde, b, "orthogonal", q=q)
        if self.variant == "householder":
            vectors = q_params.unflatten(-1, (self.num_reflections, self.dim))
            return _SylvesterMap(r, r_tilde, b, "householder", units=vectors / vectors.norm(dim=-1, keepdim=True))
        return _SylvesterMap(r, r_tilde, b, "triangular", order=self.order)


def _example(variant: Variant, **kwargs):
    def example(shape: tuple[int, ...], ctx: int, gen: torch.Generator) -> AmortizedSylvester:
        dim = shape[0]
        extra = {"num_columns": max(1, dim - 1)} if variant == "orthogonal" else {}
        return randomize_(AmortizedSylvester(dim, ctx, variant, **kwargs, **extra), gen, 0.5)
    return example


register_transform("amortized_sylvester_orthogonal", AmortizedSylvester, _example("orthogonal"),
                   closed_form_inverse=False, conditional=True,
                   description="orthogonal Sylvester layer whose R, R~, b, Q come from a context (M <= D)")
register_transform("amortized_sylvester_householder", AmortizedSylvester,
                   _example("householder", num_reflections=2), closed_form_inverse=False, conditional=True,
                   description="Householder Sylvester layer whose parameters come from a context")
register_transform("amortized_sylvester_triangular", AmortizedSylvester, _example("triangular", reverse=True),
                   closed_form_inverse=False, conditional=True,
                   description="triangular Sylvester layer (Q a permutation) whose R, R~, b come from a context")
