"""Estimators of log p(x) per example, for any Pyro model/guide pair (nats, float64).

With K samples per example (log w of shape (n, K) from ``evaluation.sample_passes``):

    naive_monte_carlo   log (1/K) sum_k p(x | z_k),            z_k ~ p(z)       (unbiased in p, not log p)
    elbo                (1/K) sum_k log p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)   (lower bound, any K)
    importance_sampled  log (1/K) sum_k p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)   (IWAE bound L_K -> log p(x))
    exact               log p(x) of models without sampled latent sites (none, or all enumerated), or the
                        owner's closed-form ``log_marginal(x)``

Signature (``shared/CONVENTIONS.md``, keyword-only additions after it)::

    f(model, guide, x, num_samples=K, *, chunk_size=None, return_log_weights=False,
      max_plate_nesting=None, joint=False)  ->  float64 (N,)  or  (estimates (N,), log_weights (N, K))

``max_plate_nesting``: the program's plate dimensions, as Pyro's ELBOs take it (default: the owner's, when
``model`` is a story's bound method, else guessed from one trace). ``joint``: ``True`` measures the data set
as one example (the joint log p(x_1..N) of a model whose latents are shared by all examples: shape (1,)),
a plate's name each index of that grouping plate (shape (G,)). Every program goes through the rules of
``inference.objectives.trace_checks``: correct, or refused in one line naming the site and the fix.
Models with a dequantization site u in model and guide (a continuous density of discrete data, e.g.
``models.ppca`` on images) need nothing special: u is one more latent site, ``elbo`` is the
dequantization lower bound and ``importance_sampled`` the importance-sampled log P(x).

Each is an :class:`evaluation.estimator_registry.EstimatorSpec`, registered here; the sampling ones reduce
a shared pass (``evaluate`` feeds ``elbo`` and ``importance_sampled`` the same samples).
"""
from __future__ import annotations

from typing import Any

import torch

from core.errors import DGMError
from evaluation.estimator_registry import ESTIMATORS, Estimate, EstimateRequest, EstimatorSpec, register_estimator  # noqa: F401
from evaluation.sample_passes import (  # noqa: F401  (re-exported: the estimators' helpers live there)
    ELEMENT_BUDGET,
    LOG_WEIGHT_BUDGET,
    MIN_SAMPLES_PER_PASS,
    check_estimates,
    check_num_samples,
    chunks,
    examples_per_chunk,
    log_mean_exp,
    log_weight_chunks,
    reduce_pass,
    samples_per_pass,
)
from models.protocols import ExactMarginal


def has_exact(story: Any) -> bool:
    """Whether :func:`exact` applies to a story: no latent sites, or a closed-form ``log_marginal`` for its
    data (``has_log_marginal``)."""
    return not story.has_latents or (isinstance(story, ExactMarginal) and bool(story.has_log_marginal))


def _exact_applies(story: Any) -> str | None:
    if has_exact(story):
        return None
    return ("the exact estimator needs a model without latent sample sites or with a closed-form "
            "log_marginal(x); this model has neither (use importance_sampled)")


def _exact(request: EstimateRequest) -> Estimate:
    """log p(x) by the owner's ``log_marginal`` (chunks of examples), else from one trace of the model with
    every latent site summed out (refused if any is sampled)."""
    program, x = request.program, request.x
    program.check_data(x)
    owner = program.owner
    if program.unit.per_example and isinstance(owner, ExactMarginal) and not owner.has_log_marginal:
        with torch.no_grad():
            owner.log_marginal(x[:1])  # its own one-line reason, where it has one (PPCA of images: a box integral)
    marginal = program.exact_marginal()
    if marginal is not None:
        with torch.no_grad():
            est = torch.cat([marginal(x[r]).to(torch.float64).cpu() for r in chunks(x.shape[0], request.chunk_size or 1000)])
        if not torch.isfinite(est).all():
            raise DGMError("non-finite log p(x): the data lies outside the support of the model")
    else:
        est = reduce_pass(program, x, 1, "exact", {"exact": lambda lw: lw[:, 0]},
                          chunk_size=request.chunk_size).estimates["exact"]
    return Estimate(est, est[:, None].expand(-1, request.num_samples) if request.keep_log_weights else None)


naive_monte_carlo = register_estimator(EstimatorSpec(
    "naive_monte_carlo",
    "log (1/K) sum_k p(x | z_k), z_k ~ p(z): consistent, but needs K ~ exp(KL(p(z|x) || p(z))) samples.",
    proposal="prior", reduce=lambda lw, _: log_mean_exp(lw), importance_weights=True, headline_rank=3)).function

elbo = register_estimator(EstimatorSpec(
    "elbo", "(1/K) sum_k log w_k, z_k ~ q(z|x): the evidence lower bound averaged over K samples.",
    proposal="guide", reduce=lambda lw, _: lw.mean(-1), default_samples=1, headline_rank=2)).function

importance_sampled = register_estimator(EstimatorSpec(
    "importance_sampled", "log (1/K) sum_k w_k, z_k ~ q(z|x): the IWAE bound L_K, rising to log p(x) as K grows.",
    proposal="guide", reduce=lambda lw, _: log_mean_exp(lw), importance_weights=True, headline_rank=1,
    gap_to="elbo")).function

exact = register_estimator(EstimatorSpec(
    "exact", "log p(x) exactly: the observed sites of a model whose latent sites are all summed out (none, or "
    "enumerated), or the owner's closed-form log_marginal(x). K is irrelevant; log_weights repeat the value K times.",
    run=_exact, applies=_exact_applies, default_samples=1, uses_samples=False, headline_rank=0)).function
