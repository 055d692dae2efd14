"""The discretized logistic mixture against a direct computation from the logistic CDF."""
from __future__ import annotations

import pytest
import torch

from core.errors import DGMError
from models.distributions.discretized_logistic_mixture import DiscretizedLogisticMixture, log1mexp


def direct_probs(logits: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    """P(x = k) for every k from the definition: sum_m pi_m [F(upper edge) - F(lower edge)] with the logistic
    CDF F = sigmoid, bins of half-width 1/(L-1) around 2k/(L-1) - 1, the outer edges at -inf and +inf.
    Shape (..., L)."""
    k = torch.arange(levels, dtype=torch.float64)
    centre = 2 * k / (levels - 1) - 1
    upper = centre + 1 / (levels - 1)
    lower = centre - 1 / (levels - 1)
    upper[-1], lower[0] = float("inf"), float("-inf")
    scale = log_scale.exp()[..., None, :]
    mass = torch.sigmoid((upper[:, None] - loc[..., None, :]) / scale) - \
        torch.sigmoid((lower[:, None] - loc[..., None, :]) / scale)  # (..., L, M)
    return (mass * logits.softmax(-1)[..., None, :]).sum(-1)


def random_params(shape: tuple[int, ...], components: int, spread: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, components, generator=g, dtype=torch.float64) * 2
    loc = torch.randn(*shape, components, generator=g, dtype=torch.float64) * spread
    log_scale = torch.rand(*shape, components, generator=g, dtype=torch.float64) * 5 - 4  # s in [e^-4, e^1]
    return logits, loc, log_scale


@pytest.mark.parametrize("levels", [2, 3, 17, 256])
@pytest.mark.parametrize("components", [1, 5])
def test_matches_direct_cdf_computation_and_sums_to_one(levels, components):
    logits, loc, log_scale = random_params((6, 4), components)
    d = DiscretizedLogisticMixture(logits, loc, log_scale, levels)
    values = d.enumerate_support()  # (L, 6, 4)
    log_p = d.log_prob(values).movedim(0, -1)  # (6, 4, L)
    reference = direct_probs(logits, loc, log_scale, levels)
    assert torch.allclose(log_p.exp(), reference, rtol=1e-9, atol=1e-12)
    assert torch.allclose(log_p.logsumexp(-1), torch.zeros(6, 4, dtype=torch.float64), atol=1e-12)


def test_edge_levels_take_the_tails():
    """A component far below the range puts its mass on level 0, far above on level L-1."""
    loc = torch.tensor([[-40.0], [40.0]], dtype=torch.float64)
    zeros = torch.zeros(2, 1, dtype=torch.float64)
    d = DiscretizedLogisticMixture(zeros, loc, zeros, 17)
    assert d.log_prob(torch.tensor([0.0, 16.0], dtype=torch.float64)).abs().max() < 1e-12


def test_stable_in_float32_far_in_the_upper_tail():
    """Both bin edges deep in the upper tail: 1 - F rounds to 0 in float32 there, the log-space form does not."""
    levels = 256
    loc = torch.tensor([-1.0, -0.9, -0.5, 0.3])  # level 255 is far above each location
    log_scale = torch.tensor([-4.0, -4.0, -5.0, -6.0])
    value = torch.tensor([200.0, 230.0, 250.0, 254.0])
    ours = DiscretizedLogisticMixture(torch.zeros(4, 1), loc[:, None], log_scale[:, None], levels).log_prob(value)
    # float64 reference through the complementary form F(a) - F(b) = F(-b) - F(-a), accurate in this tail
    c = 2 * value.double() / (levels - 1) - 1
    s = log_scale.double().exp()
    a, b = (c + 1 / (levels - 1) - loc.double()) / s, (c - 1 / (levels - 1) - loc.double()) / s
    reference = torch.log(torch.sigmoid(-b) - torch.sigmoid(-a))
    naive32 = torch.log(torch.sigmoid(a.float()) - torch.sigmoid(b.float()))
    assert torch.isinf(naive32).any()  # the direct float32 difference underflows
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours.double(), reference, rtol=1e-4)


def test_gradients_finite_for_extreme_parameters():
    loc = torch.tensor([[-50.0, 0.0, 50.0]], requires_grad=True)
    log_scale = torch.tensor([[-7.0, 10.0, 30.0]], requires_grad=True)
    logits = torch.zeros(1, 3, requires_grad=True)
    d = DiscretizedLogisticMixture(logits.expand(5, 3), loc.expand(5, 3), log_scale.expand(5, 3), 256)
    d.log_prob(torch.tensor([0.0, 1.0, 127.0, 254.0, 255.0])).sum().backward()
    for t in (loc, log_scale, logits):
        assert torch.isfinite(t.grad).all()


def test_log1mexp_accurate_on_both_branches():
    """Against series where the direct formula cancels, and the direct formula where it is accurate."""
    tiny = torch.tensor([1e-30, 1e-8], dtype=torch.float64)  # log(1 - e^-u) = log u - u/2 + u^2/24 - ...
    assert torch.allclose(log1mexp(tiny), tiny.log() - tiny / 2, rtol=1e-14)
    middle = torch.tensor([0.5, 0.7, 1.0, 2.0], dtype=torch.float64)  # no cancellation in 1 - e^-u here
    assert torch.allclose(log1mexp(middle), torch.log(1 - torch.exp(-middle)), rtol=1e-14)
    large = torch.tensor([30.0, 800.0], dtype=torch.float64)  # = -e^-u - e^-2u / 2 - ...
    assert torch.allclose(log1mexp(large), -torch.exp(-large), rtol=1e-12, atol=0)


def test_sample_frequencies_match_probabilities():
    torch.manual_seed(0)
    logits, loc, log_scale = random_params((), 3, spread=0.5)
    d = DiscretizedLogisticMixture(logits, loc, log_scale, 17)
    draws = d.sample((200_000,))
    freq = torch.bincount(draws.long(), minlength=17).double() / draws.numel()
    probs = d.log_prob(d.enumerate_support()).exp()
    assert (freq - probs).abs().max() < 0.006  # ~5 standard errors of a frequency at p = 0.25


def test_mean_expand_and_support():
    logits, loc, log_scale = random_params((3,), 2)
    d = DiscretizedLogisticMixture(logits, loc, log_scale, 17)
    probs = direct_probs(logits, loc, log_scale, 17)
    assert torch.allclose(d.mean, (probs * torch.arange(17.0, dtype=torch.float64)).sum(-1), atol=1e-10)
    e = d.expand(torch.Size([5, 3]))
    assert e.batch_shape == (5, 3) and e.log_prob(torch.zeros(5, 3, dtype=torch.float64)).shape == (5, 3)
    assert d.support.check(torch.tensor([0.0, 16.0, 17.0])).tolist() == [True, True, False]


def test_bad_arguments_are_refused():
    with pytest.raises(DGMError, match="at least 2 levels"):
        DiscretizedLogisticMixture(torch.zeros(2), torch.zeros(2), torch.zeros(2), 1)
    with pytest.raises(DGMError, match="same number of components"):
        DiscretizedLogisticMixture(torch.zeros(2), torch.zeros(3), torch.zeros(2), 4)
