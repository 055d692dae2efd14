"""Our ELBO: Pyro's ``Trace_ELBO`` with analytic KL terms and the two parts reported separately.

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))
            = recon - KL

For every latent site where guide and prior are both diagonal Gaussians (``Normal`` or
``Independent(Normal)``), the KL term is computed in closed form; otherwise it is the single-sample
Monte-Carlo estimate log q(z|x) - log p(z). ``kl_weight`` (beta) scales the KL term for warm-up.
After each call, ``components`` holds the batch sums of ``recon`` and ``kl`` (nats, detached),
averaged over particles. Models without latent sites give recon = log p(x), KL = 0: exact maximum
likelihood through the same loss.
"""
from __future__ import annotations

from typing import Any

import pyro.distributions as dist
from pyro.distributions.kl import kl_divergence
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO


def _base_normal(fn: Any) -> bool:
    """True for Normal or Independent(...Normal) (the plate's expand keeps these types)."""
    while isinstance(fn, (dist.Independent, torch.distributions.Independent)):
        fn = fn.base_dist
    return isinstance(fn, (dist.Normal, torch.distributions.Normal))


def analytic_kl_applies(guide_fn: Any, model_fn: Any) -> bool:
    """Closed-form KL is used when both are diagonal Gaussians with the same event dimensions."""
    return (_base_normal(guide_fn) and _base_normal(model_fn)
            and guide_fn.event_shape == model_fn.event_shape and guide_fn.has_rsample)


class AnalyticKLTrace_ELBO(Trace_ELBO):
    """``Trace_ELBO`` with analytic Gaussian KL, a KL weight, and recon/KL reported apart."""

    def __init__(self, *args: Any, kl_weight: float = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.kl_weight = kl_weight
        self.components: dict[str, torch.Tensor] = {}

    def _reset(self) -> None:
        self.components = {"recon": torch.zeros(()), "kl": torch.zeros(())}

    def _record(self, recon: torch.Tensor, kl: torch.Tensor) -> None:
        self.components["recon"] = self.components["recon"].to(recon) + recon.detach() / self.num_particles
        self.components["kl"] = self.components["kl"].to(recon) + kl.detach() / self.num_particles

    def _split(self, model_trace: Any, guide_trace: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """recon = sum of observed log-probs; kl = sum over latent sites (closed form where possible)."""
        recon = torch.zeros(())
        kl = torch.zeros(())
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                recon = recon + site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            if analytic_kl_applies(guide_site["fn"], site["fn"]):
                term = kl_divergence(guide_site["fn"], site["fn"])
                kl = kl + scale_and_mask(term, guide_site["scale"], guide_site["mask"]).sum()
            else:
                kl = kl + guide_site["log_prob_sum"] - site["log_prob_sum"]
        for name, site in guide_trace.nodes.items():  # guide-only (auxiliary) sites
            if site["type"] == "sample" and name not in model_trace.nodes:
                kl = kl + site["log_prob_sum"]
        return recon, kl

    def _differentiable_loss_particle(self, model_trace: Any, guide_trace: Any) -> tuple[float, torch.Tensor]:
        recon, kl = self._split(model_trace, guide_trace)
        self._record(recon, kl)
        reparameterized = all(site["fn"].has_rsample for site in guide_trace.nodes.values()
                              if site["type"] == "sample" and not site["is_observed"])
        if not reparameterized:  # score-function terms: Pyro's own surrogate (no analytic KL, no beta)
            return super()._differentiable_loss_particle(model_trace, guide_trace)
        elbo = recon - self.kl_weight * kl
        return -float(elbo.detach()), -elbo

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Surrogate of -(recon - beta * KL) summed over the batch; see ``components`` afterwards."""
        self._reset()
        return super().differentiable_loss(model, guide, *args, **kwargs)

    def loss_and_grads(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        """The ``pyro.infer.SVI`` entry point: backpropagate the same surrogate, return the loss."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())

    def loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        """-(recon - beta * KL) as a float, with the same decomposition as the training loss."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))
