"""Multi-scale image flows: RealNVP (Dinh et al. 2017) and Glow (Kingma & Dhariwal 2018), as lists of
transforms base -> data that map a (C, H, W) standard normal base to images of the same shape.

RealNVP, ``levels`` scales with ``steps`` couplings per stage (the paper: 3, and 4 at the last scale).
Data -> base, at each scale but the last::

    steps checkerboard couplings -> squeeze -> steps channel couplings -> factor out half the channels
    (the kept half goes on to the next scale, at half the resolution and twice the channels)

and at the last scale steps + 1 checkerboard couplings. Squeezes: levels - 1 (28x28 MNIST: up to 3).

Glow, ``levels`` levels of ``steps`` steps (the paper: K = 32 steps, L = 3 levels). Data -> base::

    squeeze -> steps Glow steps (actnorm, 1x1 conv, channel coupling) -> split (all but the last level)

with the learned prior of the factored half written as a channel coupling (the "split prior",
``models.flows.factor_out``). Squeezes: levels (28x28 MNIST: up to 2).

Base -> data (Pyro's order) one scale reads [Squeeze, FactorOut(next scale), ..., Unsqueeze, ...]:
the leading squeeze and trailing unsqueeze re-pack the factored channels into the pixels they came
from, so every scale is a map of its input shape to itself (see ``models.flows.factor_out``).
Conditioners: residual CNNs with ``channels`` hidden channels and ``blocks`` residual blocks.
"""
from __future__ import annotations

from typing import Any

from core.errors import DGMError
from models.flows.architecture_registry import register_architecture
from models.flows.base import FlowTransform
from models.flows.log_scale import config_bounds
from models.flows.conv_coupling import conv_affine_coupling
from models.flows.factor_out import FactorOut
from models.flows.glow import GlowStep
from models.flows.squeeze import Squeeze, Unsqueeze

Shape = tuple[int, int, int]


def _check_grid(arch: str, shape: Shape, levels: int, squeezes: int) -> None:
    _, h, w = shape
    if levels < 1:
        raise DGMError(f"--levels must be at least 1, got {levels}")
    factor = 2 ** squeezes
    if h % factor or w % factor:
        raise DGMError(f"{arch} with --levels {levels} squeezes {squeezes} times, so the image height and width "
                       f"must be divisible by {factor}; these images are {h}x{w}: choose fewer --levels")
    if arch == "realnvp" and (h // factor) * (w // factor) < 2:
        raise DGMError(f"realnvp with --levels {levels} leaves a 1x1 grid at its last scale, too small for a "
                       "checkerboard mask: choose fewer --levels")


def _couplings(shape: Shape, mask: str, count: int, config: Any) -> list[FlowTransform]:
    return [conv_affine_coupling(shape, mask, i % 2, config.channels, config.blocks, **config_bounds(config))
            for i in range(count)]


def _realnvp_scale(shape: Shape, levels_left: int, config: Any) -> list[FlowTransform]:
    c, h, w = shape
    if levels_left == 1:
        return _couplings(shape, "checkerboard", config.steps + 1, config)
    squeezed = (4 * c, h // 2, w // 2)
    inner = _realnvp_scale((2 * c, h // 2, w // 2), levels_left - 1, config)
    return [Squeeze(), FactorOut(inner, 2 * c, squeezed), *_couplings(squeezed, "channel", config.steps, config),
            Unsqueeze(), *_couplings(shape, "checkerboard", config.steps, config)]


def realnvp(config: Any, shape: Shape) -> list[FlowTransform]:
    """Multi-scale RealNVP, base -> data (module docstring)."""
    _check_grid("realnvp", shape, config.levels, config.levels - 1)
    return _realnvp_scale(tuple(shape), config.levels, config)


def _glow_level(shape: Shape, levels_left: int, config: Any) -> list[FlowTransform]:
    c, h, w = shape
    squeezed = (4 * c, h // 2, w // 2)
    steps = [GlowStep(squeezed, config.channels, config.blocks, **config_bounds(config)) for _ in range(config.steps)]
    if levels_left == 1:
        return [Squeeze(), *steps, Unsqueeze()]
    inner = _glow_level((2 * c, h // 2, w // 2), levels_left - 1, config)
    split_prior = conv_affine_coupling(squeezed, "channel", 0, config.channels, config.blocks, **config_bounds(config))
    return [Squeeze(), FactorOut(inner, 2 * c, squeezed), split_prior, *steps, Unsqueeze()]


def glow(config: Any, shape: Shape) -> list[FlowTransform]:
    """Multi-scale Glow, base -> data (module docstring)."""
    _check_grid("glow", shape, config.levels, config.levels)
    return _glow_level(tuple(shape), config.levels, config)


register_architecture("realnvp", realnvp, event="image",
                      description="multi-scale RealNVP with residual-CNN couplings")
register_architecture("glow", glow, event="image",
                      description="multi-scale Glow (actnorm, invertible 1x1 convolutions, couplings)")

