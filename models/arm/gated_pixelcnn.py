"""Gated PixelCNN (van den Oord et al. 2016, "Conditional image generation with PixelCNN decoders"):
a vertical stack that sees every row above and a horizontal stack that sees the current row to the
left, so the receptive field has no blind spot.

Layer l (gated activation g(a, b) = tanh(a) * sigmoid(b) over the two channel halves; e_l(y) a class
embedding, 0 when unconditional)::

    v_feat = V_l * v_{l-1}                          vertical: rows r-h..r  (layer 1: x, rows r-h1..r-1)
    v_l    = g(v_feat + e^v_l(y))
    h_feat = H_l * h_{l-1} + W^{vh}_l v_feat        horizontal: row r, columns c-h..c (layer 1: x, c-h1..c-1)
    h_l    = W^o_l g(h_feat + e^h_l(y)) + h_{l-1}   (no residual in layer 1)
    params = W_2 relu(W_1 relu(h_L))

With R = h1 + (L-1) h (h1 = first_kernel // 2, h = kernel // 2), pixel (r, c)'s parameters depend on
exactly the pixels (r', c') with r-R <= r' < r and |c'-c| <= R, or r' = r and c-R <= c' < c.

Class conditioning: ``num_classes > 0`` adds the per-class biases e(y); the labels are a keyword,
``model(x, y=labels)``, ``log_prob(x, y)``, ``sample(n, y=labels)``. The shared trainer feeds images
only, so ``python -m inference.train gated_pixelcnn`` trains the unconditional model; train the
conditional one from Python with the loss called as ``elbo.differentiable_loss(m.model, m.guide, x, y)``
and labels from ``data.load_dataset(name).labels(split)``.
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
class GatedPixelCNNConfig(HeadConfig):
    """Options of ``python -m inference.train gated_pixelcnn``."""

    channels: int = field(default=64, metadata={"help": "channels p of each stack (the gates use 2p)"})
    layers: int = field(default=12, metadata={"help": "gated layers L (each a vertical and a horizontal conv)"})
    first_kernel: int = field(default=7, metadata={"help": "kernel size k1 of the first layer"})
    kernel: int = field(default=3, metadata={"help": "kernel size k of the later layers"})
    output_channels: int = field(default=128, metadata={"help": "channels of the hidden 1x1 output layer"})
    num_classes: int = field(default=0, metadata={
        "help": "classes of a class-conditional model (0: unconditional; the shared trainer trains only "
                "unconditional models, see README)"})

    def validate(self) -> None:
        self.validate_head()
        if self.channels < 1 or self.layers < 1 or self.output_channels < 1 or self.num_classes < 0:
            raise DGMError("--channels, --layers and --output-channels must be >= 1, --num-classes >= 0")
        if self.first_kernel < 3 or self.first_kernel % 2 == 0 or self.kernel < 3 or self.kernel % 2 == 0:
            raise DGMError(f"kernel sizes must be odd and >= 3, got {self.first_kernel} and {self.kernel}")


class GatedLayer(nn.Module):
    """One layer of the module docstring: (v, h) -> (v', h')."""

    def __init__(self, in_channels: int, channels: int, kernel: int, first: bool, num_classes: int):
        super().__init__()
        h = kernel // 2
        self.first = first
        rows, cols = (h, h) if first else (h + 1, h + 1)  # the first layer must not see its own row/pixel
        self.vertical = MaskedConv2d(in_channels, 2 * channels, (rows, kernel), (-h, -h))
        self.horizontal = MaskedConv2d(in_channels, 2 * channels, (1, cols), (0, -h))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.embed = nn.Embedding(num_classes, 4 * channels) if num_classes else None

    def class_bias(self, y: torch.Tensor | None) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """Per-class biases (e^v(y), e^h(y)), each (N, 2p), or zeros."""
        if self.embed is None or y is None:
            return 0.0, 0.0
        return self.embed(y).chunk(2, dim=-1)

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        bias_v, bias_h = self.class_bias(y)
        if isinstance(bias_v, torch.Tensor):
            bias_v, bias_h = bias_v[:, :, None, None], bias_h[:, :, None, None]
        v_feat = self.vertical(v)
        h_feat = self.horizontal(h) + self.v_to_h(v_feat)
        h_new = self.h_out(gate(h_feat + bias_h))
        return gate(v_feat + bias_v), h_new if self.first else h_new + h


class GatedPixelCNN(AutoregressiveModel):
    """The network of the module docstring with a likelihood head; see ``AutoregressiveModel``."""

    def __init__(self, config: GatedPixelCNNConfig, spec: DatasetSpec):
        super().__init__(spec, build_head(config, spec), num_classes=config.num_classes)
        self.config = config
        self.layers = nn.ModuleList(
            GatedLayer(spec.shape[0] if i == 0 else config.channels, config.channels,
                       config.first_kernel if i == 0 else config.kernel, i == 0, config.num_classes)
            for i in range(config.layers))
        self.out1 = nn.Conv2d(config.channels, config.output_channels, 1)
        self.out2 = nn.Conv2d(config.output_channels, self.params_per_pixel, 1)

    @property
    def receptive_radius(self) -> int:
        """R = h1 + (L-1) h: how far up, left and right pixel (r, c) sees (module docstring)."""
        return self.config.first_kernel // 2 + (self.config.layers - 1) * (self.config.kernel // 2)

    def network(self, inputs: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        v = h = inputs
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.out2(F.relu(self.out1(F.relu(h))))

    def incremental(self, n: int, y: torch.Tensor | None = None) -> "GatedPixelCNNState":
        return GatedPixelCNNState(self, n, self.check_labels(y, n))


class GatedPixelCNNState:
    """Cached gated PixelCNN: the vertical stack one row at a time (it needs only the rows above, and the
    horizontal stack needs it to the right of the current pixel), the horizontal stack one pixel at a time."""

    def __init__(self, model: GatedPixelCNN, n: int, y: torch.Tensor | None):
        like = next(model.parameters())
        _, height, width = model.spec.shape
        self.model = model
        self.vertical = [layer.vertical.cache(n, height, width, like) for layer in model.layers]
        self.horizontal = [layer.horizontal.cache(n, height, width, like) for layer in model.layers]
        self.bias = [layer.class_bias(y) for layer in model.layers]
        self.v_feat: list[torch.Tensor] = []  # vertical pre-activations of the current row, (n, 2p, W) per layer

    def observe(self, value: torch.Tensor, r: int, c: int) -> None:
        x = self.model.scale(value)[:, None]
        self.vertical[0].write(x, r, c)
        self.horizontal[0].write(x, r, c)

    def _vertical_row(self, r: int) -> None:
        self.v_feat = []
        for i, cache in enumerate(self.vertical):
            v_feat = cache.row(r)
            self.v_feat.append(v_feat)
            if i + 1 < len(self.vertical):
                bias_v = self.bias[i][0]
                bias_v = bias_v[:, :, None] if isinstance(bias_v, torch.Tensor) else bias_v
                self.vertical[i + 1].write_row(gate(v_feat + bias_v), r)

    def params(self, r: int, c: int) -> torch.Tensor:
        m = self.model
        if c == 0:
            self._vertical_row(r)
        h = None
        for i, layer in enumerate(m.layers):
            if h is not None:
                self.horizontal[i].write(h, r, c)
            h_feat = self.horizontal[i].at(r, c) + pointwise(layer.v_to_h, self.v_feat[i][:, :, c])
            h_new = pointwise(layer.h_out, gate(h_feat + self.bias[i][1]))
            h = h_new if layer.first else h_new + h
        return pointwise(m.out2, F.relu(pointwise(m.out1, F.relu(h))))


@register_model("gated_pixelcnn", GatedPixelCNNConfig,
                description="gated PixelCNN: vertical and horizontal stacks (no blind spot), "
                            "optionally class-conditional")
def build_gated_pixelcnn(config: GatedPixelCNNConfig, spec: DatasetSpec) -> GatedPixelCNN:
    """Build a :class:`GatedPixelCNN` for data set ``spec``."""
    return GatedPixelCNN(config, spec)
