"""The registry of flow-density architectures: the choices of ``python -m inference.train flow --arch``.

Each architecture file registers its builders (``models.flows.architectures``: realnvp_mlp, maf,
nice on flattened images; ``models.flows.multiscale``: realnvp, glow on (C, H, W) images)::

    register_architecture(name, build, event="vector" | "image", description=...)

``build(config, shape)`` returns the layers base -> data for images of ``shape`` (C, H, W), reading
the ``FlowConfig`` options it uses; ``event`` says whether the layers act on flattened images (D,)
or on images. ``FlowConfig`` lists, validates and builds whatever is registered here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from models.flows.base import FlowTransform
from models.flows.choices import unknown_choice
from models.flows.registry import Event

ArchitectureBuilder = Callable[[Any, tuple[int, ...]], list[FlowTransform]]


@dataclass(frozen=True)
class ArchitectureSpec:
    """One registered architecture."""

    name: str
    build: ArchitectureBuilder
    event: Event
    description: str


ARCHITECTURES: dict[str, ArchitectureSpec] = {}


def register_architecture(name: str, build: ArchitectureBuilder, *, event: Event = "vector",
                          description: str = "") -> None:
    """Record ``build`` as architecture ``name`` (called once per architecture by its file)."""
    if name in ARCHITECTURES:
        raise ValueError(f"flow architecture {name!r} registered twice")
    ARCHITECTURES[name] = ArchitectureSpec(name, build, event, description or (build.__doc__ or "").strip())


def architecture_spec(name: str) -> ArchitectureSpec:
    """The architecture called ``name`` (a one-line error naming the choices otherwise)."""
    if name not in ARCHITECTURES:
        raise unknown_choice("--arch", name, sorted(ARCHITECTURES))
    return ARCHITECTURES[name]


def describe_architectures() -> str:
    """'; choices: name (description), ...' for ``--help``, read from the registry when shown."""
    return "; choices: " + "; ".join(f"{s.name}: {s.description}" for s in sorted(ARCHITECTURES.values(),
                                                                                  key=lambda s: s.name))
