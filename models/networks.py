"""Neural networks used by the generative models: MLPs and a small convolutional encoder/decoder."""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from core.cpu_linear import Linear

Activation = Literal["relu", "tanh", "elu", "softplus", "leaky_relu"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus, "leaky_relu": nn.LeakyReLU,
}


def mlp(in_features: int, hidden: tuple[int, ...], out_features: int, activation: str = "relu") -> nn.Sequential:
    """Linear layers ``in -> hidden[0] -> ... -> out`` with ``activation`` between them (none after the last);
    ``core.cpu_linear.Linear`` (``nn.Linear`` whose float32 CPU products may run on oneDNN)."""
    layers: list[nn.Module] = []
    sizes = (in_features, *hidden)
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(Linear(sizes[-1], out_features))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x (..., C, H, W) -> flattened -> MLP -> (..., out_features)."""

    def __init__(self, shape: tuple[int, int, int], hidden: tuple[int, ...], out_features: int, activation: str):
        super().__init__()
        self.net = mlp(math.prod(shape), hidden, out_features, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(-3))


class MLPDecoder(nn.Module):
    """z (..., L) -> MLP -> (..., channels, H, W) per-pixel parameters."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], out_shape: tuple[int, int, int], activation: str):
        super().__init__()
        self.out_shape = out_shape
        self.net = mlp(latent_dim, tuple(reversed(hidden)), math.prod(out_shape), activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).unflatten(-1, self.out_shape)


def _downsamplings(height: int) -> int:
    """Stride-2 stages of the conv nets: two for 28x28 (28 -> 14 -> 7), one for 8x8 (8 -> 4)."""
    return 2 if height >= 16 else 1


class ConvEncoder(nn.Module):
    """x (..., C, H, W) -> stride-2 convolutions (32, 64 channels) -> linear -> (..., out_features)."""

    def __init__(self, shape: tuple[int, int, int], hidden: tuple[int, ...], out_features: int, activation: str):
        super().__init__()
        channels, height, width = shape
        act = ACTIVATIONS[activation]
        stages = _downsamplings(height)
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(stages):
            c_out = 32 * 2 ** i
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), act()]
            c_in = c_out
        self.conv = nn.Sequential(*layers)
        flat = c_in * (height // 2 ** stages) * (width // 2 ** stages)
        self.head = mlp(flat, hidden, out_features, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-3]
        h = self.conv(x.reshape(-1, *x.shape[-3:]))
        return self.head(h.flatten(1)).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """z (..., L) -> linear -> transposed stride-2 convolutions -> (..., channels, H, W)."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], out_shape: tuple[int, int, int], activation: str):
        super().__init__()
        channels, height, width = out_shape
        act = ACTIVATIONS[activation]
        stages = _downsamplings(height)
        self.start = (32 * 2 ** (stages - 1), height // 2 ** stages, width // 2 ** stages)
        self.head = nn.Sequential(mlp(latent_dim, tuple(reversed(hidden)), math.prod(self.start), activation), act())
        layers: list[nn.Module] = []
        c_in = self.start[0]
        for i in reversed(range(stages)):
            c_out = channels if i == 0 else 32 * 2 ** (i - 1)
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i:
                layers.append(act())
            c_in = c_out
        self.deconv = nn.Sequential(*layers)
        self.out_shape = out_shape

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        h = self.head(z).reshape(-1, *self.start)
        return self.deconv(h).reshape(*batch, *self.out_shape)
