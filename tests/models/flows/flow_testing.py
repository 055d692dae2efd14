"""Helpers of the flow tests (imported by name; not a conftest, so test folders cannot clash)."""
from __future__ import annotations

import pytest
import torch

from models.flows import TRANSFORMS
from models.flows.registry import TransformSpec

CONTEXT_DIM = 3


def event_shape(spec: TransformSpec, dim: int = 6) -> tuple[int, ...]:
    """A small event of the transform's kind: (D,) for vectors, (C, H, W) for images."""
    return (max(dim, spec.min_dim),) if spec.event == "vector" else (2, 4, 4)


def build(spec: TransformSpec, shape: tuple[int, ...], seed: int = 0, context: torch.Tensor | None = None):
    """The registry's example in float64; conditional ones conditioned on ``context`` (or a random one)."""
    module = spec.example(shape, CONTEXT_DIM, torch.Generator().manual_seed(seed)).double()
    if not spec.conditional:
        return module, module
    if context is None:
        context = torch.randn(CONTEXT_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
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
