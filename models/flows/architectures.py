"""Flow architectures for densities of images (flattened to D = C*H*W), listed base -> data, registered
in ``models.flows.architecture_registry`` (``--arch``).

    realnvp_mlp  L affine couplings with MLP conditioners; masks alternate (parity 0, 1, 0, ...),
                 checkerboard on the image layout or halves of the flattened vector
    maf          L MAF layers (one-pass density); the MADE order alternates natural / reversed,
                 so consecutive layers condition in opposite directions
    nice         an elementwise scaling layer on the base side (NICE's top layer), then L additive
                 couplings with alternating masks

Every layer starts at the identity (zero-initialised last conditioner layers, identity scaling).
"""
from __future__ import annotations

import math
from typing import Any

from models.flows.architecture_registry import register_architecture
from models.flows.autoregressive import affine_autoregressive
from models.flows.base import FlowTransform
from models.flows.log_scale import config_bounds
from models.flows.coupling import additive_coupling, affine_coupling
from models.flows.linear import ElementwiseAffine
from models.flows.permutation import alternating_order


def realnvp_mlp(config: Any, shape: tuple[int, ...]) -> list[FlowTransform]:
    """Affine couplings with alternating ``config.mask`` masks and MLP conditioners."""
    return [affine_coupling(shape, config.mask, i % 2, config.hidden, config.activation, **config_bounds(config))
            for i in range(config.num_layers)]


def maf(config: Any, shape: tuple[int, ...]) -> list[FlowTransform]:
    """MAF layers whose MADE orders alternate natural and reversed."""
    dim = math.prod(shape)
    return [affine_autoregressive(dim, config.hidden, "maf", alternating_order(dim, i), config.activation,
                                  **config_bounds(config))
            for i in range(config.num_layers)]


def nice(config: Any, shape: tuple[int, ...]) -> list[FlowTransform]:
    """A learned elementwise scaling on the base side, then additive couplings with alternating masks (NICE)."""
    layers: list[FlowTransform] = [ElementwiseAffine(math.prod(shape))]
    return layers + [additive_coupling(shape, config.mask, i % 2, config.hidden, config.activation)
                     for i in range(config.num_layers)]


register_architecture("realnvp_mlp", realnvp_mlp,
                      description="affine couplings with MLP conditioners, on flattened images")
register_architecture("maf", maf, description="masked autoregressive layers, on flattened images")
register_architecture("nice", nice, description="additive couplings and a scaling layer, on flattened images")
