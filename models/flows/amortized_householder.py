"""Amortised Householder flow (Tomczak & Welling 2016): K reflections whose vectors come from the context.

For vectors v_1..v_K (..., K, D) of each example (broadcast against the batch of x):

    H_k = I - 2 v_k v_k^T / |v_k|^2,   _call: y = H_K ... H_1 x,   _inverse: x = H_1 ... H_K y
    log |det dy/dx| = 0

A diagonal Gaussian pushed through it is a Gaussian with a full covariance U diag(sigma^2) U^T,
U = H_K ... H_1 orthogonal: volume preserving, so log q(z | x) is that of the base sample. (Tomczak
and Welling compute v_{k+1} from v_k with a small network; here every v_k is a linear function of
the encoder's features, which spans the same per-example family.)
"""
from __future__ import annotations

import torch

from core.errors import DGMError
from models.flows.amortized import AmortizedTransformModule
from models.flows.base import FlowTransform, zeros_ladj
from models.flows.registry import randomize_, register_transform


def reflect_batch(x: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """x - 2 (v^T x) v for unit vectors v (..., D) broadcast against x (..., D)."""
    return x - 2.0 * (x * unit).sum(-1, keepdim=True) * unit


class _HouseholderMap(FlowTransform):
    """y = H_K ... H_1 x with per-example reflection vectors (..., K, D)."""

    volume_preserving = True

    def __init__(self, vectors: torch.Tensor):
        super().__init__(cache_size=1)
        self.units = vectors / vectors.norm(dim=-1, keepdim=True)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for k in range(self.units.shape[-2]):
            y = reflect_batch(y, self.units[..., k, :])
        self._remember(x, y, zeros_ladj(y))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = y
        for k in reversed(range(self.units.shape[-2])):
            x = reflect_batch(x, self.units[..., k, :])
        self._remember(x, y, zeros_ladj(x))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return zeros_ladj(torch.broadcast_tensors(x, self.units[..., 0, :])[0])


class AmortizedHouseholder(AmortizedTransformModule):
    """K Householder reflections with vectors = linear head of the context (P = K D)."""

    def __init__(self, dim: int, context_features: int, count: int = 1):
        if count < 1:
            raise DGMError(f"a Householder flow needs at least one reflection, got {count}")
        self.count = count
        super().__init__(dim, context_features)

    def num_params(self) -> int:
        return self.count * self.dim

    def transform(self, params: torch.Tensor) -> _HouseholderMap:
        return _HouseholderMap(params.unflatten(-1, (self.count, self.dim)))


register_transform("amortized_householder", AmortizedHouseholder,
                   lambda shape, ctx, gen: randomize_(AmortizedHouseholder(shape[0], ctx, 3), gen, 0.5),
                   conditional=True, volume_preserving=True,
                   description="Householder reflections whose vectors come from a context (VAE posteriors)")
