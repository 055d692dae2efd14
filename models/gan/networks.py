"""Generator and discriminator networks of the GAN: an MLP pair and a DCGAN-style convolutional pair.

    generator      G: z (N, L)            -> logits (N, C, H, W); the image is sigmoid(logits) in [0, 1]
    discriminator  D: image (N, C, H, W)  -> (N,) one real number per image, in [0, 1] scale inputs:
                   a logit of P(real) for the minimax and non-saturating losses, a critic value for
                   hinge and WGAN-GP.

The convolutional pair follows DCGAN (Radford et al. 2016): transposed stride-2 convolutions with
batch normalisation and ReLU in the generator; stride-2 convolutions with LeakyReLU(0.2) in the
discriminator. The discriminator has *no* batch normalisation, so that every example's output
depends on that example alone: the WGAN-GP gradient penalty is defined per example (Gulrajani et
al. 2017 drop batch norm from the critic for this reason) and the same network serves every loss.
Two stride-2 stages for 28x28 images (7 -> 14 -> 28), one for 8x8 digits (4 -> 8).
"""
from __future__ import annotations

import math

import torch
from torch import nn

LEAK = 0.2  # the LeakyReLU slope of DCGAN's discriminator, used by both pairs


def conv_stages(height: int) -> int:
    """Stride-2 stages of the convolutional pair: two for 28x28 (7 -> 14 -> 28), one for 8x8 (4 -> 8)."""
    return 2 if height >= 16 else 1


class MLPGenerator(nn.Module):
    """z (N, L) -> Linear -> LeakyReLU ... -> Linear -> logits (N, C, H, W)."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], shape: tuple[int, int, int]):
        super().__init__()
        self.shape = shape
        layers: list[nn.Module] = []
        sizes = (latent_dim, *hidden)
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(LEAK)]
        layers.append(nn.Linear(sizes[-1], math.prod(shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).unflatten(-1, self.shape)


class MLPDiscriminator(nn.Module):
    """image (N, C, H, W) in [0, 1] -> 2x - 1 -> flattened -> [Linear -> LeakyReLU -> Dropout] ... -> Linear -> (N,).

    Dropout keeps the MLP discriminator from memorising pixels and overpowering the generator
    (Goodfellow et al. 2014 trained theirs with dropout too).
    """

    def __init__(self, shape: tuple[int, int, int], hidden: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        sizes = (math.prod(shape), *hidden)
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(LEAK), nn.Dropout(dropout)]  # p = 0: identity; same keys
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net((2 * image - 1).flatten(1)).squeeze(-1)


class DCGANGenerator(nn.Module):
    """z (N, L) -> Linear -> BN -> ReLU -> (c 2^(S-1), h, w) -> [ConvT(4, 2, 1) -> BN -> ReLU] ... -> ConvT -> logits.

    With S stride-2 stages, the first feature map is (H / 2^S, W / 2^S) with ``channels * 2^(S-1)``
    channels; every stage doubles the size and halves the channels; the last one outputs C logits.
    """

    def __init__(self, latent_dim: int, channels: int, shape: tuple[int, int, int]):
        super().__init__()
        c_out, height, width = shape
        stages = conv_stages(height)
        self.start = (channels * 2 ** (stages - 1), height // 2 ** stages, width // 2 ** stages)
        self.project = nn.Sequential(nn.Linear(latent_dim, math.prod(self.start)),
                                     nn.BatchNorm1d(math.prod(self.start)), nn.ReLU())
        layers: list[nn.Module] = []
        c = self.start[0]
        for i in reversed(range(stages)):
            if i == 0:
                layers.append(nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1))
            else:
                layers += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1, bias=False),
                           nn.BatchNorm2d(c // 2), nn.ReLU()]
                c //= 2
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.project(z).view(-1, *self.start))


class DCGANDiscriminator(nn.Module):
    """image (N, C, H, W) in [0, 1] -> 2x - 1 -> [Conv(4, 2, 1) -> LeakyReLU(0.2) -> Dropout] x S -> Linear -> (N,)."""

    def __init__(self, shape: tuple[int, int, int], channels: int, dropout: float = 0.0):
        super().__init__()
        c_in, height, width = shape
        stages = conv_stages(height)
        layers: list[nn.Module] = []
        c = c_in
        for i in range(stages):
            layers += [nn.Conv2d(c, channels * 2 ** i, 4, stride=2, padding=1), nn.LeakyReLU(LEAK), nn.Dropout(dropout)]
            c = channels * 2 ** i
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(c * (height // 2 ** stages) * (width // 2 ** stages), 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(2 * image - 1).flatten(1)).squeeze(-1)
