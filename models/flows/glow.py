"""The Glow step of flow (Kingma & Dhariwal 2018, section 3): actnorm, invertible 1x1 convolution,
affine coupling, one transform.

Data -> base (density) order, as in the paper::

    h = ActNorm(x);   h = InvertibleConv1x1(h);   z = AffineCoupling_channel(h)

so as a :class:`models.flows.chain.Chain` listed base -> data the parts are
[coupling, 1x1 convolution, actnorm]; log |det| is the sum of the three. The coupling splits the
channels in halves (the first half conditions the second); the learned 1x1 convolution in front of
it decides which mixtures of channels those halves are, replacing RealNVP's fixed alternation.
"""
from __future__ import annotations

import torch

from core.errors import DGMError
from models.flows.actnorm import ActNorm
from models.flows.chain import Chain
from models.flows.conv1x1 import InvertibleConv1x1
from models.flows.conv_coupling import conv_affine_coupling
from models.flows.registry import randomize_, register_transform


class GlowStep(Chain):
    """[affine channel coupling, invertible 1x1 convolution, actnorm] listed base -> data."""

    def __init__(self, shape: tuple[int, int, int], hidden: int = 64, blocks: int = 0,
                 generator: torch.Generator | None = None, **bounds: float | str):
        channels = shape[0]
        if channels < 2:
            raise DGMError(f"a Glow step needs at least 2 channels, got {channels} (squeeze first)")
        super().__init__([conv_affine_coupling(tuple(shape), "channel", 0, hidden, blocks, **bounds),
                          InvertibleConv1x1(channels, generator=generator),
                          ActNorm(channels)])

    @property
    def coupling(self):
        return self.parts[0]

    @property
    def conv(self) -> InvertibleConv1x1:
        return self.parts[1]

    @property
    def actnorm(self) -> ActNorm:
        return self.parts[2]


def _example(shape: tuple[int, ...], ctx: int, gen: torch.Generator) -> GlowStep:
    step = randomize_(GlowStep(shape, hidden=6, blocks=0, generator=gen), gen, 0.3)
    step.actnorm.initialized.fill_(True)
    return step


register_transform("glow_step", GlowStep, _example, event="image",
                   description="Glow step: actnorm, invertible 1x1 convolution, affine channel coupling")
