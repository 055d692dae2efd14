"""Masked, shifted 2-D convolutions: the one building block of every autoregressive network here,
with the cache that lets a sampler compute a layer's output at one pixel (or one row) at a time.

A ``MaskedConv2d`` with weight W (C_out, C_in, kh, kw), binary mask M of the same spatial shape,
dilation (dr, dc) and offset (r0, c0) computes, with the input taken as zero outside the image::

    out[n, o, r, c] = b_o + sum_{i, j, k} (W * M)[o, i, j, k] in[n, i, r + r0 + j dr, c + c0 + k dc]

so tap (j, k) reads the input at offset (r0 + j dr, c0 + k dc) from the output position. Every
causal layer of the project is one of these (``taps`` lists the offsets read):

    PixelCNN mask A, k x k          offset (-k//2, -k//2), mask: rows above, and the centre row left of centre
    PixelCNN mask B, k x k          as A, plus the centre tap
    gated vertical stack            kernel (h+1, k) at offset (-h, -h): rows r-h..r (first layer: (h, k), rows < r)
    gated horizontal stack          kernel (1, h+1) at offset (0, -h): columns c-h..c (first layer: (1, h), < c)
    causal 1-D conv over a sequence kernel (1, k), dilation (1, d), offset (0, -(k-1) d) (first layer: one further left)

The full-image forward pads the input and crops, so the output has the input's spatial size.
A sampler that runs the full forward D times (``models.arm.sampling.sample_naive``) multiplies W * M
once for all D passes inside :func:`masks_applied_once`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import DGMError


def pixelcnn_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The k x k PixelCNN mask (van den Oord et al. 2016): 1 above the centre row and left of the centre;
    type "A" (first layer) excludes the centre, type "B" (later layers) includes it."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise DGMError(f"masked convolutions need an odd kernel size, got {kernel_size}")
    if mask_type not in ("A", "B"):
        raise DGMError(f"mask type must be 'A' or 'B', got {mask_type!r}")
    centre = kernel_size // 2
    mask = torch.ones(kernel_size, kernel_size)
    mask[centre, centre + (mask_type == "B"):] = 0
    mask[centre + 1:] = 0
    return mask


class MaskedConv2d(nn.Module):
    """out[n, o, r, c] = b_o + sum (W * M)[o, i, j, k] in[n, i, r + r0 + j dr, c + c0 + k dc] (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int], offset: tuple[int, int],
                 mask: torch.Tensor | None = None, dilation: tuple[int, int] = (1, 1), bias: bool = True):
        super().__init__()
        kh, kw = kernel
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, dilation=dilation, bias=bias)  # owns W, b, init
        self.register_buffer("mask", torch.ones(kh, kw) if mask is None else mask.detach().clone().float(),
                             persistent=False)
        self.offset = offset
        self.dilation = dilation
        r0, c0 = offset
        span_r, span_c = (kh - 1) * dilation[0], (kw - 1) * dilation[1]
        # zero padding (top, bottom, left, right) and where the wanted output starts in the padded conv
        self.pad = (max(0, -r0), max(0, r0 + span_r), max(0, -c0), max(0, c0 + span_c))
        self.start = (r0 + self.pad[0], c0 + self.pad[2])
        self.span = (span_r, span_c)
        #: W * M with the storage and version of the W it was computed from (``masks_applied_once``)
        self._frozen: tuple[torch.Tensor, int, int] | None = None

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def masked_weight(self) -> torch.Tensor:
        """W * M; inside ``masks_applied_once`` the product computed on entry, while gradients are off and W
        is unchanged (same storage, same version counter: an optimiser step or ``.to()`` invalidates it)."""
        weight, frozen = self.conv.weight, self._frozen
        if frozen is not None and not torch.is_grad_enabled() and frozen[1:] == (weight.data_ptr(), weight._version):
            return frozen[0]
        return weight * self.mask.to(weight.dtype)

    def freeze_masked_weight(self) -> None:
        weight = self.conv.weight
        with torch.no_grad():
            self._frozen = (weight * self.mask.to(weight.dtype), weight.data_ptr(), weight._version)

    def taps(self) -> list[tuple[int, int]]:
        """Offsets (dr, dc) from the output pixel of the input pixels the layer reads (mask = 1)."""
        (r0, c0), (dr, dc) = self.offset, self.dilation
        return [(r0 + j * dr, c0 + k * dc) for j, k in self.mask.nonzero().tolist()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H, W)."""
        top, bottom, left, right = self.pad
        height, width = x.shape[-2:]
        if height == 1 and self.conv.kernel_size[0] == 1 and self.offset[0] == 0:
            # a sequence (the 1-D ARM): the same product through conv1d, several times faster on CPU
            y = F.conv1d(F.pad(x[:, :, 0], (left, right)), self.masked_weight()[:, :, 0], self.conv.bias,
                         dilation=self.dilation[1])
            return y[:, :, None, self.start[1]:self.start[1] + width]
        y = F.conv2d(F.pad(x, (left, right, top, bottom)), self.masked_weight(), self.conv.bias,
                     dilation=self.dilation)
        return y[..., self.start[0]:self.start[0] + height, self.start[1]:self.start[1] + width]

    def cache(self, n: int, height: int, width: int, like: torch.Tensor) -> "ConvCache":
        """An empty cache of this layer's input for ``n`` images (for incremental sampling)."""
        return ConvCache(self, n, height, width, like)


@contextmanager
def masks_applied_once(model: nn.Module) -> Iterator[None]:
    """Within: every ``MaskedConv2d`` of ``model`` reuses the W * M computed on entry in its no-grad forwards
    (the D passes of a naive sampler multiply the mask once, not D times); on exit the products are dropped.
    Forwards with gradients, and weights changed inside, always compute W * M afresh, so no training step
    can see a stale product."""
    layers = [m for m in model.modules() if isinstance(m, MaskedConv2d)]
    for layer in layers:
        layer.freeze_masked_weight()
    try:
        yield
    finally:
        for layer in layers:
            layer._frozen = None


class ConvCache:
    """A layer's input so far, zero-padded as in ``MaskedConv2d.forward``, and the layer evaluated at
    one pixel (``at``) or one row (``row``) from it. Positions not yet written hold 0; the layer's mask
    and offsets guarantee they are never read with a non-zero weight when the caller writes pixels in
    raster order before reading the outputs that depend on them."""

    def __init__(self, conv: MaskedConv2d, n: int, height: int, width: int, like: torch.Tensor):
        top, bottom, left, right = conv.pad
        self.conv = conv
        self.width = width
        self.buffer = like.new_zeros(n, conv.in_channels, height + top + bottom, width + left + right)
        weight = conv.masked_weight().detach().to(like.dtype)
        self.weight = weight  # (C_out, C_in, kh, kw) for rows
        self.weight_flat = weight.flatten(1).T.contiguous()  # (C_in kh kw, C_out) for single pixels
        self.bias = None if conv.conv.bias is None else conv.conv.bias.detach().to(like.dtype)

    def write(self, value: torch.Tensor, r: int, c: int) -> None:
        """Store the layer's input (n, C_in) at pixel (r, c)."""
        self.buffer[:, :, r + self.conv.pad[0], c + self.conv.pad[2]] = value

    def write_row(self, row: torch.Tensor, r: int) -> None:
        """Store the layer's input (n, C_in, W) along row r."""
        left = self.conv.pad[2]
        self.buffer[:, :, r + self.conv.pad[0], left:left + self.width] = row

    def at(self, r: int, c: int) -> torch.Tensor:
        """The layer's output at pixel (r, c), (n, C_out): one (C_in kh kw) x C_out product per image."""
        (sr, sc), (span_r, span_c), (dr, dc) = self.conv.start, self.conv.span, self.conv.dilation
        window = self.buffer[:, :, sr + r:sr + r + span_r + 1:dr, sc + c:sc + c + span_c + 1:dc]
        out = window.reshape(window.shape[0], -1) @ self.weight_flat
        return out if self.bias is None else out + self.bias

    def row(self, r: int) -> torch.Tensor:
        """The layer's output along row r, (n, C_out, W): the convolution of the kh input rows it reads."""
        (sr, sc), span_r = self.conv.start, self.conv.span[0]
        strip = self.buffer[:, :, sr + r:sr + r + span_r + 1]
        out = F.conv2d(strip, self.weight, self.bias, dilation=self.conv.dilation)
        return out[:, :, 0, sc:sc + self.width]


def pointwise(conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to the features of single pixels: (n, C_in) -> (n, C_out)."""
    return F.linear(h, conv.weight[:, :, 0, 0], conv.bias)


def gate(features: torch.Tensor) -> torch.Tensor:
    """Gated activation tanh(a) * sigmoid(b), with (a, b) the two halves of the channels (dimension 1)."""
    a, b = features.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)
