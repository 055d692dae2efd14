"""Fixed permutations of the coordinates: y = x[..., pi], x = y[..., pi^-1], log |det J| = 0.

Between coupling or autoregressive layers a permutation lets every coordinate condition every
other one. ``Permute.reverse(D)`` reverses the order; ``Permute.random(D, seed)`` draws a fixed
random permutation (saved with the model as a buffer, so a loaded model permutes identically).
"""
from __future__ import annotations

import torch

from core.errors import DGMError
from models.flows.base import FlowTransform, zeros_ladj
from models.flows.registry import register_transform


def alternating_order(dim: int, k: int) -> torch.Tensor:
    """The natural order 0..D-1 for even k, its reversal D-1..0 for odd k: layer k of a stack whose
    consecutive layers (MADE orders, triangular Sylvester Q) condition in opposite directions."""
    return torch.arange(dim - 1, -1, -1) if k % 2 else torch.arange(dim)


class Permute(FlowTransform):
    """y_i = x_{pi(i)} for a fixed permutation pi of 0..D-1 (volume preserving)."""

    volume_preserving = True

    def __init__(self, permutation: torch.Tensor):
        super().__init__(cache_size=1)
        permutation = torch.as_tensor(permutation, dtype=torch.long).reshape(-1)
        if sorted(permutation.tolist()) != list(range(permutation.shape[0])):
            raise DGMError("Permute needs a permutation of 0..D-1")
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", permutation.argsort())

    @classmethod
    def reverse(cls, dim: int) -> "Permute":
        """pi = (D-1, ..., 1, 0)."""
        return cls(alternating_order(dim, 1))

    @classmethod
    def random(cls, dim: int, seed: int = 0) -> "Permute":
        """A fixed random permutation drawn with its own generator (reproducible from ``seed``)."""
        return cls(torch.randperm(dim, generator=torch.Generator().manual_seed(seed)))

    def _check(self, v: torch.Tensor) -> None:
        if v.shape[-1] != self.permutation.shape[0]:
            raise DGMError(f"Permute expects vectors of {self.permutation.shape[0]} coordinates, "
                           f"got shape {tuple(v.shape)}")

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        y = x.index_select(-1, self.permutation)
        self._remember(x, y, zeros_ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y)
        x = y.index_select(-1, self.inverse_permutation)
        self._remember(x, y, zeros_ladj(y))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return zeros_ladj(x)


register_transform("permute_reverse", Permute, lambda shape, ctx, gen: Permute.reverse(shape[0]),
                   volume_preserving=True, description="fixed reversal of the coordinates")
register_transform("permute_random", Permute,
                   lambda shape, ctx, gen: Permute(torch.randperm(shape[0], generator=gen)),
                   volume_preserving=True, description="fixed random permutation of the coordinates")
