"""The variational dequantizer q(u | x) (issue #16 item 5): its support is the unit interval, log q(u | x)
is -inf (never NaN) wherever the squashing map cannot reach (u <= 0, u >= 1 - eps), finite inside,
and its own samples keep the log-density of the pass that drew them, even where a float32 sigmoid
saturates at exactly 1 - eps."""
from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints

from data.specs import DATASETS
from models.flows.density import FlowConfig, FlowDensity
from models.flows.registry import randomize_
from models.flows.sigmoid import Sigmoid

DIGITS = DATASETS["digits"]
EPS = 1e-6


def _dequantizer_q(n: int = 3) -> tuple[FlowDensity, dist.TorchDistribution]:
    torch.manual_seed(0)
    config = FlowConfig(arch="realnvp_mlp", num_layers=1, hidden=(8,), dequantization="variational", dequant_steps=2,
                        dequant_channels=4, dequant_blocks=0)
    model = FlowDensity(config, DIGITS).double()
    randomize_(model.dequantizer, torch.Generator().manual_seed(1), 0.05)
    x = torch.randint(0, DIGITS.levels, (n, *DIGITS.shape), generator=torch.Generator().manual_seed(2)).double()
    return model, model.dequantization_distribution(x)


def _base_constraint(constraint: constraints.Constraint) -> constraints.Constraint:
    while hasattr(constraint, "base_constraint"):
        constraint = constraint.base_constraint
    return constraint


def test_the_support_of_q_is_the_unit_interval() -> None:
    _, q = _dequantizer_q()
    support = q.support
    assert support.event_dim == 3
    interval = _base_constraint(support)
    assert (interval.lower_bound, interval.upper_bound) == (0.0, 1.0)
    u = q.sample((4,))
    assert support.check(u).all()
    assert not support.check(u - 1.0).any() and not support.check(u + 1.0).any()


@pytest.mark.parametrize("where", ["zero", "one_minus_eps", "between_one_minus_eps_and_one", "one", "negative"])
def test_log_q_is_minus_infinity_where_the_map_cannot_reach(where: str) -> None:
    """One pixel of example 0 is put outside (0, 1 - eps): that example's log q is -inf, the others stay finite
    and equal to their values before; gradients of the finite part stay finite."""
    model, q = _dequantizer_q()
    inside = q.sample().detach().clone()
    before = q.log_prob(inside.clone())
    assert torch.isfinite(before).all()
    value = {"zero": 0.0, "one_minus_eps": 1.0 - EPS, "between_one_minus_eps_and_one": 1.0 - EPS / 2, "one": 1.0,
             "negative": -0.25}[where]
    u = inside.clone()
    u[0, 0, 3, 4] = value
    log_q = q.log_prob(u)
    assert not torch.isnan(log_q).any()
    assert log_q[0] == -math.inf
    torch.testing.assert_close(log_q[1:], before[1:])
    log_q[1:].sum().backward()
    grads = [p.grad for p in model.dequantizer.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_the_sigmoid_inverse_of_an_unreachable_value_is_a_zero_density_not_nan() -> None:
    t = Sigmoid(EPS).double()
    y = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    y[0, 0, 1, 1] = 0.0
    x = t._inverse(y)
    ladj = t.log_abs_det_jacobian(x, y)
    assert torch.isfinite(x).all() and ladj[0] == math.inf and torch.isfinite(ladj[1])


def test_a_saturated_float32_sample_keeps_the_log_density_of_its_own_pass() -> None:
    """(1 - eps) sigmoid(v) rounds to exactly 1 - eps in float32 for v >~ 17: the drawn sample is scored from the
    cache (finite), while the same value given from outside is unreachable (-inf)."""
    base = dist.Normal(torch.full((1, 2, 2), 30.0), torch.ones(1, 2, 2)).to_event(3)
    q = dist.TransformedDistribution(base, [Sigmoid(EPS)])
    u = q.sample((5,))
    assert (u == torch.tensor(1.0 - EPS, dtype=torch.float32)).all()
    assert torch.isfinite(q.log_prob(u)).all()
    assert (q.log_prob(u.clone()) == -math.inf).all()
