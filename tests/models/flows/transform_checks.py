"""The generic checks of a registered flow transform, each chosen by the registry's capability flags.

Directions: ``_call`` base -> data, ``_inverse`` data -> base; ``log_abs_det_jacobian(x, y)`` is that
of ``_call``. The checks call ``_call`` and ``_inverse`` directly, so torch's cache cannot hide an error,
and compare log-dets with ``slogdet`` of autograd Jacobians of the very function computed.
``test_flow_transforms.py`` runs every applicable check over every registered transform;
:func:`check_transform` runs them all on one (the extension tests' toy transforms).
"""
from __future__ import annotations

import gc
import io
from typing import Callable

import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.conditional import ConditionalTransformModule

from core.errors import DGMError
from models.flows import FlowTransform, NoClosedFormInverse
from models.flows.registry import TransformSpec
from tests.models.flows.flow_testing import build, context_for, event_shape

BATCH_SHAPES = [(), (1,), (5,), (2, 3)]


def points(shape: tuple[int, ...], batch: tuple[int, ...] = (4,), seed: int = 1, scale: float = 1.5) -> torch.Tensor:
    return scale * torch.randn(*batch, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def jacobian(fn, v: torch.Tensor) -> torch.Tensor:
    """d fn(v) / dv as a (D, D) matrix for one event v ((D,) or (C, H, W), flattened)."""
    return torch.autograd.functional.jacobian(fn, v).reshape(v.numel(), v.numel())


def inverse_of_forward_and_forward_of_inverse(spec: TransformSpec) -> None:
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = points(shape)
    torch.testing.assert_close(t._inverse(t._call(x)), x, rtol=1e-10, atol=1e-10)
    y = t._call(points(shape, seed=2)).detach().clone()  # a generic point of the codomain
    torch.testing.assert_close(t._call(t._inverse(y)), y, rtol=1e-10, atol=1e-10)


def log_det_of_call_matches_autograd(spec: TransformSpec) -> None:
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = points(shape, batch=(3,))
    y = t._call(x)
    cached = t.log_abs_det_jacobian(x, y)                      # computed in the _call pass
    fresh = t.log_abs_det_jacobian(x.clone(), y.clone())       # recomputed without the cache
    for i in range(x.shape[0]):
        expected = torch.linalg.slogdet(jacobian(t._call, x[i]))[1]
        torch.testing.assert_close(cached[i], expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(fresh[i], expected, rtol=1e-9, atol=1e-9)


def log_det_of_inverse_matches_autograd(spec: TransformSpec) -> None:
    """The log-det computed in the _inverse pass is -log|det d_inverse/dy| of that very computation."""
    shape = event_shape(spec)
    _, t = build(spec, shape)
    y = t._call(points(shape, batch=(3,), seed=3)).detach().clone()
    x = t._inverse(y)
    from_inverse_pass = t.log_abs_det_jacobian(x, y).detach().clone()
    for i in range(y.shape[0]):
        expected = torch.linalg.slogdet(jacobian(t._inverse, y[i]))[1]
        torch.testing.assert_close(-from_inverse_pass[i], expected, rtol=1e-9, atol=1e-9)


def shapes_over_batch_shapes(spec: TransformSpec) -> None:
    shape = event_shape(spec)
    for batch in BATCH_SHAPES:
        context = context_for(spec, shape, batch) if spec.conditional else None
        _, t = build(spec, shape, context=context)
        x = points(shape, batch=batch)
        y = t._call(x)
        assert y.shape == batch + tuple(t.forward_shape(shape)) and y.dtype == torch.float64, batch
        assert t.log_abs_det_jacobian(x, y).shape == batch
        assert t.log_abs_det_jacobian(x.clone(), y.clone()).shape == batch
        if spec.closed_form_inverse:
            x2 = t._inverse(y)
            assert x2.shape == x.shape
            assert t.log_abs_det_jacobian(x2, y).shape == batch


def declared_shapes_are_the_computed_shapes(spec: TransformSpec) -> None:
    """forward_shape / inverse_shape (read by TransformedDistribution) agree with what the maps return."""
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = points(shape, batch=(2,))
    y = t._call(x)
    assert tuple(t.forward_shape(x.shape)) == tuple(y.shape)
    assert tuple(t.inverse_shape(y.shape)) == tuple(x.shape)


def batch_elements_are_transformed_independently(spec: TransformSpec) -> None:
    """Each example's output and log-det depend on that example alone (no mixing across the batch)."""
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = points(shape, batch=(2, 3))
    y = t._call(x)
    ladj = t.log_abs_det_jacobian(x, y)
    for i, j in [(0, 0), (1, 2)]:
        x_one = x[i, j].clone()
        y_one = t._call(x_one)
        torch.testing.assert_close(y[i, j], y_one, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ladj[i, j], t.log_abs_det_jacobian(x_one, y_one), rtol=1e-12, atol=1e-12)


def conditional_context_broadcasts_over_the_batch(spec: TransformSpec) -> None:
    """One context (C,) for a batch of x, and a batch of contexts for one x, agree with the loop."""
    shape = event_shape(spec)
    module, _ = build(spec, shape)
    x = points(shape, batch=(4,))
    contexts = context_for(spec, shape, (4,))
    y_batched = module.condition(contexts)._call(x)
    y_looped = torch.stack([module.condition(contexts[i])._call(x[i]) for i in range(4)])
    torch.testing.assert_close(y_batched, y_looped)
    assert module.condition(contexts)._call(x[0]).shape == (4, *shape)
    assert not torch.allclose(y_batched[0], module.condition(contexts[1])._call(x[0]))  # the context matters


def every_parameter_gets_a_gradient(spec: TransformSpec) -> None:
    shape = event_shape(spec)
    context = context_for(spec, shape, (4,), requires_grad=True) if spec.conditional else None
    module, t = build(spec, shape, context=context)
    x = points(shape).requires_grad_()
    y = t._call(x)
    (y.pow(2).sum() + t.log_abs_det_jacobian(x, y).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"{spec.name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{spec.name}: zero or bad gradient for {pname}"
    if context is not None:
        assert context.grad is not None and context.grad.abs().sum() > 0


def state_dict_round_trip_keeps_the_map(spec: TransformSpec) -> None:
    """Save with torch.save, load with weights_only=True into a differently initialised twin."""
    shape = event_shape(spec)
    module, t = build(spec, shape, seed=0)
    twin_module, _ = build(spec, shape, seed=7)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    twin_module.load_state_dict(torch.load(buffer, weights_only=True))
    twin = twin_module.condition(context_for(spec, shape, seed=1)) if spec.conditional else twin_module
    x = points(shape)
    torch.testing.assert_close(twin._call(x), t._call(x), rtol=0, atol=0)


def uncached_inverse_is_refused_and_cached_inverse_works(spec: TransformSpec) -> None:
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = points(shape)
    with pytest.raises(NoClosedFormInverse, match="no closed-form inverse"):
        t._inverse(x)
    y = t(x)
    assert t.inv(y) is x                              # the value it produced itself: from the cache
    with pytest.raises(DGMError, match="no closed-form inverse"):
        t.inv(y.clone())                              # any other value: refused with a one-line error


def cached_and_hooked_calls_agree_with_the_plain_methods(spec: TransformSpec) -> None:
    """t(x) and t.inv(y) (cached, visible to forward hooks) compute what _call and _inverse compute."""
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = points(shape)
    y = t(x)
    torch.testing.assert_close(y, t._call(x))
    y2 = y.clone()
    torch.testing.assert_close(t.inv(y2), t._inverse(y2))


def log_det_cache_answers_its_pass_and_keeps_no_tensor_alive(spec: TransformSpec) -> None:
    """The log-det remembered by t(x) is the fresh one for that (x, y) pair, is not used for another pair, and
    the cache holds x and y weakly: once the caller drops them, nothing of the pass stays in memory."""
    shape = event_shape(spec)
    _, t = build(spec, shape)
    assert isinstance(t, FlowTransform), f"{spec.name} builds a {type(t).__name__}, not a FlowTransform"
    t._cache_size = 0                                  # torch's value cache would hold (x, y) strongly
    x = points(shape)
    y = t(x)
    torch.testing.assert_close(t.log_abs_det_jacobian(x, y), t._log_abs_det_jacobian(x, t._call(x)))
    assert t._cached_ladj(x.clone(), y) is None and t._cached_ladj(x, y.clone()) is None
    with torch.no_grad():  # with gradients the log-det's own graph saves the conditioner's inputs, until backward
        y = t(x)
    refs = t._ladj_cache[:2]
    del x, y
    gc.collect()
    assert all(ref() is None for ref in refs), f"{spec.name}'s log-det cache keeps its pass's tensors alive"


def registry_flags_match_the_transform(spec: TransformSpec) -> None:
    """Volume-preserving entries have log|det J| = 0; the other flags agree with what the class does."""
    shape = event_shape(spec)
    module, t = build(spec, shape)
    x = points(shape)
    ladj = t.log_abs_det_jacobian(x, t._call(x))
    assert torch.all(ladj == 0) == spec.volume_preserving
    assert spec.conditional == isinstance(module, ConditionalTransformModule)
    assert t.domain.event_dim == (1 if spec.event == "vector" else 3)
    assert torch.isfinite(ladj).all()


def density_on_grid(distribution, low: torch.Tensor, high: torch.Tensor, steps: int = 500) -> float:
    """Midpoint-rule integral of exp(log_prob) over the box [low, high] in 2-D."""
    axes = [low[i] + (high[i] - low[i]) * (torch.arange(steps, dtype=torch.float64) + 0.5) / steps for i in range(2)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        density = distribution.log_prob(grid).exp()
    return float(density.sum() * torch.prod((high - low) / steps))


def _box(distribution, transform) -> tuple[torch.Tensor, torch.Tensor]:
    constraint = transform.codomain
    while hasattr(constraint, "base_constraint"):
        constraint = constraint.base_constraint
    if hasattr(constraint, "lower_bound"):
        return (torch.full((2,), float(constraint.lower_bound), dtype=torch.float64),
                torch.full((2,), float(constraint.upper_bound), dtype=torch.float64))
    samples = distribution.sample((20000,))
    return samples.min(0).values - 2.0, samples.max(0).values + 2.0


def two_dimensional_density_integrates_to_one(spec: TransformSpec) -> None:
    _, t = build(spec, (2,))
    base = dist.Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)).to_event(1)
    flow = dist.TransformedDistribution(base, [t])
    torch.manual_seed(0)
    low, high = _box(flow, t)
    assert density_on_grid(flow, low, high) == pytest.approx(1.0, abs=5e-3)


def _always(spec: TransformSpec) -> bool:
    return True


def _invertible(spec: TransformSpec) -> bool:
    return spec.closed_form_inverse


#: (check, the specs it applies to), by the registry's capability flags
CHECKS: list[tuple[Callable[[TransformSpec], None], Callable[[TransformSpec], bool]]] = [
    (inverse_of_forward_and_forward_of_inverse, _invertible),
    (log_det_of_call_matches_autograd, _always),
    (log_det_of_inverse_matches_autograd, _invertible),
    (shapes_over_batch_shapes, _always),
    (declared_shapes_are_the_computed_shapes, _always),
    (batch_elements_are_transformed_independently, _always),
    (conditional_context_broadcasts_over_the_batch, lambda spec: spec.conditional),
    (every_parameter_gets_a_gradient, _always),
    (state_dict_round_trip_keeps_the_map, _always),
    (uncached_inverse_is_refused_and_cached_inverse_works, lambda spec: not spec.closed_form_inverse),
    (cached_and_hooked_calls_agree_with_the_plain_methods, _invertible),
    (registry_flags_match_the_transform, _always),
    (log_det_cache_answers_its_pass_and_keeps_no_tensor_alive, _always),
    (two_dimensional_density_integrates_to_one, lambda spec: spec.closed_form_inverse and not spec.conditional
     and spec.event == "vector" and spec.min_dim <= 2),
]


def applicable_checks(spec: TransformSpec) -> list[Callable[[TransformSpec], None]]:
    """The checks whose capability flags ``spec`` has."""
    return [check for check, applies in CHECKS if applies(spec)]


def check_transform(spec: TransformSpec) -> list[str]:
    """Run every applicable check on ``spec``; the names of those run."""
    ran = []
    for check in applicable_checks(spec):
        check(spec)
        ran.append(check.__name__)
    return ran
