"""Sylvester flows (van den Berg et al. 2018): y = x + Q R h(R~ Q^T x + b), h = tanh.

Q (D, M) has orthonormal columns, R and R~ (M, M) are upper triangular with diagonals tanh(.),
so that r_ii r~_ii > -1 >= -1 / max h' and the map is invertible. Sylvester's determinant
identity det(I_D + A B) = det(I_M + B A) makes the Jacobian determinant triangular:

    log |det dy/dx| = sum_i log |1 + h'(pre_i) r~_ii r_ii|,   pre = R~ Q^T x + b

The maths is :func:`sylvester_forward`, shared by :class:`Sylvester` (its own parameters) and the
amortised layer (``models.flows.amortized_sylvester``, parameters per example from a context). Q
enters only through Q^T x and Q v, so each variant applies it in its own way (:class:`DenseQ`,
:class:`ReflectionQ`, :class:`PermutationQ`). Three ways to make Q orthogonal (``variant``):

    orthogonal   Q = first M columns of exp(A - A^T)   (the exponential of a skew-symmetric matrix is
                 exactly orthogonal; the paper orthogonalises iteratively instead; M <= D)
    householder  Q = H_1 H_2 ... H_K, K Householder reflections (M = D), applied one by one
    triangular   Q = I, or the reversal permutation with ``reverse=True`` (M = D); alternate the
                 two between layers so that both triangular orders are used

``log_det_eps`` is added inside the log (default 0); Pyro adds 1e-8, so the oracle tests set it.
No closed-form inverse: ``_inverse`` refuses (``NoClosedFormInverse``); cached values invert.

On Pyro's ``Sylvester`` (1.9.2): it computes y = x + R^T Q^T tanh(Q S^T x + b) (in column
form) but log |det J| as if Q were the identity, which is wrong for Q != I (the tests show it
against autograd); its forward map equals ours for Q = reversal, R = P R_p^T P, R~ = P S_p^T P.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import nn

from core.errors import DGMError
from models.flows.householder import reflect_all, unit_normals
from models.flows.parametric import LayerMaths, ParametricLayer
from models.flows.permutation import alternating_order
from models.flows.registry import randomize_, register_transform

Variant = Literal["orthogonal", "householder", "triangular"]
VARIANTS: tuple[str, ...] = ("orthogonal", "householder", "triangular")


def matvec(matrix: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A v for A (..., P, Q), v (..., Q) -> (..., P), broadcast. One matrix: a matrix product; a batch
    of them: a product and a sum (batched ``bmm`` of small matrices is several times slower on CPU)."""
    if matrix.dim() == 2:
        return v @ matrix.T
    return (matrix * v.unsqueeze(-2)).sum(-1)


class QMap(Protocol):
    """Q (..., D, M) with orthonormal columns, as the two products the Sylvester maths needs."""

    def transpose_times(self, x: torch.Tensor) -> torch.Tensor:
        """Q^T x: (..., D) -> (..., M)."""
        ...

    def times(self, v: torch.Tensor) -> torch.Tensor:
        """Q v: (..., M) -> (..., D)."""
        ...


@dataclass(frozen=True)
class DenseQ:
    """Q given as a matrix (..., D, M) with orthonormal columns."""

    q: torch.Tensor

    def transpose_times(self, x: torch.Tensor) -> torch.Tensor:
        return matvec(self.q.transpose(-1, -2), x)

    def times(self, v: torch.Tensor) -> torch.Tensor:
        return matvec(self.q, v)


@dataclass(frozen=True)
class ReflectionQ:
    """Q = H_1 H_2 ... H_K for unit normals (..., K, D) (M = D), never formed as a matrix."""

    units: torch.Tensor

    def transpose_times(self, x: torch.Tensor) -> torch.Tensor:
        return reflect_all(x, self.units)                # Q^T = H_K ... H_1: H_1 acts first

    def times(self, v: torch.Tensor) -> torch.Tensor:
        return reflect_all(v, self.units, reverse=True)  # Q = H_1 ... H_K: H_K acts first


@dataclass(frozen=True)
class PermutationQ:
    """Q = I[:, order], the permutation matrix whose column j is e_order[j] (M = D)."""

    order: torch.Tensor

    def transpose_times(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(-1, self.order)

    def times(self, v: torch.Tensor) -> torch.Tensor:
        return v.index_select(-1, self.order.argsort())


def sylvester_forward(x: torch.Tensor, r: torch.Tensor, r_tilde: torch.Tensor, b: torch.Tensor, q: QMap,
                      log_det_eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x + Q R tanh(R~ Q^T x + b) and sum_i log |1 + (1 - tanh^2(pre_i)) r_ii r~_ii + eps|, for x (..., D),
    R, R~ upper triangular (..., M, M), b (..., M) and Q (:class:`QMap`), broadcast over the batch."""
    act = torch.tanh(matvec(r_tilde, q.transpose_times(x)) + b)           # (..., M)
    y = x + q.times(matvec(r, act))
    diag = r.diagonal(dim1=-2, dim2=-1) * r_tilde.diagonal(dim1=-2, dim2=-1)
    return y, torch.log(torch.abs(1.0 + (1.0 - act.pow(2)) * diag + log_det_eps)).sum(-1)


SYLVESTER = LayerMaths(sylvester_forward)


def sylvester_columns(variant: str, dim: int, num_columns: int | None, num_reflections: int | None) -> int:
    """M, the columns of Q, after one-line errors for an unknown variant or sizes it cannot take."""
    if variant not in VARIANTS:
        raise DGMError(f"unknown Sylvester variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    columns = dim if num_columns is None else num_columns
    if variant != "orthogonal" and columns != dim:
        raise DGMError("only the orthogonal Sylvester variant takes num_columns M < D")
    if not 1 <= columns <= dim:
        raise DGMError(f"Sylvester needs 1 <= num_columns <= {dim}, got {columns}")
    if variant == "householder" and num_reflections is not None and num_reflections < 1:
        raise DGMError(f"a Householder Sylvester layer needs at least one reflection, got {num_reflections}")
    return columns


class Sylvester(ParametricLayer):
    """y = x + Q R tanh(R~ Q^T x + b) (see the module docstring for Q's variants)."""

    maths = SYLVESTER

    def __init__(self, dim: int, variant: Variant = "householder", *, num_columns: int | None = None,
                 num_reflections: int | None = None, reverse: bool = False, log_det_eps: float = 0.0):
        super().__init__(cache_size=1)
        columns = sylvester_columns(variant, dim, num_columns, num_reflections)
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
            self.register_buffer("order", alternating_order(dim, int(reverse)))

    def R(self) -> torch.Tensor:
        """Upper triangular (M, M) with diagonal tanh(r_diag)."""
        return self.r_upper.triu(1) + torch.diag(torch.tanh(self.r_diag))

    def R_tilde(self) -> torch.Tensor:
        """Upper triangular (M, M) with diagonal tanh(s_diag)."""
        return self.s_upper.triu(1) + torch.diag(torch.tanh(self.s_diag))

    def q_map(self) -> QMap:
        """Q as ``variant`` says: exp(A - A^T)[:, :M], reflections, or a permutation."""
        if self.variant == "orthogonal":
            return DenseQ(torch.linalg.matrix_exp(self.skew - self.skew.T)[:, : self.columns])
        if self.variant == "householder":
            return ReflectionQ(unit_normals(self.vectors))
        return PermutationQ(self.order)

    def Q(self) -> torch.Tensor:
        """Q as a (D, M) matrix: its columns Q e_1 .. Q e_M."""
        return self.q_map().times(torch.eye(self.columns, dtype=self.b.dtype, device=self.b.device)).T

    def layer_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, QMap, float]:
        return self.R(), self.R_tilde(), self.b, self.q_map(), self.log_det_eps

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise DGMError(f"Sylvester expects vectors of {self.dim} coordinates, got shape {tuple(x.shape)}")
        return super()._call(x)


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
