"""A WaveNet-style ARM (van den Oord et al. 2016, "WaveNet"): causal, dilated 1-D convolutions over the
image read as a sequence x_1..x_D in raster order.

    h_0 = Conv_{k1}(x)[t]  reads x_{t-k1} .. x_{t-1}                  (strictly causal first layer)
    z_l = Conv_{k, d_l}(h_{l-1})[t] reads h_{l-1} at t, t-d_l, .., t-(k-1) d_l,   d_l = 2^((l-1) mod cycle)
    g_l = tanh(z_l^a) * sigmoid(z_l^b),   h_l = h_{l-1} + W^res_l g_l,   s = sum_l W^skip_l g_l
    params_t = W_2 relu(W_1 relu(s))

Position t's parameters depend on x_{t-R} .. x_{t-1} with R = k1 + (k-1) sum_l d_l: with the default
10 layers of dilations 1..512 and k = 2, R = 1025 > 784, the whole past of a 28x28 image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import DGMError
from data.specs import DatasetSpec
from models.arm.autoregressive import AutoregressiveModel, HeadConfig, build_head
from models.arm.masked_conv import MaskedConv2d, gate, pointwise
from models.registry import register_model


@dataclass
class CausalConv1dConfig(HeadConfig):
    """Options of ``python -m inference.train causal_conv1d``."""

    channels: int = field(default=64, metadata={"help": "channels of the residual stream"})
    layers: int = field(default=10, metadata={"help": "dilated residual layers"})
    kernel: int = field(default=2, metadata={"help": "kernel size k of the dilated convolutions"})
    dilation_cycle: int = field(default=10, metadata={"help": "dilations 1, 2, 4, .., 2^(cycle-1), then again"})
    first_kernel: int = field(default=2, metadata={"help": "kernel size k1 of the first, strictly causal conv"})
    output_channels: int = field(default=128, metadata={"help": "channels of the hidden 1x1 output layer"})

    def validate(self) -> None:
        self.validate_head()
        if min(self.channels, self.layers, self.output_channels, self.dilation_cycle) < 1:
            raise DGMError("--channels, --layers, --output-channels and --dilation-cycle must be >= 1")
        if self.kernel < 1 or self.first_kernel < 1:
            raise DGMError(f"kernel sizes must be >= 1, got {self.first_kernel} and {self.kernel}")

    def dilations(self) -> list[int]:
        return [2 ** (i % self.dilation_cycle) for i in range(self.layers)]


class CausalConv1dARM(AutoregressiveModel):
    """The network of the module docstring with a likelihood head; see ``AutoregressiveModel``.

    Sequences are (N, C, 1, D) tensors, so the layers are ``MaskedConv2d`` of kernel (1, k) whose offsets
    make them causal; that also gives them the pixel cache of the incremental sampler."""

    def __init__(self, config: CausalConv1dConfig, spec: DatasetSpec):
        super().__init__(spec, build_head(config, spec))
        self.config = config
        ch, k = config.channels, config.kernel
        self.first = MaskedConv2d(spec.shape[0], ch, (1, config.first_kernel), (0, -config.first_kernel))
        self.convs = nn.ModuleList(MaskedConv2d(ch, 2 * ch, (1, k), (0, -(k - 1) * d), dilation=(1, d))
                                   for d in config.dilations())
        self.residual = nn.ModuleList(nn.Conv2d(ch, ch, 1) for _ in range(config.layers))
        self.skip = nn.ModuleList(nn.Conv2d(ch, ch, 1) for _ in range(config.layers))
        self.out1 = nn.Conv2d(ch, config.output_channels, 1)
        self.out2 = nn.Conv2d(config.output_channels, self.params_per_pixel, 1)

    @property
    def receptive_field(self) -> int:
        """R: position t sees x_{t-R} .. x_{t-1} (module docstring)."""
        return self.config.first_kernel + (self.config.kernel - 1) * sum(self.config.dilations())

    def network(self, inputs: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        n, channels, height, width = inputs.shape
        h = self.first(inputs.reshape(n, channels, 1, height * width))
        skip = 0.0
        for conv, residual, skip_conv in zip(self.convs, self.residual, self.skip):
            g = gate(conv(h))
            h = h + residual(g)
            skip = skip + skip_conv(g)
        params = self.out2(F.relu(self.out1(F.relu(skip))))
        return params.reshape(n, -1, height, width)

    def incremental(self, n: int, y: torch.Tensor | None = None) -> "CausalConv1dState":
        self.check_labels(y, n)
        return CausalConv1dState(self, n)


class CausalConv1dState:
    """Cached WaveNet (the fast generation of Paine et al. 2016): each layer evaluated at the new position only."""

    def __init__(self, model: CausalConv1dARM, n: int):
        like = next(model.parameters())
        self.model = model
        self.width = model.spec.shape[2]
        length = model.spec.dim
        self.first = model.first.cache(n, 1, length, like)
        self.convs = [conv.cache(n, 1, length, like) for conv in model.convs]

    def observe(self, value: torch.Tensor, r: int, c: int) -> None:
        self.first.write(self.model.scale(value)[:, None], 0, r * self.width + c)

    def params(self, r: int, c: int) -> torch.Tensor:
        m, t = self.model, r * self.width + c
        h = self.first.at(0, t)
        skip = 0.0
        for cache, residual, skip_conv in zip(self.convs, m.residual, m.skip):
            cache.write(h, 0, t)
            g = gate(cache.at(0, t))
            h = h + pointwise(residual, g)
            skip = skip + pointwise(skip_conv, g)
        return pointwise(m.out2, F.relu(pointwise(m.out1, F.relu(skip))))


@register_model("causal_conv1d", CausalConv1dConfig,
                description="WaveNet-style causal dilated 1-D convolutions over the pixel sequence, exact log p(x)")
def build_causal_conv1d(config: CausalConv1dConfig, spec: DatasetSpec) -> CausalConv1dARM:
    """Build a :class:`CausalConv1dARM` for data set ``spec``."""
    return CausalConv1dARM(config, spec)
