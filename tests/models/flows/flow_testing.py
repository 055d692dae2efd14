"""Helpers of the flow tests (imported by name; not a conftest, so test folders cannot clash)."""
from __future__ import annotations

import pytest
import torch

from models.flows import TRANSFORMS
from models.flows.registry import TransformSpec

CONTEXT_DIM = 3


#: images: 4 channels (a squeeze's output, an unsqueeze's input) on a 4x4 grid (squeezable): D = 64
IMAGE_SHAPE = (4, 4, 4)


def event_shape(spec: TransformSpec, dim: int = 6) -> tuple[int, ...]:
    """A small event of the transform's kind: (D,) for vectors, (C, H, W) for images."""
    return (max(dim, spec.min_dim),) if spec.event == "vector" else IMAGE_SHAPE


def context_for(spec: TransformSpec, shape: tuple[int, ...], batch: tuple[int, ...] = (), seed: int | None = None,
                requires_grad: bool = False) -> torch.Tensor:
    """A random context: (*batch, CONTEXT_DIM) for vector transforms, a (*batch, CONTEXT_DIM, H, W) map on
    the grid of the images for image transforms."""
    tail = (CONTEXT_DIM,) if spec.event == "vector" else (CONTEXT_DIM, *shape[-2:])
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return torch.randn(*batch, *tail, dtype=torch.float64, generator=generator).requires_grad_(requires_grad)


def build(spec: TransformSpec, shape: tuple[int, ...], seed: int = 0, context: torch.Tensor | None = None):
    """The registry's example in float64; conditional ones conditioned on ``context`` (or a random one)."""
    module = spec.example(shape, CONTEXT_DIM, torch.Generator().manual_seed(seed)).double()
    if not spec.conditional:
        return module, module
    if context is None:
        context = context_for(spec, shape, seed=seed + 1)
    return module, module.condition(context)


@pytest.fixture
def float64_default():
    """Pyro's transforms create some tensors with the default dtype: make it float64 for oracle tests."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


ALL = sorted(TRANSFORMS)
INVERTIBLE = sorted(n for n, s in TRANSFORMS.items() if s.closed_form_inverse)
NOT_INVERTIBLE = sorted(n for n, s in TRANSFORMS.items() if not s.closed_form_inverse)
