"""The base of flow transforms on images: event shape (C, H, W), any batch shape in front.

Directions as every flow (``shared/CONVENTIONS.md``): ``_call`` base -> data, ``_inverse`` data ->
base, ``log_abs_det_jacobian(x, y)`` of ``_call``, summed over the three event dimensions, so it has
the batch shape ``x.shape[:-3]``. Convolutions need (B, C, H, W): :func:`flatten_batch` folds any
batch shape (none, (N,), (K, N) inside an importance-sampling plate, ...) into B and
:func:`unflatten_batch` restores it. Shape-changing transforms (``models.flows.squeeze``) override
``forward_shape`` / ``inverse_shape``.
"""
from __future__ import annotations

import torch
from pyro.distributions import constraints

from core.errors import DGMError
from models.flows.base import FlowTransform

IMAGE = constraints.independent(constraints.real, 3)


class ImageFlowTransform(FlowTransform):
    """A bijection of real images (event shape (C, H, W)) with the log-det cache of :class:`FlowTransform`."""

    domain = IMAGE
    codomain = IMAGE

    def check_image(self, v: torch.Tensor, channels: int | None = None) -> None:
        """One-line error unless v is (..., C, H, W) (with ``channels`` channels when given)."""
        if v.dim() < 3 or (channels is not None and v.shape[-3] != channels):
            want = f"({channels}, H, W)" if channels is not None else "(C, H, W)"
            raise DGMError(f"{type(self).__name__} expects images of event shape {want}, got shape {tuple(v.shape)}")


def flatten_batch(v: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    """(..., C, H, W) -> ((B, C, H, W), batch shape ...), B = prod(batch shape) (1 for no batch)."""
    batch = v.shape[:-3]
    return v.reshape(-1, *v.shape[-3:]), batch


def unflatten_batch(v: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """(B, C', H', W') -> (..., C', H', W') with the batch shape that :func:`flatten_batch` removed."""
    return v.reshape(*batch, *v.shape[-3:])


def sum_event(v: torch.Tensor) -> torch.Tensor:
    """Sum over the event dimensions (C, H, W): (..., C, H, W) -> (...)."""
    return v.sum((-3, -2, -1))


def image_zeros_ladj(v: torch.Tensor) -> torch.Tensor:
    """log |det J| = 0 for every image of the batch (volume-preserving transforms)."""
    return v.new_zeros(v.shape[:-3])


def broadcast_images(x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand images x (..., C, H, W) and a context map (..., C', H, W) to their common batch shape."""
    if context.dim() < 3 or context.shape[-2:] != x.shape[-2:]:
        raise DGMError(f"an image context must be (..., C', {x.shape[-2]}, {x.shape[-1]}) on the grid of the "
                       f"images, got shape {tuple(context.shape)}")
    batch = torch.broadcast_shapes(x.shape[:-3], context.shape[:-3])
    return x.expand(*batch, *x.shape[-3:]), context.expand(*batch, *context.shape[-3:])
