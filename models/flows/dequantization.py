"""Variational dequantization (Flow++, Ho et al. 2019, section 3.1): a learned conditional flow
q(u | x) for the dequantization noise, in place of the uniform U[0, 1)^D.

For discrete images x and a continuous density p of y = x + u (unit bins),

    log P(x) = log E_{q(u|x)}[ p(x + u) / q(u | x) ]  >=  E_{q(u|x)}[ log p(x + u) - log q(u | x) ]

for any density q on [0, 1)^D: the ELBO of the flow model with the dequantization noise as its
latent site. Uniform q gives the uniform-dequantization bound; a learned q tightens the bound and
is trained jointly with p through the same ELBO; ``importance_sampled`` with K draws from q is
Flow++'s importance-sampled estimate of log P(x), rising to it as K grows.

The conditional flow, base -> noise, for a context image c (the discrete image, scaled)::

    eps ~ N(0, I) (C, H, W)
    v = g_S o ... o g_1 (eps; h),      h = features(c)    (..., F, H, W), one CNN pass per image
    u = (1 - 1e-6) sigmoid(v)                              ``models.flows.sigmoid``

g_s are image affine couplings (checkerboard masks alternating with their complement, and channel
masks too when C >= 2) whose residual-CNN conditioners read [masked v, h]. ``condition(c)``
returns the whole map as one :class:`models.flows.chain.Chain`, so q(u | x) is
``TransformedDistribution(N(0, I), [dequantizer.condition(c)])``.
"""
from __future__ import annotations

import torch
from pyro.distributions import constraints
from pyro.distributions.conditional import ConditionalTransformModule
from torch import nn

from core.errors import DGMError
from models.flows.chain import Chain
from models.flows.cnn_conditioner import ResidualBlock
from models.flows.conv_coupling import conv_affine_coupling
from models.flows.image import IMAGE, flatten_batch, unflatten_batch
from models.flows.registry import randomize_, register_transform
from models.flows.sigmoid import Sigmoid


def dequantizer_masks(channels: int, steps: int) -> list[tuple[str, int]]:
    """(mask, parity) per coupling: checkerboard 0, 1 (then channel 0, 1 when C >= 2), repeated."""
    cycle = [("checkerboard", 0), ("checkerboard", 1)] + ([("channel", 0), ("channel", 1)] if channels >= 2 else [])
    return [cycle[i % len(cycle)] for i in range(steps)]


class VariationalDequantization(ConditionalTransformModule):
    """q(u | c): eps -> couplings conditioned on CNN features of c -> (1 - eps) sigmoid (module docstring)."""

    domain = IMAGE
    codomain = constraints.independent(constraints.unit_interval, 3)
    bijective = True

    def __init__(self, shape: tuple[int, int, int], context_channels: int, steps: int = 4, hidden: int = 32,
                 blocks: int = 1, features: int = 16, eps: float = 1e-6, **bounds: float | str):
        super().__init__()
        if steps < 1 or features < 1 or hidden < 1 or blocks < 0 or context_channels < 1:
            raise DGMError(f"variational dequantization needs steps, features, hidden channels >= 1 and blocks >= 0,"
                           f" got {steps}, {features}, {hidden} and {blocks}")
        self.shape, self.eps = tuple(shape), eps
        self.context_net = nn.Sequential(nn.Conv2d(context_channels, hidden, 3, padding=1),
                                          *[ResidualBlock(hidden) for _ in range(blocks)],
                                          nn.ReLU(), nn.Conv2d(hidden, features, 3, padding=1))
        self.couplings = nn.ModuleList(
            conv_affine_coupling(self.shape, mask, parity, hidden, blocks, context_channels=features, **bounds)
            for mask, parity in dequantizer_masks(shape[0], steps))
        Sigmoid(eps)  # validate eps now

    def features(self, context: torch.Tensor) -> torch.Tensor:
        """h = CNN(c): (..., C_ctx, H, W) -> (..., F, H, W)."""
        flat, batch = flatten_batch(context)
        return unflatten_batch(self.context_net(flat), batch)

    def condition(self, context: torch.Tensor) -> Chain:
        """The map eps -> u for this context (features computed once, conditioners shared)."""
        h = self.features(context)
        return Chain([c.condition(h) for c in self.couplings] + [Sigmoid(self.eps)])


def _example(shape: tuple[int, ...], context_dim: int, gen: torch.Generator) -> VariationalDequantization:
    module = VariationalDequantization(shape, context_dim, steps=3, hidden=6, blocks=1, features=3, eps=0.01)
    return randomize_(module, gen, 0.1)


register_transform("variational_dequantization", VariationalDequantization, _example, event="image",
                   conditional=True, description="Flow++ variational dequantizer q(u | x): conditional image "
                   "couplings and a sigmoid")
