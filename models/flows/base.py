"""The base class of our flow transforms: hookable calls, a log-det cache, and inverse refusal.

Directions (``shared/CONVENTIONS.md``): ``_call`` maps base -> data (sampling), ``_inverse`` maps
data -> base (density), ``log_abs_det_jacobian(x, y)`` is log |det dy/dx| of ``_call`` at x, with
y = _call(x), summed over the event dimension: a tensor of the batch shape.

What :class:`FlowTransform` adds to Pyro's ``TransformModule``:

* Every transform computes log |det J| in the same pass as its output (``_call`` or ``_inverse``)
  and remembers it with the (x, y) pair; ``log_abs_det_jacobian(x, y)`` on those very tensors
  returns it without a second pass of the conditioner network. On other tensors it recomputes.
  The pair is held by weak references: the cache never keeps a pass's inputs and outputs alive
  (issue #18: eight couplings at batch 1024 pinned 50 MB between calls, so every call took fresh
  pages from the kernel, ~1,700-2,900 page faults and 5-7% of a RealNVP ``log_density``).
* Calls through ``t(x)`` and ``t.inv(y)`` run through ``nn.Module.__call__``, so forward hooks
  see each transform's output *and* its log-det: the trainer's ``first_nonfinite_module`` names the
  first transform (or conditioner layer) whose output turned NaN or infinite. ``_call`` and
  ``_inverse`` stay plain methods (the tests call them directly, past any cache).
* Transforms without a closed-form inverse raise :class:`NoClosedFormInverse` (a ``DGMError``) from
  ``_inverse``; torch's cache still inverts values the same transform has just produced.
* Torch's value cache (``cache_size=1``) keeps the last (x, y) pair and answers ``t.inv(y)`` for that
  very tensor y from it, even after the weights changed. Densities that score values from outside
  (a flow density's data, a flow prior's z) switch it off with :func:`without_value_cache`; the
  log-det cache is keyed on the (x, y) tensors of one pass, and with the value cache off every
  inversion makes a new x, so it can never answer for another pass.
"""
from __future__ import annotations

import weakref
from typing import Any

import torch
from pyro.distributions import constraints
from pyro.distributions.torch_transform import TransformModule
from torch import nn

from core.errors import DGMError


class NoClosedFormInverse(DGMError):
    """``_inverse`` of a transform that can only invert values it produced itself (cached)."""


class FlowTransform(TransformModule):
    """A bijection of real vectors (event shape (D,)) with cached log-dets and hookable calls."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, cache_size: int = 1):
        super().__init__(cache_size=cache_size)
        self._ladj_cache: tuple[weakref.ref, weakref.ref, torch.Tensor] | None = None

    # ---- log-det bookkeeping ----------------------------------------------------------------
    def _remember(self, x: torch.Tensor, y: torch.Tensor, ladj: torch.Tensor) -> None:
        """Keep log |det dy/dx| (batch shape) for this very (x, y) pair (weakly referenced: a dead
        reference never matches, so a new tensor at a freed tensor's address cannot take its log-det)."""
        self._ladj_cache = (weakref.ref(x), weakref.ref(y), ladj)

    def _cached_ladj(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        cache = self._ladj_cache
        if cache is not None and cache[0]() is x and cache[1]() is y:
            return cache[2]
        return None

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log |det d _call(x) / dx|, shape ``x.shape[:-1]`` (from the pass that made (x, y) if it can)."""
        ladj = self._cached_ladj(x, y)
        return ladj if ladj is not None else self._log_abs_det_jacobian(x, y)

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Fresh computation (no matching cache); by default one more forward pass at x."""
        self._call(x)
        assert self._ladj_cache is not None
        return self._ladj_cache[2]

    # ---- calls visible to forward hooks -----------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return nn.Module.__call__(self, x, False)[0]

    def _inv_call(self, y: torch.Tensor) -> torch.Tensor:
        return nn.Module.__call__(self, y, True)[0]

    def forward(self, value: torch.Tensor, inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, log-det of ``_call`` or None): what forward hooks see; caching as torch's Transform."""
        if inverse:
            out = super()._inv_call(value)  # torch's Transform: the cache, then _inverse
            return out, self._cached_ladj(out, value)
        out = super().__call__(value)  # torch's Transform: the cache, then _call
        return out, self._cached_ladj(value, out)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles drop the caches: they hold the last call's tensors (and their graphs)."""
        state = super().__getstate__()
        state["_ladj_cache"] = None
        if "_cached_x_y" in state:
            state["_cached_x_y"] = (None, None)
        return state

    def refuse_inverse(self) -> Any:
        """Raise the one-line error of a transform with no closed-form inverse."""
        raise NoClosedFormInverse(
            f"{type(self).__name__} has no closed-form inverse: it can only invert values it has just produced "
            "(cached by t(x)); use it where only sampling and the log-density of its own samples are needed "
            "(variational posteriors), not to score data")


def zeros_ladj(x: torch.Tensor) -> torch.Tensor:
    """log |det J| = 0 for every batch element of x (..., D): volume-preserving transforms."""
    return x.new_zeros(x.shape[:-1])


def without_value_cache(module: nn.Module) -> nn.Module:
    """Switch off torch's (x, y) value cache of every flow transform inside ``module`` (in place): each call
    recomputes, so no value is ever answered from a pass made with other weights. Returns ``module``."""
    for part in module.modules():
        if isinstance(part, FlowTransform):
            part._cache_size = 0
    return module
