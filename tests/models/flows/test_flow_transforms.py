"""The generic harness: every registered flow transform, its properties chosen by its capability flags.

Directions: ``_call`` base -> data, ``_inverse`` data -> base; ``log_abs_det_jacobian(x, y)`` is that
of ``_call``. The tests call ``_call`` and ``_inverse`` directly, so torch's cache cannot hide an error,
and compare log-dets with ``slogdet`` of autograd Jacobians of the very function computed.
"""
from __future__ import annotations

import inspect
import io

import pytest
import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch.distributions import Transform

import models.flows as flows
from core.errors import DGMError
from models.flows import TRANSFORMS, FlowTransform, NoClosedFormInverse
from tests.models.flows.flow_testing import ALL, CONTEXT_DIM, INVERTIBLE, NOT_INVERTIBLE, build, context_for, event_shape

BATCH_SHAPES = [(), (1,), (5,), (2, 3)]


def _points(shape: tuple[int, ...], batch: tuple[int, ...] = (4,), seed: int = 1, scale: float = 1.5) -> torch.Tensor:
    return scale * torch.randn(*batch, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _jacobian(fn, v: torch.Tensor) -> torch.Tensor:
    """d fn(v) / dv as a (D, D) matrix for one event v ((D,) or (C, H, W), flattened)."""
    return torch.autograd.functional.jacobian(fn, v).reshape(v.numel(), v.numel())


@pytest.mark.parametrize("name", INVERTIBLE)
def test_inverse_of_forward_and_forward_of_inverse(name):
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = _points(shape)
    torch.testing.assert_close(t._inverse(t._call(x)), x, rtol=1e-10, atol=1e-10)
    y = t._call(_points(shape, seed=2)).detach().clone()  # a generic point of the codomain
    torch.testing.assert_close(t._call(t._inverse(y)), y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ALL)
def test_log_det_of_call_matches_autograd(name):
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = _points(shape, batch=(3,))
    y = t._call(x)
    cached = t.log_abs_det_jacobian(x, y)                      # computed in the _call pass
    fresh = t.log_abs_det_jacobian(x.clone(), y.clone())       # recomputed without the cache
    for i in range(x.shape[0]):
        expected = torch.linalg.slogdet(_jacobian(t._call, x[i]))[1]
        torch.testing.assert_close(cached[i], expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(fresh[i], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", INVERTIBLE)
def test_log_det_of_inverse_matches_autograd(name):
    """The log-det computed in the _inverse pass is -log|det d_inverse/dy| of that very computation."""
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    _, t = build(spec, shape)
    y = t._call(_points(shape, batch=(3,), seed=3)).detach().clone()
    x = t._inverse(y)
    from_inverse_pass = t.log_abs_det_jacobian(x, y).detach().clone()
    for i in range(y.shape[0]):
        expected = torch.linalg.slogdet(_jacobian(t._inverse, y[i]))[1]
        torch.testing.assert_close(-from_inverse_pass[i], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("batch", BATCH_SHAPES, ids=str)
def test_shapes_over_batch_shapes(name, batch):
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    context = context_for(spec, shape, batch) if spec.conditional else None
    _, t = build(spec, shape, context=context)
    x = _points(shape, batch=batch)
    y = t._call(x)
    assert y.shape == batch + tuple(t.forward_shape(shape)) and y.dtype == torch.float64
    assert t.log_abs_det_jacobian(x, y).shape == batch
    assert t.log_abs_det_jacobian(x.clone(), y.clone()).shape == batch
    if spec.closed_form_inverse:
        x2 = t._inverse(y)
        assert x2.shape == x.shape
        assert t.log_abs_det_jacobian(x2, y).shape == batch


@pytest.mark.parametrize("name", ALL)
def test_declared_shapes_are_the_computed_shapes(name):
    """forward_shape / inverse_shape (read by TransformedDistribution) agree with what the maps return."""
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = _points(shape, batch=(2,))
    y = t._call(x)
    assert tuple(t.forward_shape(x.shape)) == tuple(y.shape)
    assert tuple(t.inverse_shape(y.shape)) == tuple(x.shape)


@pytest.mark.parametrize("name", ALL)
def test_batch_elements_are_transformed_independently(name):
    """Each example's output and log-det depend on that example alone (no mixing across the batch)."""
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = _points(shape, batch=(2, 3))
    y = t._call(x)
    ladj = t.log_abs_det_jacobian(x, y)
    for i, j in [(0, 0), (1, 2)]:
        x_one = x[i, j].clone()
        y_one = t._call(x_one)
        torch.testing.assert_close(y[i, j], y_one, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ladj[i, j], t.log_abs_det_jacobian(x_one, y_one), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in ALL if TRANSFORMS[n].conditional])
def test_conditional_context_broadcasts_over_the_batch(name):
    """One context (C,) for a batch of x, and a batch of contexts for one x, agree with the loop."""
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    module, _ = build(spec, shape)
    x = _points(shape, batch=(4,))
    contexts = context_for(spec, shape, (4,))
    y_batched = module.condition(contexts)._call(x)
    y_looped = torch.stack([module.condition(contexts[i])._call(x[i]) for i in range(4)])
    torch.testing.assert_close(y_batched, y_looped)
    assert module.condition(contexts)._call(x[0]).shape == (4, *shape)
    assert not torch.allclose(y_batched[0], module.condition(contexts[1])._call(x[0]))  # the context matters


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_gets_a_gradient(name):
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    context = context_for(spec, shape, (4,), requires_grad=True) if spec.conditional else None
    module, t = build(spec, shape, context=context)
    x = _points(shape).requires_grad_()
    y = t._call(x)
    (y.pow(2).sum() + t.log_abs_det_jacobian(x, y).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}: zero or bad gradient for {pname}"
    if context is not None:
        assert context.grad is not None and context.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_keeps_the_map(name):
    """Save with torch.save, load with weights_only=True into a differently initialised twin."""
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    module, t = build(spec, shape, seed=0)
    twin_module, _ = build(spec, shape, seed=7)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    twin_module.load_state_dict(torch.load(buffer, weights_only=True))
    twin = twin_module.condition(context_for(spec, shape, seed=1)) if spec.conditional else twin_module
    x = _points(shape)
    torch.testing.assert_close(twin._call(x), t._call(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", NOT_INVERTIBLE)
def test_uncached_inverse_is_refused_and_cached_inverse_works(name):
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = _points(shape)
    with pytest.raises(NoClosedFormInverse, match="no closed-form inverse"):
        t._inverse(x)
    y = t(x)
    assert t.inv(y) is x                              # the value it produced itself: from the cache
    with pytest.raises(DGMError, match="no closed-form inverse"):
        t.inv(y.clone())                              # any other value: refused with a one-line error


@pytest.mark.parametrize("name", INVERTIBLE)
def test_cached_and_hooked_calls_agree_with_the_plain_methods(name):
    """t(x) and t.inv(y) (cached, visible to forward hooks) compute what _call and _inverse compute."""
    spec = TRANSFORMS[name]
    shape = event_shape(spec)
    _, t = build(spec, shape)
    x = _points(shape)
    y = t(x)
    torch.testing.assert_close(y, t._call(x))
    y2 = y.clone()
    torch.testing.assert_close(t.inv(y2), t._inverse(y2))


def _density_on_grid(distribution, low: torch.Tensor, high: torch.Tensor, steps: int = 500) -> float:
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


@pytest.mark.parametrize("name", [n for n in INVERTIBLE if not TRANSFORMS[n].conditional
                                  and TRANSFORMS[n].event == "vector" and TRANSFORMS[n].min_dim <= 2])
def test_two_dimensional_density_integrates_to_one(name):
    import pyro.distributions as dist

    spec = TRANSFORMS[name]
    _, t = build(spec, (2,))
    base = dist.Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)).to_event(1)
    flow = dist.TransformedDistribution(base, [t])
    torch.manual_seed(0)
    low, high = _box(flow, t)
    assert _density_on_grid(flow, low, high) == pytest.approx(1.0, abs=5e-3)


def test_a_composed_two_dimensional_flow_integrates_to_one():
    """RealNVP couplings, a permutation, an LU map and a MAF layer stacked: still a density."""
    import pyro.distributions as dist

    parts = [build(TRANSFORMS[n], (2,), seed=i)[1] for i, n in enumerate(
        ["affine_coupling_halves", "permute_reverse", "affine_coupling_checkerboard", "lu_linear", "maf"])]
    base = dist.Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)).to_event(1)
    flow = dist.TransformedDistribution(base, parts)
    torch.manual_seed(0)
    samples = flow.sample((20000,))
    low, high = samples.min(0).values - 2.0, samples.max(0).values + 2.0
    assert _density_on_grid(flow, low, high) == pytest.approx(1.0, abs=5e-3)


def test_every_exported_transform_is_registered():
    registered = {spec.cls for spec in TRANSFORMS.values()}
    exported = [getattr(flows, n) for n in flows.__all__]
    transforms = [c for c in exported if inspect.isclass(c)
                  and (issubclass(c, Transform) or issubclass(c, ConditionalTransformModule)) and c is not FlowTransform]
    assert transforms, "models.flows exports no transform classes"
    missing = [c.__name__ for c in transforms if c not in registered]
    assert not missing, f"exported but not registered: {missing}"

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    concrete = [c for c in subclasses(FlowTransform) if c.__module__.startswith("models.flows")
                and not c.__name__.startswith("_") and c._call is not Transform._call]  # bases without a map
    assert not [c.__name__ for c in concrete if c not in registered]


def test_registry_flags_match_the_transforms():
    """Volume-preserving entries have log|det J| = 0; flags agree with what the classes do."""
    for name, spec in TRANSFORMS.items():
        shape = event_shape(spec)
        _, t = build(spec, shape)
        x = _points(shape)
        ladj = t.log_abs_det_jacobian(x, t._call(x))
        assert torch.all(ladj == 0) == spec.volume_preserving, name
        assert spec.conditional == isinstance(build(spec, shape)[0], ConditionalTransformModule), name
        assert t.domain.event_dim == (1 if spec.event == "vector" else 3), name
        assert torch.isfinite(ladj).all(), name


def test_library_code_uses_no_ready_made_transforms():
    """Pyro's and torch's ready-made transforms are oracles in tests only, never imported by the library."""
    import re
    from pathlib import Path

    forbidden = re.compile(r"(pyro|torch)\.distributions\.transforms|from (pyro|torch)\.distributions import .*transforms"
                           r"|from (pyro|torch)\.distributions\.transforms import")
    package = Path(flows.__file__).parent
    offenders = [p.name for p in package.glob("*.py") if forbidden.search(p.read_text())]
    assert list(package.glob("*.py")) and not offenders


def test_an_amortised_iaf_scores_its_own_samples_without_inverting(monkeypatch):
    """As a VAE posterior q(z | x): z = IAF_c(z0) sampled once, log q(z) from the cache, never the D-pass inverse."""
    import pyro.distributions as dist
    from pyro.distributions.conditional import ConditionalTransformedDistribution

    from models.flows.autoregressive import AffineAutoregressive

    spec = TRANSFORMS["conditional_iaf"]
    module, _ = build(spec, (5,))
    base = dist.Normal(torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)).to_event(1)
    q = ConditionalTransformedDistribution(base, [module]).condition(torch.randn(8, CONTEXT_DIM, dtype=torch.float64))
    z = q.rsample()
    assert z.shape == (8, 5)

    def refuse(self, v):
        raise AssertionError("the sequential inverse was called")

    monkeypatch.setattr(AffineAutoregressive, "inverse_t", refuse)
    log_q = q.log_prob(z)
    assert log_q.shape == (8,) and torch.isfinite(log_q).all()
