"""Binary masks of coupling layers: which coordinates pass unchanged (True) and condition the rest.

Masks are boolean vectors of length D over the flattened event. Coupling layers alternate a mask
and its complement (``parity`` 0 and 1), so every coordinate is transformed in every other layer.

    halves        first ceil(D/2) coordinates (parity 0) or the last floor(D/2) (parity 1)
    checkerboard  (h + w) even on an H x W layout of the D = C*H*W coordinates (parity 0), odd (1)
"""
from __future__ import annotations

import math
from typing import Literal

import torch

from core.errors import DGMError

MaskKind = Literal["halves", "checkerboard"]
MASKS: tuple[str, ...] = ("halves", "checkerboard")


def halves_mask(dim: int, parity: int = 0) -> torch.Tensor:
    """(D,) bool: the first ceil(D/2) coordinates for parity 0, the complement for parity 1."""
    mask = torch.arange(dim) < (dim + 1) // 2
    return mask if parity % 2 == 0 else ~mask


def checkerboard_mask(shape: tuple[int, ...], parity: int = 0) -> torch.Tensor:
    """(C*H*W,) bool: True where (h + w + parity) is even on the (C, H, W) or (H, W) layout."""
    if len(shape) == 3:
        channels, height, width = shape
    elif len(shape) == 2:
        channels, (height, width) = 1, shape
    else:
        raise DGMError(f"a checkerboard mask needs a (C, H, W) or (H, W) layout, got {shape}")
    h = torch.arange(height).view(-1, 1)
    w = torch.arange(width).view(1, -1)
    board = (h + w + parity) % 2 == 0
    return board.expand(channels, height, width).reshape(-1)


def layout_for(dim: int) -> tuple[int, int]:
    """A near-square (H, W) with H * W = D, for vectors that come without an image layout."""
    height = max(h for h in range(1, math.isqrt(dim) + 1) if dim % h == 0)
    return height, dim // height


def make_mask(kind: str, shape: tuple[int, ...], parity: int) -> torch.Tensor:
    """The mask called ``kind`` for an event of ``shape`` ((D,) or (C, H, W)), flattened."""
    dim = math.prod(shape)
    if kind == "halves":
        return halves_mask(dim, parity)
    if kind == "checkerboard":
        return checkerboard_mask(shape if len(shape) == 3 else layout_for(dim), parity)
    raise DGMError(f"unknown coupling mask {kind!r}; choose one of {', '.join(MASKS)}")
