"""One validation of a Pyro program's traces, shared by every log p(x) estimator and the training ELBO.

The estimators (``evaluation``) score a model/guide pair per *example*: log w_n = log p(x_n, z_n) -
log q(z_n | x_n) needs every site's log-probability to split into per-example terms, which it does when
each site sits inside the example plate. What one example is, is an :class:`ExampleUnit`: each index of
``pyro.plate("data", N)`` (the default), each index of a grouping plate around it, or the whole data set
(the joint log p(x_1..N) of a model whose latents are shared by all examples).

The rules, the same for naive Monte Carlo, ELBO, importance sampling, exact, AIS and BDMC; a broken rule
is one ``DGMError`` line naming the site and the fix:

====================================================  ===================================================
pattern                                               what the estimators do
====================================================  ===================================================
a site outside the example plate                      refused; a latent there is shared by the examples,
                                                      so per-example log p(x_n) is undefined: the fix
                                                      names the joint mode
the example plate nested inside another plate         refused (the examples would be pairs of indices):
                                                      the fix names the grouping plate as the unit
plates nested inside the example plate (pixels)       summed per example
the example plate used as a sequential loop           refused
a subsampled or scaled site (``subsample=``,          the scale is left out: it weights a training
``poutine.scale``)                                    objective and is not part of the density, so the
                                                      estimates are of the examples given
a masked site (``poutine.mask``, ``obs_mask``)        the mask is kept: masked terms are not scored
``pyro.deterministic``, ``pyro.param``                not scored (log-probability 0; not a sample site)
a model latent the guide does not sample              refused with the names
a guide-only (auxiliary) site                         refused: p(x, z) / q(z, a | x) is no importance
                                                      weight; add the site to the model as r(a | x, z)
an observed guide site, or a guide site the model     refused
observes
a discrete latent sampled by the guide                scored like any other site
a model-only site marked ``infer={"enumerate":        summed out exactly per example (``poutine.enum``)
"parallel"}`` (``config_enumerate``)
an enumerated site in a plate nested in the example   refused (a sum over it per example would tie the
plate; "sequential" enumeration; enumeration in the   plate's copies together); sample it in the guide
guide
====================================================  ===================================================

:func:`site_log_prob` is the per-site term every estimator uses (log fn(value), masked, unscaled).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

from core.errors import DGMError
from models.protocols import DATA_PLATE

#: the estimators' outer plate of K samples per example (left of the program's plates)
PARTICLE_PLATE = "_importance_particles"
#: the fix offered for a latent shared by the examples, in estimators that have the joint mode
JOINT_FIX = "measure the joint log p(x_1..N) with joint=True (evaluate --joint)"


@dataclass(frozen=True)
class ExampleUnit:
    """What one estimate is of: each index of ``plate`` (``"data"``: each example; another name: each group
    of examples), or with ``plate=None`` the whole data set as one example (joint log p(x_1..N))."""

    plate: str | None = DATA_PLATE

    @classmethod
    def of(cls, joint: bool | str | None) -> "ExampleUnit":
        """``joint=False``: per example; ``True``: the data set as one example; a plate name: per index of it."""
        if joint is None or joint is False:
            return cls()
        if joint is True:
            return cls(None)
        if isinstance(joint, str) and joint:
            return cls(joint)
        raise DGMError(f"joint must be False, True or the name of a grouping plate, got {joint!r}")

    @property
    def per_example(self) -> bool:
        return self.plate == DATA_PLATE

    @property
    def joint(self) -> bool | str:
        """What ``eval_<split>.json`` records: False (per example), True (the data set), or the plate's name."""
        return False if self.per_example else (True if self.plate is None else self.plate)

    def describe(self) -> str:
        """The meaning of one estimate, in words (written beside the numbers)."""
        if self.per_example:
            return f"log p(x_n) of each example n (each index of pyro.plate({DATA_PLATE!r}))"
        if self.plate is None:
            return "the joint log p(x_1..N) of all examples, the data set as one example"
        return f"the joint log-likelihood of each group of examples (each index of pyro.plate({self.plate!r}))"


def scored(site: dict[str, Any]) -> bool:
    """A sample site whose log-probability enters log p or log q: not a plate's subsample site, not a
    ``pyro.deterministic`` record."""
    return site["type"] == "sample" and not site_is_subsample(site) and not site["infer"].get("_deterministic")


def enumerated(site: dict[str, Any]) -> bool:
    """Whether ``poutine.enum`` enumerated this site (its value is the support, at a dim left of the plates)."""
    return site["infer"].get("_enumerate_dim") is not None


def scored_sites(trace: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    return ((name, site) for name, site in trace.nodes.items() if scored(site))


def masked(log_prob: torch.Tensor, mask: Any) -> torch.Tensor:
    """``log_prob`` where ``mask`` (None, a bool or a bool tensor) is True, 0 elsewhere."""
    if mask is None or mask is True:
        return log_prob
    if mask is False:
        return torch.zeros_like(log_prob)
    return scale_and_mask(log_prob, mask=mask)


def site_log_prob(site: dict[str, Any]) -> torch.Tensor:
    """log fn(value) of one sample site with its mask applied and its scale left out (see the module
    docstring), batch-shaped like the site; computed once per site and kept in the site."""
    cached = site.get("unscaled_log_prob")
    if cached is None:
        cached = masked(site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"]), site["mask"])
        site["unscaled_log_prob"] = cached
    return cached


def _plates(site: dict[str, Any]) -> list[Any]:
    """The site's plate frames, outermost first, without the estimators' particle plate."""
    return [f for f in site["cond_indep_stack"] if f.name != PARTICLE_PLATE]


def example_frame(site: dict[str, Any], unit: ExampleUnit) -> Any:
    """The frame of the unit's plate at this site (None in the joint mode)."""
    if unit.plate is None:
        return None
    return next(f for f in site["cond_indep_stack"] if f.name == unit.plate)


def _check_plates(name: str, site: dict[str, Any], unit: ExampleUnit, role: str, joint_fix: str) -> None:
    frames = _plates(site)
    names = [f.name for f in frames]
    if unit.plate is not None:
        if unit.plate not in names:
            if site["is_observed"] or role == "guide":
                raise DGMError(f"{role} site {name!r} is not inside pyro.plate({unit.plate!r}, N): per-example "
                               f"log-likelihoods need every per-example site in that plate")
            raise DGMError(f"latent site {name!r} is not inside pyro.plate({unit.plate!r}, N): a latent outside "
                           "that plate is shared by all its examples, so their separate log-likelihoods are "
                           f"undefined; put per-example sites inside the plate, or {joint_fix}")
        at = names.index(unit.plate)
        if at > 0:
            raise DGMError(f"pyro.plate({unit.plate!r}) is nested inside pyro.plate({names[0]!r}) at site {name!r}: "
                           f"the examples would be pairs of indices; measure each index of {names[0]!r} as one "
                           f"example with joint={names[0]!r}")
        if not frames[at].vectorized:
            raise DGMError(f"pyro.plate({unit.plate!r}) is a sequential loop at site {name!r}: use it as a "
                           "context manager (with pyro.plate(...):) so that examples are a tensor dimension")
    if site["infer"].get("enumerate") == "sequential":
        raise DGMError(f"site {name!r} asks for sequential enumeration: the estimators enumerate in parallel only "
                       "(infer={'enumerate': 'parallel'}), or sample it in the guide")
    if enumerated(site):
        inner = [n for n in names if n != unit.plate]
        if inner:
            raise DGMError(f"enumerated site {name!r} is inside pyro.plate({inner[0]!r}): the estimators sum an "
                           "enumerated site out once per example, not per plate entry; sample it in the guide "
                           "instead")


def check_model_trace(trace: Any, unit: ExampleUnit = ExampleUnit(), *, joint_fix: str = JOINT_FIX) -> None:
    """The model's rules (module docstring): plates, enumeration, at least one observed site."""
    observed = False
    for name, site in scored_sites(trace):
        _check_plates(name, site, unit, "observed" if site["is_observed"] else "latent", joint_fix)
        observed = observed or site["is_observed"]
    if not observed:
        raise DGMError("the model has no observed site to score: observe the data with pyro.sample(..., obs=x)")


def check_guide_covers(model_trace: Any, guide_trace: Any, hint: str = "") -> None:
    """Refuse model latents the guide does not sample (importance weights and the ELBO need q of each)."""
    missing = [name for name, site in scored_sites(model_trace)
               if not site["is_observed"] and not enumerated(site) and name not in guide_trace.nodes]
    if missing:
        names = ", ".join(map(repr, missing))
        plural = len(missing) > 1
        raise DGMError(f"the model's latent site{'s' if plural else ''} {names} {'are' if plural else 'is'} not "
                       f"sampled by the guide; sample {'them' if plural else 'it'} in the guide too{hint}")


def check_guide_trace(guide_trace: Any, model_trace: Any, unit: ExampleUnit = ExampleUnit(), *,
                      joint_fix: str = JOINT_FIX) -> None:
    """The guide's rules (module docstring), against the model's trace replayed on the guide's values."""
    for name, site in scored_sites(guide_trace):
        if site["is_observed"]:
            raise DGMError(f"guide site {name!r} is observed: a guide samples latent sites only; remove its obs=")
        if site["infer"].get("enumerate"):
            raise DGMError(f"guide site {name!r} is marked for enumeration: the estimators draw the guide's sites; "
                           "remove infer={'enumerate': ...} from the guide (mark the model's site to sum it out)")
        model_site = model_trace.nodes.get(name)
        if model_site is None or not scored(model_site):
            raise DGMError(f"guide site {name!r} is not in the model: p(x, z) / q(z, {name} | x) is no importance "
                           f"weight; add it to the model (e.g. pyro.sample({name!r}, r({name} | x, z))) or drop it "
                           "from the guide")
        if model_site["is_observed"]:
            raise DGMError(f"guide site {name!r} is observed in the model: a guide samples latent sites only")
        _check_plates(name, site, unit, "guide", joint_fix)
    check_guide_covers(model_trace, guide_trace,
                       " (a discrete one may instead be marked infer={'enumerate': 'parallel'} in the model)")


def check_no_sampled_latents(trace: Any) -> None:
    """The exact estimator: every latent site must be summed out (enumerated); none sampled."""
    sampled = [name for name, site in scored_sites(trace) if not site["is_observed"] and not enumerated(site)]
    if sampled:
        raise DGMError(f"the exact estimator needs a model without sampled latent sites (or with log_marginal(x)); "
                       f"{', '.join(map(repr, sampled))} {'are' if len(sampled) > 1 else 'is'} sampled: use "
                       "importance_sampled, or mark a discrete site infer={'enumerate': 'parallel'}")
