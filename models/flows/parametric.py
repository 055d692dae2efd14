"""Flow layers whose maths is written once, as pure functions of their parameters.

A layer family (planar, Householder, Sylvester, ...) writes its map as functions of a tuple of
parameter tensors theta:

    forward(x, *theta) -> (y, log |det dy/dx|)           base -> data (``_call``)
    inverse(y, *theta) -> (x, log |det dy/dx|)           data -> base (``_inverse``); None: no closed form

with theta broadcasting against the batch of x: a fixed layer's theta has no batch dimensions
(its own ``nn.Parameter`` s), an amortised layer's theta has the batch shape of its contexts h
(one set per example, from a linear head of h: ``models.flows.amortized``); importance samples add
a leading dimension to x, not to theta. Both kinds are :class:`ParametricLayer` s and differ only in
``layer_params()``, so the maths of a fixed layer and of its amortised twin cannot drift apart.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable

import torch

from models.flows.base import FlowTransform

#: (value, *theta) -> (mapped value, log |det d _call / dx| of the batch shape)
LayerFunction = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LayerMaths:
    """The two directions of one layer family; ``inverse`` is None without a closed-form inverse."""

    forward: LayerFunction
    inverse: LayerFunction | None = None


class ParametricLayer(FlowTransform, metaclass=abc.ABCMeta):
    """A layer computed by ``maths`` from ``layer_params()`` (own parameters, or a context's)."""

    maths: LayerMaths

    @abc.abstractmethod
    def layer_params(self) -> tuple[Any, ...]:
        """theta, the parameters ``maths`` takes after the value (tensors broadcasting over the batch)."""

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y, ladj = self.maths.forward(x, *self.layer_params())
        self._remember(x, y, ladj)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.maths.inverse is None:
            return self.refuse_inverse()
        x, ladj = self.maths.inverse(y, *self.layer_params())
        self._remember(x, y, ladj)
        return x


class ContextLayer(ParametricLayer):
    """A parametric layer at given parameters theta (per example): what ``condition(h)`` of an amortised
    layer returns. Built afresh for every context, so its cache never outlives one distribution."""

    def __init__(self, maths: LayerMaths, params: tuple[Any, ...], name: str):
        super().__init__(cache_size=1)
        self.maths, self.params, self.name = maths, tuple(params), name

    def layer_params(self) -> tuple[Any, ...]:
        return self.params

    def extra_repr(self) -> str:
        return self.name
