"""The registry of SVI training objectives: a story's :class:`models.protocols.ObjectiveRequest` -> a loss.

A story says by name what it wants to be trained with (``training_objective()``; stories that say
nothing get the one-sample ELBO); the SVI trainer turns the request into the objective object here.
Each objective has Pyro's ELBO interface (``differentiable_loss(model, guide, x)`` summed over the batch,
``loss``, ``loss_and_grads``) and records ``components`` after each call.

    elbo   our ``AnalyticKLTrace_ELBO``: E_q[log p(x | z)] - beta KL(q || p), K particles vectorised
    iwae   ``IWAE_ELBO``: L_K = E log (1/K) sum_k p(x, z_k) / q(z_k | x)

A new objective is one file that calls :func:`register_objective`.
"""
from __future__ import annotations

from typing import Any, Callable

from core.errors import DGMError
from inference.objectives.elbo import AnalyticKLTrace_ELBO
from inference.objectives.iwae import IWAE_ELBO
from models.protocols import DirectELBO, ObjectiveRequest, RequestsObjective

#: name -> builder(request, story) -> objective (``story.max_plate_nesting`` is the plate depth)
OBJECTIVES: dict[str, Callable[[ObjectiveRequest, Any], Any]] = {}


def register_objective(name: str, build: Callable[[ObjectiveRequest, Any], Any]) -> None:
    """Make ``name`` a training objective: ``build(request, story)`` returns the loss object."""
    if name in OBJECTIVES:
        raise ValueError(f"training objective {name!r} registered twice")
    OBJECTIVES[name] = build


def request_of(model: Any) -> ObjectiveRequest:
    """What ``model`` asks to be trained with: its ``training_objective()``, else the one-sample ELBO."""
    return model.training_objective() if isinstance(model, RequestsObjective) else ObjectiveRequest()


def objective_for(model: Any) -> Any:
    """The training objective of ``model`` (a one-line error for an unknown name)."""
    request = request_of(model)
    if request.name not in OBJECTIVES:
        raise DGMError(f"unknown training objective {request.name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[request.name](request, model)


def validation_objective_for(model: Any) -> AnalyticKLTrace_ELBO:
    """What validation reports for every SVI-trained story: the one-sample ELBO with analytic KL, split
    into recon and KL (exact log p(x) for a story without latents)."""
    return AnalyticKLTrace_ELBO(num_particles=1, max_plate_nesting=model.max_plate_nesting, story=_direct(model))


def _direct(model: Any) -> DirectELBO | None:
    """The story itself where it computes its ELBO without traces (the step's speed path), trusted only when
    ``model``, ``guide`` and ``elbo_terms`` come from one class: a subclass that rewrites the Pyro program but
    not ``elbo_terms`` trains through the traces."""
    if not isinstance(model, DirectELBO):
        return None
    owners = {_defining_class(type(model), name) for name in ("model", "guide", "elbo_terms")}
    return model if len(owners) == 1 else None


def _defining_class(cls: type, name: str) -> type:
    return next(c for c in cls.__mro__ if name in vars(c))


def kl_warmup_weight(request: ObjectiveRequest, epoch: float) -> float:
    """KL warm-up: beta = min(1, epoch / kl_warmup_epochs) at fractional ``epoch``; 1 without warm-up."""
    warmup = request.kl_warmup_epochs
    return 1.0 if warmup <= 0 else min(1.0, epoch / warmup)


def _elbo(request: ObjectiveRequest, story: Any) -> AnalyticKLTrace_ELBO:
    k = request.num_particles
    return AnalyticKLTrace_ELBO(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=story.max_plate_nesting,
                                story=_direct(story))


def _iwae(request: ObjectiveRequest, story: Any) -> IWAE_ELBO:
    return IWAE_ELBO(num_particles=request.num_particles, max_plate_nesting=story.max_plate_nesting)


register_objective("elbo", _elbo)
register_objective("iwae", _iwae)
