"""PixelCNN (van den Oord et al. 2016, "Pixel recurrent neural networks"): masked convolutions with
residual blocks.

    h_0 = MaskA_{k1 x k1}(x)                                        2h channels, reads pixels < i
    h_b = h_{b-1} + W_up relu(MaskB_{k x k} relu(W_down relu(h_{b-1})))   b = 1..B  (2h -> h -> h -> 2h)
    params = W_2 relu(W_1 relu(h_B))                                1x1 output layers

Mask A excludes the centre pixel, mask B includes it, so pixel i's parameters depend on x_<i only.
The receptive field grows by k//2 rows and columns per block but has the known blind spot (pixels
to the upper right that the stacked masks never reach); the gated PixelCNN removes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import DGMError
from data.specs import DatasetSpec
from models.arm.autoregressive import AutoregressiveModel, HeadConfig, build_head
from models.arm.masked_conv import MaskedConv2d, pixelcnn_mask, pointwise
from models.registry import register_model


@dataclass
class PixelCNNConfig(HeadConfig):
    """Options of ``python -m inference.train pixelcnn``."""

    channels: int = field(default=64, metadata={"help": "channels 2h of the residual stream (blocks work on h)"})
    residual_blocks: int = field(default=12, metadata={"help": "residual blocks B, each with one k x k mask-B conv"})
    first_kernel: int = field(default=7, metadata={"help": "kernel size k1 of the first (mask A) convolution"})
    kernel: int = field(default=3, metadata={"help": "kernel size k of the mask-B convolutions"})
    output_channels: int = field(default=64, metadata={"help": "channels of the hidden 1x1 output layer"})

    def validate(self) -> None:
        self.validate_head()
        if self.channels < 2 or self.channels % 2:
            raise DGMError(f"--channels must be an even number >= 2, got {self.channels}")
        if self.residual_blocks < 0 or self.output_channels < 1:
            raise DGMError("--residual-blocks must be >= 0 and --output-channels >= 1")
        if self.first_kernel < 3 or self.first_kernel % 2 == 0 or self.kernel < 1 or self.kernel % 2 == 0:
            raise DGMError(f"kernel sizes must be odd (--first-kernel >= 3), got {self.first_kernel} and {self.kernel}")


class ResidualBlock(nn.Module):
    """h -> h + W_up relu(MaskB relu(W_down relu(h))), W_down: 2h -> h, W_up: h -> 2h (1x1 convolutions)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        inner = channels // 2
        self.down = nn.Conv2d(channels, inner, 1)
        self.conv = MaskedConv2d(inner, inner, (kernel, kernel), (-(kernel // 2), -(kernel // 2)),
                                 pixelcnn_mask(kernel, "B"))
        self.up = nn.Conv2d(inner, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.relu(self.conv(F.relu(self.down(F.relu(h))))))


class PixelCNN(AutoregressiveModel):
    """The network of the module docstring with a likelihood head; see ``AutoregressiveModel``."""

    def __init__(self, config: PixelCNNConfig, spec: DatasetSpec):
        super().__init__(spec, build_head(config, spec))
        self.config = config
        k1 = config.first_kernel
        self.first = MaskedConv2d(spec.shape[0], config.channels, (k1, k1), (-(k1 // 2), -(k1 // 2)),
                                  pixelcnn_mask(k1, "A"))
        self.blocks = nn.ModuleList(ResidualBlock(config.channels, config.kernel)
                                    for _ in range(config.residual_blocks))
        self.out1 = nn.Conv2d(config.channels, config.output_channels, 1)
        self.out2 = nn.Conv2d(config.output_channels, self.params_per_pixel, 1)

    def network(self, inputs: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.first(inputs)
        for block in self.blocks:
            h = block(h)
        return self.out2(F.relu(self.out1(F.relu(h))))

    def incremental(self, n: int, y: torch.Tensor | None = None) -> "PixelCNNState":
        self.check_labels(y, n)
        return PixelCNNState(self, n)


class PixelCNNState:
    """Cached PixelCNN: each layer evaluated at the one pixel being drawn, from its cached inputs."""

    def __init__(self, model: PixelCNN, n: int):
        like = next(model.parameters())
        _, height, width = model.spec.shape
        self.model = model
        self.first = model.first.cache(n, height, width, like)
        self.blocks = [block.conv.cache(n, height, width, like) for block in model.blocks]

    def observe(self, value: torch.Tensor, r: int, c: int) -> None:
        self.first.write(self.model.scale(value)[:, None], r, c)

    def params(self, r: int, c: int) -> torch.Tensor:
        m = self.model
        h = self.first.at(r, c)
        for block, cache in zip(m.blocks, self.blocks):
            cache.write(F.relu(pointwise(block.down, F.relu(h))), r, c)
            h = h + pointwise(block.up, F.relu(cache.at(r, c)))
        return pointwise(m.out2, F.relu(pointwise(m.out1, F.relu(h))))


@register_model("pixelcnn", PixelCNNConfig,
                description="PixelCNN: masked convolutions, residual blocks, exact log p(x)")
def build_pixelcnn(config: PixelCNNConfig, spec: DatasetSpec) -> PixelCNN:
    """Build a :class:`PixelCNN` for data set ``spec``."""
    return PixelCNN(config, spec)
