"""Per-example importance log-weights of any Pyro model/guide pair, vectorised over samples.

For the examples of x (what one example is: ``trace_checks.ExampleUnit``, by default each index of
``pyro.plate("data", N)``) and K samples per example:

    proposal="guide":  z_nk ~ q(z | x_n),  log w_nk = log p(x_n, z_nk) - log q(z_nk | x_n)
    proposal="prior":  z_nk ~ p(z),        log w_nk = log p(x_n | z_nk)
    proposal="exact":  no sampled latent,  log w_n  = log p(x_n)

Samples are drawn in one pass by an outer ``pyro.plate`` of size K at dim -(max_plate_nesting + 1),
left of the program's own plates (so ``max_plate_nesting`` must count them, as in Pyro's ELBOs;
:func:`guess_max_plate_nesting` finds it from one trace as they do). Model sites marked
``infer={"enumerate": "parallel"}`` that the guide does not sample are enumerated further left
(``poutine.enum``) and summed out exactly:

    log p(x_n, z_nk) = log sum_c exp( sum_sites log f_site(c, z_nk, x_n) )

Each site's log-probability (``trace_checks.site_log_prob``: masked, unscaled) is summed over the plates
nested in the example plate, giving (K, N) after the sum over enumerated values. Every trace is checked
by the shared rules of ``trace_checks``. Returns log w of shape (K, N) in the program's dtype (callers
accumulate in float64); differentiable (the IWAE objective trains through it).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Literal

import pyro
import pyro.poutine as poutine
import torch

from core.errors import DGMError
from inference.objectives.trace_checks import (
    PARTICLE_PLATE,
    ExampleUnit,
    check_guide_trace,
    check_model_trace,
    check_no_sampled_latents,
    enumerated,
    example_frame,
    scored_sites,
    site_log_prob,
)

Proposal = Literal["guide", "prior", "exact"]


def particle_dim(max_plate_nesting: int) -> int:
    """The dim of the estimators' sample plate: one left of the program's plates."""
    return -(max_plate_nesting + 1)


def vectorized(fn: Callable, num_samples: int, dim: int) -> Callable:
    """``fn`` inside ``pyro.plate(PARTICLE_PLATE, num_samples, dim=dim)``."""
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with pyro.plate(PARTICLE_PLATE, num_samples, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


@contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a block without moving the random stream (the CPU generator, and the data's GPU if any)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


@contextmanager
def readable_plate_errors(max_plate_nesting: int) -> Iterator[None]:
    """Pyro's multi-line error for a plate that collides with the sample plate, as one line with the fix."""
    try:
        yield
    except ValueError as exc:
        if "collide" not in str(exc):
            raise
        raise DGMError(f"the program's plates collide with the estimators' sample plate at dim "
                       f"{particle_dim(max_plate_nesting)}: it uses more than max_plate_nesting={max_plate_nesting} "
                       "plate dimensions; pass max_plate_nesting=<its number of plate dimensions> (as to Pyro's "
                       "ELBOs), or leave it out to have it inferred") from None


def guess_max_plate_nesting(model: Callable, guide: Callable | None, *args: Any) -> int:
    """The program's plate depth as Pyro's ELBOs guess it: the deepest vectorised plate dim of one trace of
    the guide and the model replayed on it (no particles, no enumeration; the random stream untouched).
    At least 1 (the data plate)."""
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    with poutine.block(), preserved_rng(device), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args) if guide is not None else None
        replayed = poutine.replay(model, trace=guide_trace) if guide_trace is not None else model
        model_trace = poutine.trace(replayed).get_trace(*args)
    dims = [f.dim for trace in (model_trace, guide_trace) if trace is not None
            for site in trace.nodes.values() if site["type"] == "sample"
            for f in site["cond_indep_stack"] if f.vectorized]
    return max([1] + [-d for d in dims])


def trace_guide(guide: Callable, x: torch.Tensor, num_samples: int, dim: int) -> Any:
    """The guide's trace with ``num_samples`` particles at ``dim``."""
    return poutine.trace(vectorized(guide, num_samples, dim)).get_trace(x)


def trace_model(model: Callable, x: torch.Tensor, num_samples: int, dim: int, guide_trace: Any = None,
                enumerate: bool = True) -> Any:
    """The model's trace with ``num_samples`` particles at ``dim``, replaying ``guide_trace`` when given, its
    model-only sites marked for parallel enumeration enumerated left of the particles (``enumerate=False``:
    no enumeration handler, for a program known to mark none)."""
    fn = vectorized(model, num_samples, dim)
    if guide_trace is not None:
        fn = poutine.replay(fn, trace=guide_trace)
    if enumerate:
        fn = poutine.enum(fn, first_available_dim=dim - 1)
    return poutine.trace(fn).get_trace(x)


def marks_enumeration(trace: Any) -> bool:
    """Whether any site of a model trace asks for parallel enumeration."""
    return any(site["type"] == "sample" and site["infer"].get("enumerate") == "parallel"
               for site in trace.nodes.values())


def _site_terms(site: dict[str, Any], name: str, dim: int, unit: ExampleUnit) -> torch.Tensor:
    """One site's log-probability as (E..., K or 1, U or 1): the plates other than the particle and the example
    plate summed out, E the enumerated dims (if any) left of the particles."""
    log_prob = site_log_prob(site)
    rank = -dim
    if log_prob.dim() < rank:
        log_prob = log_prob.reshape((1,) * (rank - log_prob.dim()) + tuple(log_prob.shape))
    frame = example_frame(site, unit)
    keep = {dim} if frame is None else {dim, frame.dim}
    summed = [d for d in range(dim + 1, 0) if d not in keep]
    if summed:
        log_prob = log_prob.sum(summed, keepdim=True)
    units = 1 if frame is None else log_prob.shape[frame.dim]
    return log_prob.reshape(*log_prob.shape[:log_prob.dim() - rank], log_prob.shape[dim], units)


def per_example_log_prob(trace: Any, names: Iterable[str], num_samples: int, num_units: int | None, dim: int,
                         unit: ExampleUnit = ExampleUnit()) -> torch.Tensor:
    """log prod over the sites ``names`` of their terms, per sample and example unit: (K, U).

    Enumerated dims are summed out (log-sum-exp) after all the sites' terms are added. ``num_units``: the
    number of units expected (the examples of x), or None to take it from the trace (groups)."""
    total = None
    for name in names:
        terms = _site_terms(trace.nodes[name], name, dim, unit)
        if num_units is not None and terms.shape[-1] not in (1, num_units):
            raise DGMError(f"site {name!r} has {terms.shape[-1]} entries in pyro.plate({unit.plate!r}) but there are "
                           f"{num_units} examples: a subsampled plate must cover exactly the examples given "
                           "(subsample=torch.arange(len(x)), or no subsample)")
        total = terms if total is None else total + terms
    if total is None:
        raise DGMError("the model has no sample sites to score")
    if total.dim() > 2:
        total = total.flatten(0, total.dim() - 3).logsumexp(0)
    return total.expand(num_samples, num_units if num_units is not None else total.shape[-1])


def log_weights(model: Callable, guide: Callable | None, x: torch.Tensor, num_samples: int, *,
                proposal: Proposal = "guide", max_plate_nesting: int = 1, unit: ExampleUnit = ExampleUnit(),
                guide_trace: Any = None, validate: bool = True, enumerate: bool = True) -> torch.Tensor:
    """log w of shape (K, U) for the units of ``x`` (see the module docstring): U = N examples by default.

    ``guide_trace``: the guide's values for this pass (``guide_cache.GuideCache``), instead of a trace of
    ``guide``; ``validate``: check the traces against the shared rules (the first pass of a chunk does);
    ``enumerate=False``: the model marks no site for enumeration (known from an earlier pass)."""
    return weighed_pass(model, guide, x, num_samples, proposal=proposal, max_plate_nesting=max_plate_nesting,
                        unit=unit, guide_trace=guide_trace, validate=validate, enumerate=enumerate)[0]


def weighed_pass(model: Callable, guide: Callable | None, x: torch.Tensor, num_samples: int, *,
                 proposal: Proposal = "guide", max_plate_nesting: int = 1, unit: ExampleUnit = ExampleUnit(),
                 guide_trace: Any = None, validate: bool = True, enumerate: bool = True) -> tuple[torch.Tensor, Any]:
    """:func:`log_weights` and the pass's model trace."""
    if num_samples < 1:
        raise DGMError(f"the number of samples K must be at least 1, got {num_samples}")
    dim = particle_dim(max_plate_nesting)
    units = x.shape[0] if unit.per_example else (1 if unit.plate is None else None)
    with readable_plate_errors(max_plate_nesting):
        if proposal != "guide":
            model_trace = trace_model(model, x, num_samples, dim, enumerate=enumerate)
            if validate:
                check_model_trace(model_trace, unit)
                if proposal == "exact":
                    check_no_sampled_latents(model_trace)
            names = [n for n, s in scored_sites(model_trace) if proposal == "exact" or s["is_observed"] or enumerated(s)]
            return per_example_log_prob(model_trace, names, num_samples, units, dim, unit), model_trace
        if guide_trace is None:
            guide_trace = trace_guide(guide, x, num_samples, dim)
        model_trace = trace_model(model, x, num_samples, dim, guide_trace, enumerate=enumerate)
    if validate:
        check_model_trace(model_trace, unit)
        check_guide_trace(guide_trace, model_trace, unit)
    log_p = per_example_log_prob(model_trace, [n for n, _ in scored_sites(model_trace)], num_samples, units, dim, unit)
    latent = [n for n, _ in scored_sites(guide_trace)]
    if not latent:
        return log_p, model_trace
    return log_p - per_example_log_prob(guide_trace, latent, num_samples, log_p.shape[-1], dim, unit), model_trace
