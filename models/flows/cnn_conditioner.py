"""Residual convolutional conditioners of image couplings (RealNVP's ResNet, Dinh et al. 2017; Glow's
three-convolution network is the ``blocks=0`` case).

    input (..., C_in [+ C_ctx], H, W)
      -> conv3x3 -> hidden channels
      -> ``blocks`` x [h + conv3x3(relu(conv3x3(relu(h))))]      residual blocks
      -> relu -> conv3x3 (zero-initialised) -> num_params * C_out channels
      -> ``num_params`` tensors (..., C_out, H, W)               (e.g. shift and raw log-scale)

Same padding everywhere, so the output lives on the input grid. The last convolution starts at
zero: a fresh coupling is the identity and a deep flow starts as its base distribution. A context
map (..., C_ctx, H, W) on the same grid (variational dequantization: features of the discrete
image) is concatenated to the input; the batch shapes of input and context broadcast.
"""
from __future__ import annotations

import torch
from torch import nn

from models.flows.image import broadcast_images, flatten_batch, unflatten_batch


class ResidualBlock(nn.Module):
    """h + conv3x3(relu(conv3x3(relu(h))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(torch.relu(self.conv1(torch.relu(h))))


class ResidualCNN(nn.Module):
    """[x, context] (..., C_in + C_ctx, H, W) -> ``num_params`` maps (..., C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64, blocks: int = 2, num_params: int = 2,
                 context_channels: int = 0, zero_init: bool = True):
        super().__init__()
        self.out_channels = out_channels
        self.num_params = num_params
        self.context_channels = context_channels
        self.net = nn.Sequential(nn.Conv2d(in_channels + context_channels, hidden, 3, padding=1),
                                 *[ResidualBlock(hidden) for _ in range(blocks)],
                                 nn.ReLU(), nn.Conv2d(hidden, num_params * out_channels, 3, padding=1))
        if zero_init:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if self.context_channels:
            if context is None:
                raise ValueError("this conditioner needs a context")
            x, context = broadcast_images(x, context)
            x = torch.cat([x, context], dim=-3)
        flat, batch = flatten_batch(x)
        out = unflatten_batch(self.net(flat), batch)
        return tuple(out.split(self.out_channels, dim=-3))
