"""The registry of log p(x) estimators: one :class:`EstimatorSpec` per estimator drives everything.

``python -m evaluation.evaluate`` takes its ``--estimators`` choices, each estimator's options
(``--PREFIX-FIELD``, from the spec's options dataclass) and its default set from here; it groups the specs
by the sample pass they reduce (one pass of K guide samples feeds ``elbo`` and ``importance_sampled``
at that K, so their gap is paired) and runs the others themselves. The JSON and CSV writers (k-hat only
for importance-weight averages, extra fields a run returns), ``evaluation.compare`` (table order, the
headline estimate, the k-hat and gap figures) and the generic tests read the specs too.

A spec either reduces a shared pass::

    EstimatorSpec("importance_sampled", "...", proposal="guide", reduce=lambda lw, options: log_mean_exp(lw))

(``lw``: float64 log-weights (n, K) of one chunk -> estimates (n,)), or runs itself::

    EstimatorSpec("ais", "...", run=run_ais_request, options=AISOptions)

(``run(EstimateRequest) -> Estimate``). :func:`register_estimator` returns the spec with its function of the
conventions' signature (built from the spec unless it brings its own)::

    f(model, guide, x, num_samples=K, *, chunk_size=None, return_log_weights=False,
      max_plate_nesting=None, joint=False, **options)  ->  float64 (N,)  or  (estimates, log_weights (N, K))

A new estimator is one file that defines its spec and registers it, plus the import of that file in
``evaluation/__init__.py``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from core.errors import DGMError
from evaluation.program import Program
from evaluation.sample_passes import check_estimates, check_num_samples, reduce_pass
from inference.objectives.importance import Proposal


@dataclass(frozen=True)
class EstimateRequest:
    """One estimator run: the program, the data (N, ...), K, the estimator's options (or None), the chunk size,
    and whether the caller wants the log-weights (N, K)."""

    program: Program
    x: torch.Tensor
    num_samples: int
    options: Any = None
    chunk_size: int | None = None
    keep_log_weights: bool = False


@dataclass
class Estimate:
    """Estimates (N,) float64 nats; log-weights (N, K) where kept; fields an estimator adds to its JSON entry."""

    estimates: torch.Tensor
    log_weights: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def needs_latents(story: Any) -> str | None:
    """Sampling estimators apply to stories with latent variables (``None``: applies; else why not)."""
    if not story.has_latents:
        return "this model has no latent variables: its log-likelihood is exact (use --estimators exact)"
    return None


@dataclass(frozen=True)
class EstimatorSpec:
    """An estimator of log p(x) (module docstring).

    ``proposal``/``reduce``: the shared pass it reduces; or ``run``: how it runs itself. ``options``: a
    dataclass of its settings (``--PREFIX-FIELD`` options, PREFIX ``option_prefix`` or the name; validated by
    its ``validate()`` if it has one). ``applies(story)``: None, or the one-line reason it does not apply
    to a story. ``default``: in evaluate's default set where it applies. ``default_samples``: K of its
    function when not given. ``importance_weights``: its value is an average of importance weights, so k-hat
    and ESS judge it. ``uses_samples``: False when K does not matter (exact: run once, recorded at K = 1).
    ``headline_rank``: its place among a run's best-founded estimates in ``compare`` (0 first; None never).
    ``gap_to``: the estimator of the same pass it bounds from above (the IS - ELBO figure). ``joint``:
    whether it has the joint mode."""

    name: str
    description: str
    proposal: Proposal | None = None
    reduce: Callable[[torch.Tensor, Any], torch.Tensor] | None = None
    run: Callable[[EstimateRequest], Estimate] | None = None
    options: type | None = None
    option_prefix: str | None = None
    applies: Callable[[Any], str | None] = needs_latents
    default: bool = True
    default_samples: int = 1000
    importance_weights: bool = False
    uses_samples: bool = True
    headline_rank: int | None = None
    gap_to: str | None = None
    joint: bool = True
    function: Callable | None = None

    def __post_init__(self) -> None:
        if (self.run is None) == (self.proposal is None or self.reduce is None):
            raise ValueError(f"estimator {self.name!r}: give either proposal and reduce (a shared pass) or run")
        if self.options is not None and not dataclasses.is_dataclass(self.options):
            raise ValueError(f"estimator {self.name!r}: options must be a dataclass")

    @property
    def prefix(self) -> str:
        """The prefix of its command-line options."""
        return self.option_prefix or self.name

    def make_options(self, values: dict[str, Any] | None = None) -> Any:
        """Its options dataclass from ``values`` (field name -> value), validated; None without options."""
        if self.options is None:
            if values:
                raise TypeError(f"estimator {self.name!r} takes no options, got {', '.join(values)}")
            return None
        names = {f.name for f in dataclasses.fields(self.options)}
        unknown = sorted(set(values or {}) - names)
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)} of estimator {self.name!r}; it takes "
                            f"{', '.join(sorted(names))}")
        return validated(self.options(**(values or {})))

    def estimate(self, request: EstimateRequest) -> Estimate:
        """Run the estimator on ``request``; a pass-reducing spec reduces its own pass of K samples."""
        if not self.joint and not request.program.unit.per_example:
            raise DGMError(f"{self.name} measures per-example log p(x_n) and has no joint mode; measure the "
                           "joint with importance_sampled, elbo, naive_monte_carlo or exact")
        if self.run is not None:
            return self.run(request)
        assert self.reduce is not None and self.proposal is not None
        result = reduce_pass(request.program, request.x, request.num_samples, self.proposal,
                             {self.name: lambda lw: self.reduce(lw, request.options)}, chunk_size=request.chunk_size,
                             keep_log_weights=request.keep_log_weights)
        return Estimate(result.estimates[self.name], result.log_weights)


def validated(options: Any) -> Any:
    """``options.validate()`` where defined (one-line errors for values that make no sense); returns options."""
    validate = getattr(options, "validate", None)
    if callable(validate):
        validate()
    return options


def conventions_function(spec: EstimatorSpec) -> Callable:
    """The estimator as a function of the conventions' signature (module docstring)."""

    def estimator(model: Callable, guide: Callable | None, x: torch.Tensor, num_samples: int = spec.default_samples,
                  *, chunk_size: int | None = None, return_log_weights: bool = False,
                  max_plate_nesting: int | None = None, joint: bool | str = False, **options: Any):
        check_num_samples(num_samples)
        program = Program.of(model, guide, max_plate_nesting=max_plate_nesting, joint=joint)
        request = EstimateRequest(program, x, num_samples, spec.make_options(options), chunk_size,
                                  return_log_weights)
        result = spec.estimate(request)
        estimates = check_estimates(result.estimates)
        return (estimates, result.log_weights) if return_log_weights else estimates

    estimator.__name__ = estimator.__qualname__ = spec.name
    estimator.__doc__ = spec.description
    return estimator


def function_spec(name: str, function: Callable) -> EstimatorSpec:
    """A spec around a plain function of the conventions' signature, run by itself with K samples."""

    def run(request: EstimateRequest) -> Estimate:
        program = request.program
        estimates, log_w = function(program.model, program.guide, request.x, request.num_samples,
                                    chunk_size=request.chunk_size, return_log_weights=True)
        return Estimate(estimates.to(torch.float64), log_w)

    return EstimatorSpec(name, (function.__doc__ or name).strip().splitlines()[0], run=run, default=False,
                         joint=False, function=function)


class EstimatorRegistry(Mapping):
    """name -> the estimator's function (the conventions' signature); :meth:`spec` gives its spec.

    ``ESTIMATORS[name] = f`` registers a plain function (:func:`function_spec`); :func:`register_estimator`
    registers a spec."""

    def __init__(self) -> None:
        self._specs: dict[str, EstimatorSpec] = {}

    def __getitem__(self, name: str) -> Callable:
        return self._specs[name].function

    def __setitem__(self, name: str, function: Callable) -> None:
        self.register(function_spec(name, function))

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def register(self, spec: EstimatorSpec) -> EstimatorSpec:
        if spec.name in self._specs:
            raise ValueError(f"estimator {spec.name!r} registered twice")
        if spec.function is None:
            spec = dataclasses.replace(spec, function=conventions_function(spec))
        self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        """Remove an estimator (tests that register toys)."""
        del self._specs[name]

    def spec(self, name: str) -> EstimatorSpec:
        if name not in self._specs:
            raise DGMError(f"unknown estimator {name!r}; choose from {', '.join(self._specs)}")
        return self._specs[name]

    def specs(self) -> list[EstimatorSpec]:
        """Every spec, in registration order (the order of tables and of --help)."""
        return list(self._specs.values())


ESTIMATORS = EstimatorRegistry()


def register_estimator(spec: EstimatorSpec) -> EstimatorSpec:
    """Make ``spec`` an estimator of every command and test; returns it with its function."""
    return ESTIMATORS.register(spec)


def headline_order() -> list[str]:
    """Estimator names by how well-founded their estimate is (``headline_rank``), best first."""
    ranked = [s for s in ESTIMATORS.specs() if s.headline_rank is not None]
    return [s.name for s in sorted(ranked, key=lambda s: s.headline_rank)]
