"""Pre-processing of discrete images for flows, with every Jacobian accounted for, in one place.

Data x are integer levels 0..L-1 (``DatasetSpec.levels`` = L). A flow is a density of continuous
values, so (base -> data order, as the transforms are listed)::

    z ~ N(0, I)  --flow-->  w  --Logit(alpha)-->  v in [0, 1)  --Rescale(L)-->  y = x + u in [0, L)

* Uniform dequantization: y = x + u, u ~ U[0, 1)^D (a latent site of the Pyro model and guide).
  With unit bins, log P(x) = log int p(x + u) du >= E_u[log p(x + u)] (Jensen): the ELBO with
  q(u | x) = U[0, 1)^D, so ``elbo`` is this lower bound and ``importance_sampled`` with K draws rises
  to log P(x) (Theis et al. 2016; Ho et al. 2019).
* ``Rescale(L)``: y = L v. log |det dy/dv| = D log L, so a density of v on [0, 1)^D has
  log p(y) = log p(v) - D log L: the D log(levels) nats that data rescaled to [0, 1) add to the NLL.
* ``Logit(alpha)``: v = (sigmoid(w) - alpha) / (1 - 2 alpha), i.e. w = logit(alpha + (1 - 2 alpha) v)
  keeps the flow away from the infinite ends of logit(0) and logit(1) (RealNVP, section 4.1);
  log |det dv/dw| = sum_i [log sigmoid(w_i) + log sigmoid(-w_i)] - D log(1 - 2 alpha).

So the flow's log p(y) on the integer scale already includes both Jacobians, and bits/dim of the
discrete data are -log p(x + u) / (D ln 2) with no further correction.
"""
from __future__ import annotations

import math

import torch
from pyro.distributions import constraints

from core.errors import DGMError
from models.flows.base import FlowTransform
from models.flows.log_sigmoid_derivative import log_sigmoid_derivative
from models.flows.registry import register_transform


class Rescale(FlowTransform):
    """y = factor * v per coordinate; log |det dy/dv| = D log(factor)."""

    def __init__(self, factor: float):
        super().__init__(cache_size=1)
        if not factor > 0:
            raise DGMError(f"Rescale needs a positive factor, got {factor}")
        self.factor = float(factor)

    def _ladj(self, v: torch.Tensor) -> torch.Tensor:
        return v.new_full(v.shape[:-1], v.shape[-1] * math.log(self.factor))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.factor
        self._remember(x, y, self._ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = y / self.factor
        self._remember(x, y, self._ladj(y))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._ladj(x)


class Logit(FlowTransform):
    """_call: v = (sigmoid(w) - alpha) / (1 - 2 alpha); _inverse: w = logit(alpha + (1 - 2 alpha) v)."""

    def __init__(self, alpha: float = 0.05):
        super().__init__(cache_size=1)
        if not 0.0 < alpha < 0.5:
            raise DGMError(f"the logit alpha must lie in (0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def codomain(self) -> constraints.Constraint:
        """(-alpha / (1 - 2 alpha), (1 - alpha) / (1 - 2 alpha))^D, which contains [0, 1)^D."""
        span = 1.0 - 2.0 * self.alpha
        return constraints.independent(constraints.interval(-self.alpha / span, (1.0 - self.alpha) / span), 1)

    def _ladj(self, w: torch.Tensor) -> torch.Tensor:
        return log_sigmoid_derivative(w).sum(-1) - w.shape[-1] * math.log1p(-2.0 * self.alpha)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y = (torch.sigmoid(x) - self.alpha) / (1.0 - 2.0 * self.alpha)
        self._remember(x, y, self._ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        p = self.alpha + (1.0 - 2.0 * self.alpha) * y
        x = torch.logit(p)  # log p - log(1 - p), vectorised (torch's log1p is scalar code on a CPU)
        self._remember(x, y, self._ladj(x))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._ladj(x)


def preprocessing(levels: int, logit_alpha: float | None) -> list[FlowTransform]:
    """The data-side transforms, base -> data order: [Logit(alpha)] (unless None), Rescale(levels)."""
    return ([Logit(logit_alpha)] if logit_alpha is not None else []) + [Rescale(levels)]


register_transform("rescale", Rescale, lambda shape, ctx, gen: Rescale(3.5),
                   description="scaling by a constant factor (data scale <-> [0, 1))")
register_transform("logit", Logit, lambda shape, ctx, gen: Logit(0.05),
                   description="logit pre-processing with alpha, as a transform")
