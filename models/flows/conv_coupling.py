"""Affine coupling on images (RealNVP, Dinh et al. 2017, section 3.4-3.5; Glow's coupling).

A binary mask b on the (C, H, W) grid (1: passes unchanged and conditions the rest):

    checkerboard  b[c, h, w] = 1 where (h + w + parity) is even     (every channel alike)
    channel       b[c, h, w] = 1 for the first ceil(C/2) channels (parity 0) or the last floor(C/2) (1)

    _call:    y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x))
    _inverse: x = b * y + (1 - b) * (y - t(b * y)) * exp(-s(b * y))
    log |det dy/dx| = sum over (1 - b) of s                   (s bounded: ``models.flows.log_scale``)

The conditioner (``models.flows.cnn_conditioner.ResidualCNN``) maps the masked image (checkerboard:
all C channels with the transformed pixels zeroed; channel: only the conditioning channels) to
shift t and raw log-scale on the full grid (checkerboard) or on the transformed channels (channel).
Both directions take one conditioner pass. ``ConditionalConvAffineCoupling`` also feeds a context
map (..., C_ctx, H, W): ``condition(context)`` returns a :class:`ConvAffineCoupling`.
"""
from __future__ import annotations

from typing import Literal

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch import nn

from core.errors import DGMError
from models.flows.cnn_conditioner import ResidualCNN
from models.flows.conditioners import ContextBound
from models.flows.image import IMAGE, ImageFlowTransform, sum_event
from models.flows.log_scale import bound_log_scale, check_log_scale_bounds
from models.flows.registry import randomize_, register_transform

ImageMask = Literal["checkerboard", "channel"]
IMAGE_MASKS: tuple[str, ...] = ("checkerboard", "channel")


def check_image_mask(kind: str, shape: tuple[int, int, int]) -> None:
    """One-line errors for an unknown mask or a grid it cannot split."""
    channels, height, width = shape
    if kind not in IMAGE_MASKS:
        raise DGMError(f"unknown image coupling mask {kind!r}; choose one of {', '.join(IMAGE_MASKS)}")
    if kind == "channel" and channels < 2:
        raise DGMError(f"a channel mask needs at least 2 channels, got {channels} (squeeze first)")
    if kind == "checkerboard" and height * width < 2:
        raise DGMError(f"a checkerboard mask needs at least 2 pixels, got a {height}x{width} grid")


def spatial_checkerboard(height: int, width: int, parity: int) -> torch.Tensor:
    """(1, H, W) float: 1 where (h + w + parity) is even."""
    h = torch.arange(height).view(-1, 1)
    w = torch.arange(width).view(1, -1)
    return ((h + w + parity) % 2 == 0).float().unsqueeze(0)


def channel_split(channels: int, parity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditioning, transformed) channel indices: the first ceil(C/2) condition for parity 0, else the last."""
    first = torch.arange((channels + 1) // 2)
    rest = torch.arange((channels + 1) // 2, channels)
    return (first, rest) if parity % 2 == 0 else (rest, first)


def coupling_channels(kind: str, channels: int, parity: int) -> tuple[int, int]:
    """(conditioner input channels, conditioner output channels per parameter) of a mask."""
    if kind == "checkerboard":
        return channels, channels
    cond, trans = channel_split(channels, parity)
    return len(cond), len(trans)


class ConvAffineCoupling(ImageFlowTransform):
    """Affine coupling of (C, H, W) images with a checkerboard or channel mask (module docstring)."""

    def __init__(self, shape: tuple[int, int, int], mask: str, parity: int, conditioner: nn.Module, *,
                 log_scale_min: float = -5.0, log_scale_max: float = 3.0, bound: str = "soft"):
        super().__init__(cache_size=1)
        shape = tuple(int(s) for s in shape)
        check_image_mask(mask, shape)
        check_log_scale_bounds(log_scale_min, log_scale_max, bound)
        self.shape, self.mask_kind, self.parity = shape, mask, parity % 2
        self.log_scale_min, self.log_scale_max, self.bound = log_scale_min, log_scale_max, bound
        channels, height, width = shape
        self.register_buffer("board", spatial_checkerboard(height, width, self.parity))
        cond, trans = channel_split(channels, self.parity)
        self.register_buffer("cond_index", cond)
        self.register_buffer("trans_index", trans)
        self.register_buffer("merge_index", torch.cat([cond, trans]).argsort())
        self.conditioner = conditioner

    def _params(self, v_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """shift t and bounded log-scale s from the conditioning input (zero where nothing is transformed)."""
        shift, raw = self.conditioner(v_c)
        log_scale = bound_log_scale(raw, self.log_scale_min, self.log_scale_max, self.bound)
        if self.mask_kind == "checkerboard":
            keep = 1.0 - self.board.to(shift.dtype)
            shift, log_scale = shift * keep, log_scale * keep
        return shift, log_scale

    def _split(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditioning input, transformed part): (b v, v) for checkerboard, channel slices otherwise."""
        self.check_image(v, self.shape[0])
        if tuple(v.shape[-2:]) != self.shape[1:]:
            raise DGMError(f"{type(self).__name__} expects {self.shape[1]}x{self.shape[2]} images, got shape "
                           f"{tuple(v.shape)}")
        if self.mask_kind == "checkerboard":
            return v * self.board.to(v.dtype), v
        return v.index_select(-3, self.cond_index), v.index_select(-3, self.trans_index)

    def _merge(self, v_c: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
        if self.mask_kind == "checkerboard":
            return v_t  # the conditioning pixels passed through unchanged (t = s = 0 there)
        v_c = v_c.expand(*v_t.shape[:-3], *v_c.shape[-3:])  # a context may widen the batch
        return torch.cat([v_c, v_t], dim=-3).index_select(-3, self.merge_index)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        x_c, x_t = self._split(x)
        shift, log_scale = self._params(x_c)
        y = self._merge(x_c, x_t * log_scale.exp() + shift)
        self._remember(x, y, sum_event(log_scale))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_c, y_t = self._split(y)
        shift, log_scale = self._params(y_c)
        x = self._merge(y_c, (y_t - shift) * (-log_scale).exp())
        self._remember(x, y, sum_event(log_scale))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum_event(self._params(self._split(x)[0])[1])


class ConditionalConvAffineCoupling(ConditionalTransformModule):
    """Image affine coupling whose conditioner also reads a context map c (..., C_ctx, H, W)."""

    domain = IMAGE
    codomain = IMAGE
    bijective = True

    def __init__(self, shape: tuple[int, int, int], mask: str, parity: int, conditioner: nn.Module,
                 **bounds: float | str):
        super().__init__()
        self.shape, self.mask_kind, self.parity, self.bounds = tuple(shape), mask, parity, bounds
        self.conditioner = conditioner
        ConvAffineCoupling(self.shape, mask, parity, conditioner, **bounds)  # validate mask and bounds now

    def condition(self, context: torch.Tensor) -> ConvAffineCoupling:
        """The coupling at this context; the conditioner is shared, not copied."""
        coupling = ConvAffineCoupling(self.shape, self.mask_kind, self.parity, ContextBound(self.conditioner, context),
                                      **self.bounds)
        return coupling.to(context.device)


def conv_affine_coupling(shape: tuple[int, int, int], mask: str = "checkerboard", parity: int = 0,
                         hidden: int = 64, blocks: int = 2, context_channels: int = 0,
                         **bounds: float | str) -> ConvAffineCoupling | ConditionalConvAffineCoupling:
    """An image affine coupling with a residual-CNN conditioner (conditional when ``context_channels``)."""
    check_image_mask(mask, tuple(shape))
    if hidden < 1 or blocks < 0:
        raise DGMError(f"a CNN conditioner needs hidden channels >= 1 and blocks >= 0, got {hidden} and {blocks}")
    c_in, c_out = coupling_channels(mask, shape[0], parity)
    net = ResidualCNN(c_in, c_out, hidden, blocks, 2, context_channels)
    if context_channels:
        return ConditionalConvAffineCoupling(shape, mask, parity, net, **bounds)
    return ConvAffineCoupling(shape, mask, parity, net, **bounds)


# ---- registry --------------------------------------------------------------------------------
def _example(mask: str, conditional: bool = False):
    def example(shape: tuple[int, ...], context_dim: int, gen: torch.Generator):
        t = conv_affine_coupling(shape, mask, 1, hidden=6, blocks=1,
                                 context_channels=context_dim if conditional else 0)
        return randomize_(t, gen, 0.3)
    return example


register_transform("conv_affine_coupling_checkerboard", ConvAffineCoupling, _example("checkerboard"), event="image",
                   description="RealNVP image affine coupling, checkerboard mask, residual-CNN conditioner")
register_transform("conv_affine_coupling_channel", ConvAffineCoupling, _example("channel"), event="image",
                   description="RealNVP/Glow image affine coupling, channel mask, residual-CNN conditioner")
register_transform("conditional_conv_affine_coupling", ConditionalConvAffineCoupling,
                   _example("checkerboard", conditional=True), event="image", conditional=True,
                   description="image affine coupling whose conditioner also reads a context map")
