"""A composition of image transforms as one transform: the building block of Glow steps, of the
inner flow of a multi-scale factor-out, and of the variational dequantizer.

    _call:    y = f_K(... f_2(f_1(x)))                      (parts listed base -> data, like Pyro's lists)
    _inverse: x = f_1^-1(... f_K^-1(y))
    log |det dy/dx| = sum_k log |det df_k/dv_{k-1}|         (each from the pass that computed it)

Unlike ``torch.distributions.ComposeTransform``, the parts are registered submodules (their
parameters train and are saved with the chain) and each part is called through
``nn.Module.__call__`` (forward hooks see every part, so the trainer can name the first part whose
output went non-finite). The parts' value caches are switched off: a chain recomputes each part on
every call, so ``_inverse`` of the chain's own output really inverts (tests rely on it), while each
part's log-det still comes from the pass that produced it. Shapes may change along the chain
(squeezes): ``forward_shape`` and ``inverse_shape`` compose.
"""
from __future__ import annotations

from typing import Sequence

import torch
from pyro.distributions import constraints
from torch import nn

from core.errors import DGMError
from models.flows.base import FlowTransform
from models.flows.image import ImageFlowTransform
from models.flows.registry import register_transform
from models.flows.actnorm import ActNorm
from models.flows.conv_coupling import conv_affine_coupling
from models.flows.registry import randomize_
from models.flows.squeeze import Squeeze, Unsqueeze


class Chain(ImageFlowTransform):
    """f_K o ... o f_1 of image transforms (listed base -> data), with summed log-dets."""

    def __init__(self, parts: Sequence[FlowTransform]):
        super().__init__(cache_size=1)
        parts = list(parts)
        if not parts:
            raise DGMError("a chain of transforms needs at least one part")
        for part in parts:
            if part.domain.event_dim != 3 or part.codomain.event_dim != 3:
                raise DGMError(f"a chain holds image transforms (event shape (C, H, W)); {type(part).__name__} "
                               f"has event dimension {part.domain.event_dim}")
            part._cache_size = 0  # recompute every call (see the module docstring)
        self.parts = nn.ModuleList(parts)

    @property
    def domain(self) -> constraints.Constraint:
        """The first part's domain (a chain maps what its first part takes)."""
        return self.parts[0].domain

    @property
    def codomain(self) -> constraints.Constraint:
        """The last part's codomain: the unit interval for the dequantizer's chain ending in a sigmoid."""
        return self.parts[-1].codomain

    def forward_shape(self, shape: torch.Size | tuple[int, ...]) -> torch.Size:
        for part in self.parts:
            shape = part.forward_shape(shape)
        return torch.Size(shape)

    def inverse_shape(self, shape: torch.Size | tuple[int, ...]) -> torch.Size:
        for part in reversed(self.parts):
            shape = part.inverse_shape(shape)
        return torch.Size(shape)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        v, total = x, None
        for part in self.parts:
            w = part(v)
            ladj = part.log_abs_det_jacobian(v, w)
            total = ladj if total is None else total + ladj
            v = w
        self._remember(x, v, total)
        return v

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        v, total = y, None
        for part in reversed(self.parts):
            w = part._inv_call(v)
            ladj = part.log_abs_det_jacobian(w, v)
            total = ladj if total is None else total + ladj
            v = w
        self._remember(v, y, total)
        return v


def _example(shape: tuple[int, ...], ctx: int, gen: torch.Generator) -> Chain:

    c, h, w = shape
    parts = [Squeeze(), conv_affine_coupling((4 * c, h // 2, w // 2), "channel", 0, hidden=6, blocks=0),
             Unsqueeze(), ActNorm(c)]
    chain = randomize_(Chain(parts), gen, 0.3)
    parts[-1].initialized.fill_(True)
    return chain


register_transform("chain", Chain, _example, event="image",
                   description="a composition of image transforms (shapes may change inside)")
