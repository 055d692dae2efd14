"""Sylvester flows (van den Berg et al. 2018): y = x + Q R h(R~ Q^T x + b), h = tanh.

Q (D, M) has orthonormal columns, R and R~ (M, M) are upper triangular with diagonals tanh(.),
so that r_ii r~_ii > -1 >= -1 / max h' and the map is invertible. Sylvester's determinant
identity det(I_D + A B) = det(I_M + B A) makes the Jacobian determinant triangular:

    log |det dy/dx| = sum_i log |1 + h'(pre_i) r~_ii r_ii|,   pre = R~ Q^T x + b

Three ways to make Q orthogonal (``variant``):

    orthogonal   Q = first M columns of exp(A - A^T)   (the exponential of a skew-symmetric matrix is
                 exactly orthogonal; the paper orthogonalises iteratively instead; M <= D)
    householder  Q = H_1 H_2 ... H_K, K Householder reflections (M = D)
    triangular   Q = I, or the reversal permutation with ``reverse=True`` (M = D); alternate the
                 two between layers so that both triangular orders are used

``log_det_eps`` is added inside the log (default 0); Pyro adds 1e-8, so the oracle tests set it.
No closed-form inverse: ``_inverse`` refuses (``NoClosedFormInverse``); cached values invert.

On Pyro's ``Sylvester`` (1.9.2): it computes y = x + R^T Q^T tanh(Q S^T x + b) (in column
form) but log |det J| as if Q were the identity, which is wrong for Q != I (the tests show it
against autograd); its forward map equals ours for Q = reversal, R = P R_p^T P, R~ = P S_p^T P.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from core.errors import DGMError
from models.flows.base import FlowTransform
from models.flows.registry import randomize_, register_transform

Variant = Literal["orthogonal", "householder", "triangular"]


class Sylvester(FlowTransform):
    """y = x + Q R tanh(R~ Q^T x + b) (see the module docstring for Q's variants)."""

    def __init__(self, dim: int, variant: Variant = "householder", *, num_columns: int | None = None,
                 num_reflections: int | None = None, reverse: bool = False, log_det_eps: float = 0.0):
        super().__init__(cache_size=1)
        if variant not in ("orthogonal", "householder", "triangular"):
            raise DGMError(f"unknown Sylvester variant {variant!r}; choose orthogonal, householder or triangular")
        columns = num_columns if num_columns is not None else dim
        if variant != "orthogonal" and columns != dim:
            raise DGMError("only the orthogonal Sylvester variant takes num_columns M < D")
        if not 1 <= columns <= dim:
            raise DGMError(f"Sylvester needs 1 <= num_columns <= {dim}, got {columns}")
        self.dim, self.columns, self.variant, self.log_det_eps = dim, columns, variant, log_det_eps
        self.r_upper = nn.Parameter(torch.empty(columns, columns).uniform_(-0.01, 0.01))
        self.s_upper = nn.Parameter(torch.empty(columns, columns).uniform_(-0.01, 0.01))
        self.r_diag = nn.Parameter(torch.empty(columns).uniform_(-0.01, 0.01))
        self.s_diag = nn.Parameter(torch.empty(columns).uniform_(-0.01, 0.01))
        self.b = nn.Parameter(torch.empty(columns).uniform_(-0.01, 0.01))
        if variant == "orthogonal":
            self.skew = nn.Parameter(torch.empty(dim, dim).uniform_(-0.01, 0.01))
        elif variant == "householder":
            self.vectors = nn.Parameter(torch.randn(num_reflections or dim, dim) / dim ** 0.5)
        else:
            order = torch.arange(dim - 1, -1, -1) if reverse else torch.arange(dim)
            self.register_buffer("order", order)

    def R(self) -> torch.Tensor:
        """Upper triangular (M, M) with diagonal tanh(r_diag)."""
        return self.r_upper.triu(1) + torch.diag(torch.tanh(self.r_diag))

    def R_tilde(self) -> torch.Tensor:
        """Upper triangular (M, M) with diagonal tanh(s_diag)."""
        return self.s_upper.triu(1) + torch.diag(torch.tanh(self.s_diag))

    def Q(self) -> torch.Tensor:
        """(D, M) with orthonormal columns, built as ``variant`` says."""
        if self.variant == "orthogonal":
            return torch.linalg.matrix_exp(self.skew - self.skew.T)[:, : self.columns]
        eye = torch.eye(self.dim, dtype=self.b.dtype, device=self.b.device)
        if self.variant == "triangular":
            return eye.index_select(1, self.order)
        q = eye
        for v in self.vectors:  # Q = H_1 H_2 ... H_K
            unit = v / v.norm()
            q = q - 2.0 * torch.outer(q @ unit, unit)
        return q

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise DGMError(f"Sylvester expects vectors of {self.dim} coordinates, got shape {tuple(x.shape)}")
        q, r, r_tilde = self.Q(), self.R(), self.R_tilde()
        pre = (x @ q) @ r_tilde.T + self.b                      # R~ Q^T x + b, (..., M)
        act = torch.tanh(pre)
        y = x + (act @ r.T) @ q.T                               # x + Q R h, (..., D)
        diag = r.diagonal() * r_tilde.diagonal()
        ladj = torch.log(torch.abs(1.0 + (1.0 - act.pow(2)) * diag + self.log_det_eps)).sum(-1)
        self._remember(x, y, ladj)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.refuse_inverse()


def _example(variant: Variant, **kwargs):
    def example(shape: tuple[int, ...], ctx: int, gen: torch.Generator) -> Sylvester:
        dim = shape[0]
        extra = {"num_columns": max(1, dim - 1)} if variant == "orthogonal" else {}
        return randomize_(Sylvester(dim, variant, **kwargs, **extra), gen, 0.6)
    return example


register_transform("sylvester_orthogonal", Sylvester, _example("orthogonal"), closed_form_inverse=False,
                   description="orthogonal Sylvester flow, Q from a matrix exponential (M <= D columns)")
register_transform("sylvester_householder", Sylvester, _example("householder", num_reflections=2),
                   closed_form_inverse=False, description="Householder Sylvester flow")
register_transform("sylvester_triangular", Sylvester, _example("triangular", reverse=True),
                   closed_form_inverse=False, description="triangular Sylvester flow (Q a permutation)")
