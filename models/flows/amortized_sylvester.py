"""Amortised Sylvester flows (van den Berg et al. 2018): R, R~, b and Q of each example from its context.

The map of ``models.flows.sylvester`` (the same :func:`sylvester_forward`) with per-example
parameters, broadcast against the batch of x:

    y = x + Q R tanh(R~ Q^T x + b),       Q (..., D, M) orthonormal columns, R, R~ (..., M, M) upper
                                          triangular with diagonals tanh(.) (so r_ii r~_ii > -1)
    log |det dy/dx| = sum_i log |1 + (1 - tanh^2(pre_i)) r_ii r~_ii|,   pre = R~ Q^T x + b

The head outputs the upper triangles of R and R~ (M (M + 1) / 2 values each, the diagonal through
tanh), b (M) and Q's parameters:

    orthogonal   B (D, M), Q = the orthonormal factor of B = Q T (reduced QR, differentiable): exactly
                 orthonormal columns for any B of full rank. van den Berg et al. orthogonalise
                 iteratively; the exponential of a per-example skew-symmetric D x D matrix (exactly
                 orthogonal too) made a training step several times slower on CPU
    householder  K reflection vectors (K D values), Q = H_1 H_2 ... H_K (M = D), applied to vectors
                 reflection by reflection, never formed as a matrix
    triangular   none: Q = I, or the reversal permutation with ``reverse=True`` (M = D); consecutive
                 layers alternate the two

No closed-form inverse (refused); a posterior scores its own samples from the cache. Registered as
the VAE posterior families ``sylvester_orthogonal`` (option ``columns``, also ``--sylvester-columns``),
``sylvester_householder`` (option ``reflections``, also ``--sylvester-reflections``) and
``sylvester_triangular``; consecutive layers alternate Q's reversal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from core.errors import DGMError
from models.flows.amortized import AmortizedTransformModule, split_last
from models.flows.householder import unit_normals
from models.flows.permutation import alternating_order
from models.flows.registry import randomize_, register_transform
from models.flows.sylvester import SYLVESTER, DenseQ, PermutationQ, QMap, ReflectionQ, Variant, sylvester_columns
from models.flows.vae_families import LayerRequest, register_flow_family


def upper_triangular_tanh_diagonal(values: torch.Tensor, size: int) -> torch.Tensor:
    """(..., M (M + 1) / 2) values, row by row -> (..., M, M) upper triangular matrices, diagonal through tanh."""
    rows, cols = torch.triu_indices(size, size, device=values.device)
    values = torch.where(rows == cols, torch.tanh(values), values)
    flat = (rows * size + cols).expand(*values.shape[:-1], -1)
    full = values.new_zeros(*values.shape[:-1], size * size).scatter(-1, flat, values)
    return full.unflatten(-1, (size, size))


class AmortizedSylvester(AmortizedTransformModule):
    """Sylvester layer with R, R~, b and Q from a linear head of the context (see the module docstring)."""

    maths = SYLVESTER

    def __init__(self, dim: int, context_features: int, variant: Variant = "orthogonal", *,
                 num_columns: int | None = None, num_reflections: int = 4, reverse: bool = False):
        columns = sylvester_columns(variant, dim, num_columns, num_reflections)
        self.variant, self.columns, self.num_reflections = variant, columns, num_reflections
        super().__init__(dim, context_features)
        self.register_buffer("order", alternating_order(dim, int(reverse)) if variant == "triangular" else None)
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

    def q_map(self, q_params: torch.Tensor) -> QMap:
        """Q from its raw parameters (..., P_Q), as the module docstring says for each variant."""
        if self.variant == "orthogonal":
            return DenseQ(torch.linalg.qr(q_params.unflatten(-1, (self.dim, self.columns))).Q)
        if self.variant == "householder":
            return ReflectionQ(unit_normals(q_params.unflatten(-1, (self.num_reflections, self.dim))))
        return PermutationQ(self.order)

    def layer_params(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, QMap]:
        r, r_tilde, b, q_params = split_last(params, self._sizes())
        m = self.columns
        return (upper_triangular_tanh_diagonal(r, m), upper_triangular_tanh_diagonal(r_tilde, m), b,
                self.q_map(q_params))


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


# ---- VAE posterior families ------------------------------------------------------------------
@dataclass
class OrthogonalSylvesterOptions:
    """``--flow-options`` of ``sylvester_orthogonal``."""

    columns: Optional[int] = field(default=None, metadata={
        "help": "columns M <= L of Q (unset: L)", "config_field": "sylvester_columns"})


@dataclass
class HouseholderSylvesterOptions:
    """``--flow-options`` of ``sylvester_householder``."""

    reflections: int = field(default=8, metadata={
        "help": "Householder reflections making Q in each layer", "config_field": "sylvester_reflections"})


def check_orthogonal_options(request: LayerRequest, options: OrthogonalSylvesterOptions,
                             label: Callable[[str], str]) -> None:
    """M in 1..L."""
    if options.columns is not None and not 1 <= options.columns <= request.latent_dim:
        raise DGMError(f"{label('columns')} must lie in 1..{request.latent_dim} (the latent dimensions), "
                       f"got {options.columns}")


def check_householder_options(request: LayerRequest, options: HouseholderSylvesterOptions,
                              label: Callable[[str], str]) -> None:
    """K >= 1."""
    if options.reflections < 1:
        raise DGMError(f"{label('reflections')} must be at least 1, got {options.reflections}")


def sylvester_layers(variant: Variant) -> Callable[[LayerRequest, Any], list[AmortizedSylvester]]:
    """The builder of L Sylvester layers of ``variant``; layer k uses Q's reversal for odd k (triangular)."""
    def build(request: LayerRequest, options: Any) -> list[AmortizedSylvester]:
        sizes = {"num_columns": options.columns} if variant == "orthogonal" else {}
        if variant == "householder":
            sizes["num_reflections"] = options.reflections
        return [AmortizedSylvester(request.latent_dim, request.context, variant, reverse=k % 2 == 1, **sizes)
                for k in range(request.length)]
    return build


register_flow_family("posterior", "sylvester_orthogonal", "amortized_sylvester_orthogonal",
                     sylvester_layers("orthogonal"), options=OrthogonalSylvesterOptions,
                     check=check_orthogonal_options,
                     description="van den Berg et al. (2018): R, R~, b, Q = linear(h), Q orthonormal (QR)")
register_flow_family("posterior", "sylvester_householder", "amortized_sylvester_householder",
                     sylvester_layers("householder"), options=HouseholderSylvesterOptions,
                     check=check_householder_options,
                     description="van den Berg et al. (2018): Q a product of Householder reflections")
register_flow_family("posterior", "sylvester_triangular", "amortized_sylvester_triangular",
                     sylvester_layers("triangular"),
                     description="van den Berg et al. (2018): Q = I or the reversal, alternating between layers")
