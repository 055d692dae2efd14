"""Our ELBO: Pyro's ``Trace_ELBO`` with analytic KL terms and the two parts reported separately.

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))
            = recon - KL

For every latent site where guide and prior are both diagonal Gaussians (``Normal`` or
``Independent(Normal)``), the KL term is computed in closed form; otherwise it is the single-sample
Monte-Carlo estimate log q(z|x) - log p(z). ``kl_weight`` (beta) scales the KL term for warm-up.
After each call, ``components`` holds the batch sums of ``recon`` and ``kl`` (nats, detached),
averaged over particles. Models without latent sites give recon = log p(x), KL = 0: exact maximum
likelihood through the same loss.

Speed (the loss runs once per training step): Pyro's ``get_importance_trace`` computes every site's
log-probability (and the guide's score parts) before the loss looks at them, although an analytic KL
term needs neither log q(z | x) nor log p(z). Our traces compute only the log-probabilities the loss
uses (observed sites, and latent sites whose KL is Monte Carlo), and Pyro's model/guide validation
(``check_model_guide_match``, site shapes, enumeration) runs on the first call of each objective,
where a wrong program is refused before any step. A guide with a non-reparameterised site takes
Pyro's own path every time (its score-function surrogate needs the score parts). Values and
gradients equal ``Trace_ELBO``'s on the same noise (``tests/inference``).
"""
from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions.kl import kl_divergence
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_if_enumerated, check_model_guide_match, check_site_shape

from pyro.poutine.runtime import _PYRO_STACK

from core.errors import DGMError
from inference.objectives.trace_checks import check_guide_covers
from models.protocols import DirectELBO


def _base_normal(fn: Any) -> bool:
    """True for Normal or Independent(...Normal) (the plate's expand keeps these types)."""
    while isinstance(fn, (dist.Independent, torch.distributions.Independent)):
        fn = fn.base_dist
    return isinstance(fn, (dist.Normal, torch.distributions.Normal))


def analytic_kl_applies(guide_fn: Any, model_fn: Any) -> bool:
    """Closed-form KL is used when both are diagonal Gaussians with the same event dimensions."""
    return (_base_normal(guide_fn) and _base_normal(model_fn)
            and guide_fn.event_shape == model_fn.event_shape and guide_fn.has_rsample)


def _log_prob_sum(site: dict[str, Any]) -> torch.Tensor:
    """sum of scale * mask * log fn(value) of one sample site (what Pyro's ``compute_log_prob`` stores as
    ``log_prob_sum``), computed only when the loss needs it."""
    if "log_prob_sum" in site:
        return site["log_prob_sum"]
    log_p = scale_and_mask(site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"]),
                           site["scale"], site["mask"])
    return log_p.sum()


def _reparameterized(guide_trace: Any) -> bool:
    return all(site["fn"].has_rsample for site in guide_trace.nodes.values()
               if site["type"] == "sample" and not site["is_observed"])


class AnalyticKLTrace_ELBO(Trace_ELBO):
    """``Trace_ELBO`` with analytic Gaussian KL, a KL weight, and recon/KL reported apart.

    ``story``: a :class:`models.protocols.DirectELBO` whose ``model``/``guide`` this objective trains. With one
    particle and no Pyro handler active (no distributed noise messenger, say), its ``elbo_terms`` replace the
    two traces: the same distributions and the same noise without Pyro's per-site bookkeeping, the
    difference between our training step and a hand-written PyTorch loop. ``inference.objectives.registry``
    passes a story only when one class defines its ``model``, ``guide`` and ``elbo_terms`` together (a subclass
    that changes the program alone falls back to the traces), and the tests check every VAE configuration's
    ``elbo_terms`` against its Pyro program on the same noise, values and gradients.
    """

    def __init__(self, *args: Any, kl_weight: float = 1.0, story: DirectELBO | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.kl_weight = kl_weight
        self.components: dict[str, torch.Tensor] = {}
        self._validated = False
        self.story = story

    def _direct_terms(self, model: Any, guide: Any, args: Any, kwargs: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The story's (recon, kl) summed over the batch, when this call may take the direct path."""
        story = self.story
        if (story is None or self.num_particles != 1 or kwargs or len(args) != 1 or _PYRO_STACK
                or model != story.model or guide != story.guide):
            return None
        terms = story.elbo_terms(args[0])
        if terms is None:
            return None
        return terms[0].sum(), terms[1].sum()

    def _get_trace(self, model: Any, guide: Any, args: Any, kwargs: Any) -> tuple[Any, Any]:
        """A guide trace and the model replayed against it, with no log-probabilities computed yet
        (Pyro's full ``get_importance_trace`` for score-function guides)."""
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        validate = not self._validated and is_validation_enabled()
        if validate:
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        if validate or not _reparameterized(guide_trace):
            model_trace.compute_log_prob()
            guide_trace.compute_score_parts()
        if validate:
            check_if_enumerated(guide_trace)
            for site in model_trace.nodes.values():
                if site["type"] == "sample":
                    check_site_shape(site, self.max_plate_nesting)
            self._validated = True
        return model_trace, guide_trace

    def _reset(self) -> None:
        self.components = {"recon": torch.zeros(()), "kl": torch.zeros(())}

    def _record(self, recon: torch.Tensor, kl: torch.Tensor) -> None:
        self.components["recon"] = self.components["recon"].to(recon) + recon.detach() / self.num_particles
        self.components["kl"] = self.components["kl"].to(recon) + kl.detach() / self.num_particles

    def _split(self, model_trace: Any, guide_trace: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """recon = sum of observed log-probs; kl = sum over latent sites (closed form where possible)."""
        check_guide_covers(model_trace, guide_trace)  # the estimators' rule (trace_checks), one line with the names
        recon = torch.zeros(())
        kl = torch.zeros(())
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                recon = recon + _log_prob_sum(site)
                continue
            guide_site = guide_trace.nodes[name]
            if analytic_kl_applies(guide_site["fn"], site["fn"]):
                term = kl_divergence(guide_site["fn"], site["fn"])
                kl = kl + scale_and_mask(term, guide_site["scale"], guide_site["mask"]).sum()
            else:
                kl = kl + _log_prob_sum(guide_site) - _log_prob_sum(site)
        for name, site in guide_trace.nodes.items():  # guide-only (auxiliary) sites
            if site["type"] == "sample" and name not in model_trace.nodes:
                kl = kl + _log_prob_sum(site)
        return recon, kl

    def _particle_loss(self, model_trace: Any, guide_trace: Any) -> torch.Tensor:
        """-(recon - beta KL) of one particle as a tensor whose value is the loss and whose gradient is the
        surrogate's (for score-function guides Pyro's surrogate, without analytic KL or beta)."""
        recon, kl = self._split(model_trace, guide_trace)
        self._record(recon, kl)
        if not _reparameterized(guide_trace):
            loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
            return surrogate + (loss - surrogate.detach())
        return -(recon - self.kl_weight * kl)

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Surrogate of -(recon - beta * KL) summed over the batch; see ``components`` afterwards.

        The same value and gradient as ``Trace_ELBO.differentiable_loss`` with our particle loss, without
        its per-particle host synchronisations (a float of every particle's loss)."""
        direct = self._direct_terms(model, guide, args, kwargs)
        self._reset()
        if direct is not None:
            recon, kl = direct
            self._record(recon, kl)
            return -(recon - self.kl_weight * kl)
        total = torch.zeros(())
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            total = total + self._particle_loss(model_trace, guide_trace) / self.num_particles
        return total

    def loss_and_grads(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        """The ``pyro.infer.SVI`` entry point: backpropagate the same surrogate, return the loss."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())

    def loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        """-(recon - beta * KL) as a float, with the same decomposition as the training loss."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))
