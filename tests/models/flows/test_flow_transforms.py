"""The generic harness: every registered flow transform, its properties chosen by its capability flags
(``transform_checks.py``), and what the registry promises as a whole."""
from __future__ import annotations

import inspect

import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch.distributions import Transform

import models.flows as flows
from models.flows import TRANSFORMS, FlowTransform
from tests.models.flows.flow_testing import ALL, CONTEXT_DIM, build, event_shape
from tests.models.flows.transform_checks import CHECKS, density_on_grid

CASES = [(check, name) for check, applies in CHECKS for name in ALL if applies(TRANSFORMS[name])]


@pytest.mark.parametrize("check, name", CASES, ids=[f"{check.__name__}[{name}]" for check, name in CASES])
def test_every_registered_transform_has_the_properties_its_flags_declare(check, name):
    check(TRANSFORMS[name])


def test_every_check_runs_on_some_transform():
    """A check whose flags no registered transform has would test nothing."""
    assert {check for check, _ in CASES} == {check for check, _ in CHECKS}


def test_a_composed_two_dimensional_flow_integrates_to_one():
    """RealNVP couplings, a permutation, an LU map and a MAF layer stacked: still a density."""
    parts = [build(TRANSFORMS[n], (2,), seed=i)[1] for i, n in enumerate(
        ["affine_coupling_halves", "permute_reverse", "affine_coupling_checkerboard", "lu_linear", "maf"])]
    base = dist.Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)).to_event(1)
    flow = dist.TransformedDistribution(base, parts)
    torch.manual_seed(0)
    samples = flow.sample((20000,))
    low, high = samples.min(0).values - 2.0, samples.max(0).values + 2.0
    assert density_on_grid(flow, low, high) == pytest.approx(1.0, abs=5e-3)


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

    # what condition(context) of a registered conditional transform returns is tested through that entry
    conditioned = {type(build(spec, event_shape(spec))[1]) for spec in TRANSFORMS.values() if spec.conditional}
    concrete = [c for c in subclasses(FlowTransform) if c.__module__.startswith("models.flows")
                and not c.__name__.startswith("_") and not inspect.isabstract(c)
                and c._call is not Transform._call]  # bases without a map
    assert not [c.__name__ for c in concrete if c not in registered | conditioned]


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
