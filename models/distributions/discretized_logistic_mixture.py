"""The mixture of discretized logistics of PixelCNN++ (Salimans et al. 2017), as a Pyro distribution.

A pixel takes one of L levels k = 0..L-1. Level k is the bin [c_k - delta, c_k + delta] on [-1, 1]
with centre c_k = 2k/(L-1) - 1 and half-width delta = 1/(L-1); the first bin extends to -inf and
the last to +inf, so the L masses sum to 1. With mixture weights pi = softmax(logits), locations mu
and scales s = exp(log_scale) of M logistic components (CDF F(t) = sigmoid(t))::

    P(x = k) = sum_m pi_m [F((c_k + delta - mu_m) / s_m) - F((c_k - delta - mu_m) / s_m)]   0 < k < L-1
    P(x = 0) = sum_m pi_m  F((c_0 + delta - mu_m) / s_m)
    P(x = L-1) = sum_m pi_m [1 - F((c_{L-1} - delta - mu_m) / s_m)]

Everything is computed in log space. The interior mass uses the exact identity
sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-(a - b))) for a > b, so it stays accurate
when both a and b lie far in the same tail (where a difference of CDFs would round to 0), without
PixelCNN++'s density approximation. Values are on the data scale (integers 0..L-1); log-probabilities
are in nats.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from core.errors import DGMError

_LOG2 = math.log(2.0)


def log1mexp(u: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-u)) for u > 0, accurate for small and large u (Maechler 2012).

    Each branch sees only inputs in its own safe range, so neither produces inf/NaN gradients that
    ``torch.where`` would multiply by zero (inf * 0 = NaN).
    """
    tiny = torch.finfo(u.dtype).tiny
    small = u < _LOG2
    u_small = torch.where(small, u, torch.full_like(u, _LOG2)).clamp_min(tiny)
    u_large = torch.where(small, torch.full_like(u, _LOG2), u)
    return torch.where(small, torch.log(-torch.expm1(-u_small)), torch.log1p(-torch.exp(-u_large)))


class DiscretizedLogisticMixture(TorchDistribution):
    """P(x = k), k = 0..levels-1, as in the module docstring; batch shape = the parameters' shape minus
    the last (component) dimension, event shape ()."""

    arg_constraints: dict = {}  # parameters are unconstrained reals (log_scale, not scale)
    has_enumerate_support = True

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, levels: int,
                 validate_args: bool | None = None):
        if not isinstance(levels, int) or levels < 2:
            raise DGMError(f"a discretized logistic mixture needs at least 2 levels, got {levels!r}")
        if not (logits.shape[-1] == loc.shape[-1] == log_scale.shape[-1]):
            raise DGMError("logits, loc and log_scale must have the same number of components (last dimension)")
        shape = torch.broadcast_shapes(logits.shape, loc.shape, log_scale.shape)
        self.logits = logits.expand(shape)
        self.loc = loc.expand(shape)
        self.log_scale = log_scale.expand(shape)
        self.levels = levels
        super().__init__(batch_shape=shape[:-1], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.levels - 1)

    @property
    def num_components(self) -> int:
        return self.logits.shape[-1]

    def expand(self, batch_shape: torch.Size, _instance=None) -> "DiscretizedLogisticMixture":
        new = self._get_checked_instance(DiscretizedLogisticMixture, _instance)
        shape = torch.Size(batch_shape) + (self.num_components,)
        new.logits, new.loc = self.logits.expand(shape), self.loc.expand(shape)
        new.log_scale = self.log_scale.expand(shape)
        new.levels = self.levels
        super(DiscretizedLogisticMixture, new).__init__(torch.Size(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def component_log_mass(self, value: torch.Tensor) -> torch.Tensor:
        """log P(x = value | component m), shape (..., M): the bin mass of each logistic, stable in log space."""
        half = 1.0 / (self.levels - 1)
        centre = (2.0 * half * value - 1.0).unsqueeze(-1)
        inv_scale = torch.exp(-self.log_scale)
        upper = (centre + half - self.loc) * inv_scale  # a: standardised upper bin edge
        lower = (centre - half - self.loc) * inv_scale  # b: standardised lower bin edge
        log_cdf_upper = F.logsigmoid(upper)  # log F(a): mass of (-inf, upper edge]
        log_sf_lower = F.logsigmoid(-lower)  # log (1 - F(b)): mass of [lower edge, inf)
        # a - b = 2 delta / s exactly, without the cancellation of subtracting a and b
        log_interior = log_cdf_upper + log_sf_lower + log1mexp(2.0 * half * inv_scale)
        value = value.unsqueeze(-1)
        return torch.where(value <= 0, log_cdf_upper, torch.where(value >= self.levels - 1, log_sf_lower, log_interior))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log P(x = value) = logsumexp_m [log pi_m + log P(x = value | m)] in nats."""
        if self._validate_args:
            self._validate_sample(value)
        log_weights = torch.log_softmax(self.logits, dim=-1)
        return torch.logsumexp(log_weights + self.component_log_mass(value), dim=-1)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        values = torch.arange(self.levels, dtype=self.loc.dtype, device=self.loc.device)
        values = values.reshape((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + self.batch_shape) if expand else values

    @property
    def mean(self) -> torch.Tensor:
        """E[x] = sum_k k P(x = k), exact (the clipped edges make sum_m pi_m mu_m wrong)."""
        values = self.enumerate_support(expand=False)
        return (values * self.log_prob(values).exp()).sum(0)

    @property
    def variance(self) -> torch.Tensor:
        values = self.enumerate_support(expand=False)
        probs = self.log_prob(values).exp()
        return (values.pow(2) * probs).sum(0) - self.mean.pow(2)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Draw a component m ~ pi, then y ~ Logistic(mu_m, s_m), then the level whose bin holds y."""
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            m = torch.distributions.Categorical(logits=self.logits).sample(sample_shape)
            loc = self.loc.expand(shape + (self.num_components,)).gather(-1, m.unsqueeze(-1)).squeeze(-1)
            log_scale = self.log_scale.expand(shape + (self.num_components,)).gather(-1, m.unsqueeze(-1)).squeeze(-1)
            u = torch.rand(shape, dtype=loc.dtype, device=loc.device)  # u = 0 gives y = -inf: level 0, as it should
            y = loc + log_scale.exp() * (torch.log(u) - torch.log1p(-u))
            return torch.round((y + 1.0) * (self.levels - 1) / 2.0).clamp(0, self.levels - 1)
