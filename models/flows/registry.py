"""The one registry of flow transforms: name -> class, capabilities, and a small example instance.

Each family file registers its transforms (a class may appear under several names, one per
variant: ``maf`` and ``iaf`` are one class used in opposite directions). The generic tests in
``tests/models/flows`` iterate over this registry and read the capability flags to know which
properties apply, so a transform is tested the moment it is registered:

* ``closed_form_inverse``: ``_inverse`` computes data -> base for any value (else it raises
  :class:`models.flows.base.NoClosedFormInverse` and only cached values can be inverted);
* ``event``: ``"vector"`` (event shape (D,)) or ``"image"`` (event shape (C, H, W));
* ``conditional``: a ``ConditionalTransformModule`` whose ``condition(context)`` returns the
  transform (context of shape (..., context_dim));
* ``volume_preserving``: log |det J| = 0 everywhere.

``example(event_shape, context_dim, generator)`` builds an instance with random, non-trivial
parameters (not the identity that training starts from), for tests and documentation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from models.flows.choices import unknown_choice

Event = Literal["vector", "image"]
ExampleFactory = Callable[[tuple[int, ...], int, torch.Generator], nn.Module]


@dataclass(frozen=True)
class TransformSpec:
    """One registered transform (or variant) and what it can do."""

    name: str
    cls: type
    example: ExampleFactory
    closed_form_inverse: bool
    event: Event
    conditional: bool
    volume_preserving: bool
    min_dim: int
    description: str


TRANSFORMS: dict[str, TransformSpec] = {}


def register_transform(name: str, cls: type, example: ExampleFactory, *, closed_form_inverse: bool = True,
                       event: Event = "vector", conditional: bool = False, volume_preserving: bool = False,
                       min_dim: int = 1, description: str = "") -> None:
    """Record ``cls`` under ``name`` with its capabilities (called once per variant by each family file)."""
    if name in TRANSFORMS:
        raise ValueError(f"flow transform {name!r} registered twice")
    TRANSFORMS[name] = TransformSpec(name, cls, example, closed_form_inverse, event, conditional, volume_preserving,
                                     min_dim, description or (cls.__doc__ or "").strip().splitlines()[0])


def transform_spec(name: str) -> TransformSpec:
    """The registered transform called ``name`` (a one-line error naming the choices otherwise)."""
    if name not in TRANSFORMS:
        raise unknown_choice("flow transform", name, sorted(TRANSFORMS))
    return TRANSFORMS[name]


def randomize_(module: nn.Module, generator: torch.Generator, scale: float = 0.3) -> nn.Module:
    """Fill every parameter of ``module`` with N(0, scale^2) draws (masks and other buffers untouched)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return module
