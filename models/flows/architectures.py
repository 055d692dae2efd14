"""Flow architectures for densities of images (flattened to D = C*H*W), listed base -> data.

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
from typing import Any, Callable

import torch

from core.errors import DGMError
from models.flows.autoregressive import affine_autoregressive
from models.flows.base import FlowTransform
from models.flows.coupling import additive_coupling, affine_coupling
from models.flows.linear import ElementwiseAffine


def _bounds(config: Any) -> dict[str, Any]:
    return {"log_scale_min": config.log_scale_min, "log_scale_max": config.log_scale_max,
            "bound": config.log_scale_bound}


def realnvp_mlp(config: Any, shape: tuple[int, ...]) -> list[FlowTransform]:
    """Affine couplings with alternating ``config.mask`` masks and MLP conditioners."""
    return [affine_coupling(shape, config.mask, i % 2, config.hidden, config.activation, **_bounds(config))
            for i in range(config.num_layers)]


def maf(config: Any, shape: tuple[int, ...]) -> list[FlowTransform]:
    """MAF layers whose MADE orders alternate natural and reversed."""
    dim = math.prod(shape)
    orders = (torch.arange(dim), torch.arange(dim - 1, -1, -1))
    return [affine_autoregressive(dim, config.hidden, "maf", orders[i % 2], config.activation, **_bounds(config))
            for i in range(config.num_layers)]


def nice(config: Any, shape: tuple[int, ...]) -> list[FlowTransform]:
    """A learned elementwise scaling on the base side, then additive couplings with alternating masks (NICE)."""
    layers: list[FlowTransform] = [ElementwiseAffine(math.prod(shape))]
    return layers + [additive_coupling(shape, config.mask, i % 2, config.hidden, config.activation)
                     for i in range(config.num_layers)]


ARCHITECTURES: dict[str, Callable[[Any, tuple[int, ...]], list[FlowTransform]]] = {
    "realnvp_mlp": realnvp_mlp,
    "maf": maf,
    "nice": nice,
}


def build_architecture(config: Any, shape: tuple[int, ...]) -> list[FlowTransform]:
    """The layers of ``config.arch`` for events of ``shape`` (C, H, W), base -> data order."""
    if config.arch not in ARCHITECTURES:
        raise DGMError(f"unknown flow architecture {config.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[config.arch](config, shape)
