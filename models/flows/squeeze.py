"""Squeeze (space-to-depth) and its inverse: the reshuffles that let multi-scale flows trade
resolution for channels (Dinh et al. 2017, section 3.6).

    Squeeze._call:    (..., C, H, W) -> (..., 4C, H/2, W/2)
                      y[c*4 + 2i + j, h, w] = x[c, 2h + i, 2w + j]      (torch's ``pixel_unshuffle``)
    Unsqueeze._call:  the inverse map, (..., 4C, H/2, W/2) -> (..., C, H, W)

Both are permutations of the coordinates: log |det J| = 0. They change the event shape, so they
define ``forward_shape`` / ``inverse_shape`` (Pyro's ``TransformedDistribution`` reads them).
Each 2x2 patch of one input channel becomes 4 consecutive output channels; so after a squeeze a
channel mask that keeps the first half of the channels keeps whole input channels when C is even
and the top row of every patch when C = 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import DGMError
from models.flows.image import ImageFlowTransform, image_zeros_ladj
from models.flows.registry import register_transform


def squeezed_shape(shape: tuple[int, ...], factor: int = 2) -> tuple[int, ...]:
    """(..., C, H, W) -> (..., C f^2, H/f, W/f); a one-line error when H or W is not divisible by f."""
    *batch, c, h, w = shape
    if h % factor or w % factor:
        raise DGMError(f"cannot squeeze {h}x{w} images by {factor}: height and width must be divisible by {factor}")
    return (*batch, c * factor * factor, h // factor, w // factor)


def unsqueezed_shape(shape: tuple[int, ...], factor: int = 2) -> tuple[int, ...]:
    """(..., C, H, W) -> (..., C / f^2, H f, W f); a one-line error when C is not divisible by f^2."""
    *batch, c, h, w = shape
    if c % (factor * factor):
        raise DGMError(f"cannot unsqueeze {c} channels by {factor}: the channels must be divisible by {factor ** 2}")
    return (*batch, c // (factor * factor), h * factor, w * factor)


class Squeeze(ImageFlowTransform):
    """Space-to-depth: (C, H, W) -> (4C, H/2, W/2), a fixed permutation (volume preserving)."""

    volume_preserving = True

    def __init__(self, factor: int = 2):
        super().__init__(cache_size=1)
        if factor < 2:
            raise DGMError(f"the squeeze factor must be at least 2, got {factor}")
        self.factor = factor

    def forward_shape(self, shape: torch.Size | tuple[int, ...]) -> torch.Size:
        return torch.Size(squeezed_shape(tuple(shape), self.factor))

    def inverse_shape(self, shape: torch.Size | tuple[int, ...]) -> torch.Size:
        return torch.Size(unsqueezed_shape(tuple(shape), self.factor))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image(x)
        squeezed_shape(tuple(x.shape), self.factor)  # a one-line error before torch's own
        y = F.pixel_unshuffle(x, self.factor)
        self._remember(x, y, image_zeros_ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self.check_image(y)
        unsqueezed_shape(tuple(y.shape), self.factor)
        x = F.pixel_shuffle(y, self.factor)
        self._remember(x, y, image_zeros_ladj(y))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return image_zeros_ladj(x)


class Unsqueeze(Squeeze):
    """Depth-to-space: (4C, H/2, W/2) -> (C, H, W), the inverse of :class:`Squeeze` as a forward map."""

    def forward_shape(self, shape: torch.Size | tuple[int, ...]) -> torch.Size:
        return super().inverse_shape(shape)

    def inverse_shape(self, shape: torch.Size | tuple[int, ...]) -> torch.Size:
        return super().forward_shape(shape)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y = super()._inverse(x)
        self._remember(x, y, image_zeros_ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = super()._call(y)
        self._remember(x, y, image_zeros_ladj(y))
        return x


register_transform("squeeze", Squeeze, lambda shape, ctx, gen: Squeeze(), event="image", volume_preserving=True,
                   description="space-to-depth (C, H, W) -> (4C, H/2, W/2)")
register_transform("unsqueeze", Unsqueeze, lambda shape, ctx, gen: Unsqueeze(), event="image",
                   volume_preserving=True, description="depth-to-space (4C, H/2, W/2) -> (C, H, W)")
