"""Annealed importance sampling (Neal 2001) of log p(x) for any Pyro story with continuous latents.

Path. For each example x and latent sites z on the real line, the geometric path from the prior to
the posterior (Wu et al. 2017, "On the quantitative analysis of decoder-based generative models")::

    f_t(z) = log p(z) + beta_t log p(x | z),      0 = beta_0 < beta_1 < ... < beta_T = 1

Weights. z_0 ~ p(z); for t = 1..T: log w += (beta_t - beta_{t-1}) log p(x | z_{t-1}), then z_t from an
HMC transition that leaves exp(f_t) invariant. E[w] = p(x) exactly, so ``log mean_k w_k`` over K
chains is a stochastic lower bound on log p(x) (Jensen) that tightens as T and K grow.

Transitions. Hamiltonian Monte Carlo: momentum r ~ N(0, I), ``leapfrog_steps`` leapfrog steps of
size eps, Metropolis accept with probability min(1, exp(H_0 - H_1)), H = -f_t(z) + |r|^2 / 2, per
chain. A trajectory that leaves the finite numbers is rejected.

Step sizes. Adapting a chain's eps from its own acceptances makes its kernel depend on its current
state, which breaks detailed balance and biases w: on PPCA that pushed the estimate 0.04 to 0.14
nats *above* the exact log p(x) (tests/evaluation/test_ais.py). So each example also runs ``pilot_chains``
extra chains that adapt their own eps after every transition, log eps += adapt_rate (a -
target_accept) with a the acceptance probability, and the K counted chains use, at each step, the
geometric mean of their example's pilot step sizes: a schedule independent of the counted chains,
so every counted weight stays exactly unbiased. The pilots' weights are discarded; the schedule is
returned, so that reverse AIS (``evaluation.bdmc``) can replay it backwards. ``pilot_chains=0`` or
``adapt_rate=0``: every chain keeps ``step_size``.

Vectorisation. The N examples are repeated K times along ``pyro.plate("data", N K)`` (example-major,
row n K + k is chain k of example n), so one Pyro trace (``poutine.condition`` on the latents) and
one autograd backward per leapfrog step serve every chain of every example; log p(z) and
log p(x | z) per row are the sums of the latent and the observed sites' log-probabilities over
each row's data-plate slice. Log-weights accumulate in float64. No Python loop over chains or
examples, and no host synchronisation inside the loop: everything runs on the data's device.

Latent sites not on the real line (a dequantization noise u ~ U[0, 1)^D, a discrete latent) are
not annealed: each chain draws them once from their prior and holds them fixed. The AIS weight is
then an unbiased estimate of p(x | u) for that chain's u, and E_u p(x | u) = P(x), so w is still an
unbiased estimate of P(x) and ``log mean_k w_k`` a stochastic lower bound on log P(x); it is looser
than annealing u as well (the spread of p(x | u) over u adds to the variance of w). Such sites
must not depend on the annealed ones (true of dequantization noise).

The ``guide`` is not used: AIS starts from the prior. Options: ``num_steps`` T (>= 1), ``schedule``
(``linear``: beta_t = t / T; ``sigmoid``: Grosse et al. 2015, beta_t proportional to
sigmoid(delta (2 t / T - 1)) rescaled to [0, 1], delta = 4, denser near both ends), HMC options.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import pyro.poutine as poutine
import torch
from torch.distributions import constraints

from core.config import add_prefixed_arguments, build_config, prefixed_values
from core.errors import DGMError
from evaluation.estimator_registry import Estimate, EstimateRequest, EstimatorSpec, register_estimator
from evaluation.program import Program
from evaluation.sample_passes import check_chunk_size, check_num_samples, log_mean_exp
from inference.objectives.trace_checks import ExampleUnit, check_model_trace, example_frame, scored_sites, site_log_prob
from models.protocols import DATA_PLATE

#: the prefix of the AIS options of every command (``--ais-steps``, ...)
OPTION_PREFIX = "ais"
#: AIS has no joint mode: the fix it offers for a latent shared by the examples
AIS_JOINT_FIX = "AIS anneals each example's chains: measure the joint with importance_sampled(..., joint=True)"
SCHEDULES = ("linear", "sigmoid")
#: delta of the sigmoid schedule (Grosse, Ghahramani & Adams 2015)
SIGMOID_DELTA = 4.0
#: numerical bounds of the adapted step sizes (a guard against runaway adaptation, not a tuning knob)
MIN_STEP_SIZE, MAX_STEP_SIZE = 1e-5, 2.0
#: elements of the repeated data (n K D) per chunk of examples when ``chunk_size`` is not given: the
#: autograd graph of one leapfrog step holds a few tensors of this size per network layer
ELEMENT_BUDGET = 1 << 21


@dataclass(frozen=True)
class AISOptions:
    """Annealing schedule and HMC settings (see the module docstring)."""

    num_steps: int = field(default=1000, metadata={"option": "steps", "help": "annealing steps T (>= 1)"})
    schedule: str = field(default="sigmoid", metadata={"aliases": ("--schedule",),
                                                        "help": f"inverse-temperature schedule: {' or '.join(SCHEDULES)}"})
    leapfrog_steps: int = field(default=10, metadata={"option": "leapfrog", "aliases": ("--leapfrog",),
                                                       "help": "leapfrog steps per HMC transition"})
    step_size: float = field(default=0.05, metadata={"aliases": ("--step-size",),
                                                      "help": "initial HMC step size, then adapted by the pilot chains"})
    target_accept: float = field(default=0.65, metadata={"aliases": ("--target-accept",),
                                                          "help": "acceptance rate the pilot chains adapt towards"})
    adapt_rate: float = field(default=0.1, metadata={"help": "step-size adaptation rate of the pilots (0: fixed)"})
    pilot_chains: int = field(default=4, metadata={"aliases": ("--pilot-chains",),
                                                    "help": "extra chains per example that tune the step sizes and "
                                                            "are not counted (0: fixed step size)"})

    def validate(self) -> "AISOptions":
        """One-line errors for options that make no sense; returns self."""
        def whole(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not whole(self.num_steps) or self.num_steps < 1:
            raise DGMError(f"AIS needs at least 1 annealing step, got num_steps={self.num_steps!r}")
        if self.schedule not in SCHEDULES:
            raise DGMError(f"unknown AIS schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not whole(self.leapfrog_steps) or self.leapfrog_steps < 1:
            raise DGMError(f"HMC needs at least 1 leapfrog step, got leapfrog_steps={self.leapfrog_steps!r}")
        if not (isinstance(self.step_size, (int, float)) and math.isfinite(self.step_size) and self.step_size > 0):
            raise DGMError(f"the HMC step size must be a positive number, got {self.step_size!r}")
        if not 0 < self.target_accept < 1:
            raise DGMError(f"the target acceptance rate must lie in (0, 1), got {self.target_accept!r}")
        if not (math.isfinite(self.adapt_rate) and self.adapt_rate >= 0):
            raise DGMError(f"the step-size adaptation rate must be >= 0, got {self.adapt_rate!r}")
        check_pilot_chains(self.pilot_chains)
        return self

    @property
    def pilots(self) -> int:
        """Pilot chains that actually run: none when the step sizes are not adapted."""
        return self.pilot_chains if self.adapt_rate > 0 else 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule_betas(num_steps: int, schedule: str = "sigmoid") -> torch.Tensor:
    """Inverse temperatures beta_0 = 0 < ... < beta_T = 1, float64 of shape (T + 1,).

    linear: beta_t = t / T.  sigmoid: s_t = sigmoid(delta (2 t / T - 1)), beta_t = (s_t - s_0) / (s_T - s_0)."""
    AISOptions(num_steps=num_steps, schedule=schedule).validate()
    t = torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64)
    if schedule == "linear":
        return t
    s = torch.sigmoid(SIGMOID_DELTA * (2.0 * t - 1.0))
    betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0
    return betas


def _is_real(support: Any) -> bool:
    """Whether a support is R^d (possibly reinterpreted as an event): the sites HMC anneals."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def _per_row(log_prob: torch.Tensor, dim: int, rows: int) -> torch.Tensor:
    """A site's log-probability summed to one value per data-plate row, (rows,); ``dim`` the plate's dim."""
    log_prob = log_prob.reshape((1,) * max(0, -dim - log_prob.dim()) + tuple(log_prob.shape)).movedim(dim, 0)
    return log_prob.reshape(log_prob.shape[0], -1).sum(-1).expand(rows)


def _repeat(value: torch.Tensor, times: int) -> torch.Tensor:
    """(n, ...) -> (n times, ...), each example's row repeated ``times`` times in a block."""
    return value.repeat_interleave(times, dim=0)


class AnnealingTarget:
    """The family f_beta(z) = log p(z) + beta log p(x | z) of a Pyro story over K chains per example.

    ``x`` (n, ...) is repeated K times along the data plate (M = n K rows). ``condition``: values of
    sites to observe, per example (n, ...) (BDMC's simulated observations); ``held``: values per
    example of the latent sites not on the real line (else each chain draws them from the prior).
    The latent sites on the real line are annealed; their values travel as one flat (M, d) tensor.
    """

    def __init__(self, model: Callable, x: torch.Tensor, num_chains: int, *,
                 condition: dict[str, torch.Tensor] | None = None, held: dict[str, torch.Tensor] | None = None):
        self.x = _repeat(x, num_chains)
        self.rows = self.x.shape[0]
        self.num_chains = num_chains
        observed = {name: _repeat(v, num_chains) for name, v in (condition or {}).items()}
        self.model = poutine.condition(model, data=observed) if observed else model
        with torch.no_grad():
            trace = poutine.trace(self.model).get_trace(self.x)
        check_model_trace(trace, ExampleUnit(), joint_fix=AIS_JOINT_FIX)
        self.sites: list[tuple[str, int, bool]] = []  # (name, data-plate dim, observed)
        self.annealed: list[tuple[str, torch.Size]] = []  # (name, per-row shape)
        self.held: dict[str, torch.Tensor] = {}
        start: list[torch.Tensor] = []
        for name, site in scored_sites(trace):
            self.sites.append((name, example_frame(site, ExampleUnit()).dim, bool(site["is_observed"])))
            if site["is_observed"]:
                continue
            value = site["value"]
            if value.dim() == 0 or value.shape[0] != self.rows:
                raise DGMError(f"latent site {name!r} has shape {tuple(value.shape)}: AIS needs pyro.plate("
                               f"{DATA_PLATE!r}) as its leftmost dimension (declare the data plate outermost)")
            if _is_real(site["fn"].support) and value.is_floating_point():
                self.annealed.append((name, value.shape[1:]))
                start.append(value.reshape(self.rows, -1))
            else:
                self.held[name] = _repeat(held[name], num_chains) if held and name in held else value
        if not self.annealed and not self.held:
            raise DGMError("AIS needs a model with latent variables; this model has none (its log-likelihood is exact: "
                           "use the exact estimator)")
        if not self.annealed:
            raise DGMError("AIS needs a model with latent sample sites on the real line to anneal; this model has "
                           f"none (only {', '.join(self.held)}, which AIS would hold fixed): use the importance_sampled "
                           "or exact estimators")
        #: a draw from the prior of the annealed sites, (M, d)
        self.prior_draw = torch.cat(start, dim=-1)
        self._sizes = [math.prod(shape) for _, shape in self.annealed]

    @property
    def latent_dim(self) -> int:
        return self.prior_draw.shape[-1]

    def flatten(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """{annealed site: (n, ...) per example} -> (M, d), each example's values repeated for its K chains."""
        return torch.cat([_repeat(values[name], self.num_chains).reshape(self.rows, -1) for name, _ in self.annealed], -1)

    def unflatten(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: part.reshape(self.rows, *shape)
                for (name, shape), part in zip(self.annealed, z.split(self._sizes, dim=-1))}

    def evaluate(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log p(z), log p(x | z), d log p(z) / dz, d log p(x | z) / dz) at z (M, d): shapes (M,), (M,), (M, d), (M, d).

        One forward pass; the likelihood's backward, then the (cheap) prior's on the retained graph, so
        that the gradient of any f_beta is their beta-weighted sum without another forward pass."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            data = {**self.unflatten(z), **self.held}
            trace = poutine.trace(poutine.condition(self.model, data=data)).get_trace(self.x)
            log_prior = log_lik = None
            for name, dim, observed in self.sites:
                term = _per_row(site_log_prob(trace.nodes[name]), dim, self.rows)
                if observed:
                    log_lik = term if log_lik is None else log_lik + term
                else:
                    log_prior = term if log_prior is None else log_prior + term
            assert log_prior is not None and log_lik is not None
            (grad_lik,) = torch.autograd.grad(log_lik.sum(), z, retain_graph=True, allow_unused=True)
            (grad_prior,) = torch.autograd.grad(log_prior.sum(), z, allow_unused=True)
        grad_lik = torch.zeros_like(z) if grad_lik is None else grad_lik
        grad_prior = torch.zeros_like(z) if grad_prior is None else grad_prior
        return log_prior.detach(), log_lik.detach(), grad_prior, grad_lik


@dataclass
class ChainState:
    """Per-chain HMC state: position (M, d), its log p(z), log p(x | z) (M,) and their gradients (M, d)."""

    z: torch.Tensor
    log_prior: torch.Tensor
    log_lik: torch.Tensor
    grad_prior: torch.Tensor
    grad_lik: torch.Tensor

    @classmethod
    def at(cls, target: AnnealingTarget, z: torch.Tensor) -> "ChainState":
        return cls(z.detach(), *target.evaluate(z))

    def where(self, keep_new: torch.Tensor, new: "ChainState") -> "ChainState":
        """Per chain: ``new`` where ``keep_new`` (M,) is True, else self."""
        col = keep_new[:, None]
        return ChainState(torch.where(col, new.z, self.z), torch.where(keep_new, new.log_prior, self.log_prior),
                          torch.where(keep_new, new.log_lik, self.log_lik),
                          torch.where(col, new.grad_prior, self.grad_prior), torch.where(col, new.grad_lik, self.grad_lik))


def hmc_transition(target: AnnealingTarget, state: ChainState, beta: torch.Tensor, step_size: torch.Tensor,
                   leapfrog_steps: int) -> tuple[ChainState, torch.Tensor]:
    """One HMC transition per chain leaving exp(f_beta) invariant; returns (new state, acceptance probability (M,)).

    H(z, r) = -(log p(z) + beta log p(x | z)) + |r|^2 / 2; leapfrog with per-chain ``step_size`` (M,)."""
    eps = step_size[:, None]
    r0 = torch.randn_like(state.z)
    r = r0 + 0.5 * eps * (state.grad_prior + beta * state.grad_lik)
    z = state.z
    broken = torch.zeros_like(state.log_lik, dtype=torch.bool)
    new = state
    for step in range(leapfrog_steps):
        z = z + eps * r
        # a chain whose trajectory left the finite numbers is rejected below; give the model a finite z meanwhile
        broken = broken | ~torch.isfinite(z).all(-1)
        z = torch.where(broken[:, None], state.z, z)
        new = ChainState.at(target, z)
        grad = new.grad_prior + beta * new.grad_lik
        r = r + (eps if step < leapfrog_steps - 1 else 0.5 * eps) * grad
    h0 = -(state.log_prior + beta * state.log_lik) + 0.5 * r0.pow(2).sum(-1)
    h1 = -(new.log_prior + beta * new.log_lik) + 0.5 * r.pow(2).sum(-1)
    log_accept = torch.nan_to_num(h0 - h1, nan=-math.inf).clamp(max=0.0)
    log_accept = torch.where(broken, torch.full_like(log_accept, -math.inf), log_accept)
    accept_prob = log_accept.exp()
    accepted = torch.rand_like(accept_prob) < accept_prob
    return state.where(accepted, new), accept_prob


@dataclass
class AnnealResult:
    """log w (M,) float64, final state, mean acceptance probability per chain (M,), and the counted chains'
    step sizes, (n, transitions): column j is the step size of transition j + 1 (at betas[j + 1])."""

    log_weights: torch.Tensor
    state: ChainState
    acceptance: torch.Tensor
    step_sizes: torch.Tensor


def anneal(target: AnnealingTarget, z: torch.Tensor, betas: torch.Tensor, options: AISOptions, *,
           pilot_chains: int = 0, step_sizes: torch.Tensor | None = None) -> AnnealResult:
    """Run every chain through the inverse temperatures ``betas`` (B,), starting at z (M, d).

    log w = sum_{i=1}^{B-1} (beta_i - beta_{i-1}) log p(x | z_{i-1}), where z_i is an HMC transition at
    beta_i from z_{i-1} (none after the last beta: it would not change w). Ascending betas 0 -> 1 from
    a prior draw give forward AIS (E w = p(x)); descending 1 -> 0 from an exact posterior draw give
    reverse AIS (E w = 1 / p(x)). ``betas`` are float64; the model runs in its own dtype.

    Step sizes: the last ``pilot_chains`` of each example's chains adapt their own (module docstring);
    the others use the geometric mean of their example's pilots, or the columns of a given
    ``step_sizes`` (n, B - 2) schedule (then there are no pilots)."""
    state = ChainState.at(target, z)
    dtype, device = state.z.dtype, state.z.device
    n, chains = target.rows // target.num_chains, target.num_chains
    counted = chains - pilot_chains
    adapt = pilot_chains > 0 and options.adapt_rate > 0 and step_sizes is None
    log_w = torch.zeros(target.rows, dtype=torch.float64, device=device)
    log_eps = torch.full((n, chains), math.log(options.step_size), dtype=dtype, device=device)
    accept_sum = torch.zeros(target.rows, dtype=dtype, device=device)
    deltas = (betas[1:] - betas[:-1]).tolist()
    betas_model = betas.to(device=device, dtype=dtype)
    used: list[torch.Tensor] = []
    for i, delta in enumerate(deltas, start=1):
        log_w = log_w + delta * state.log_lik.to(torch.float64)
        if i == len(deltas):
            break
        if step_sizes is not None:
            log_eps = step_sizes[:, i - 1].to(device=device, dtype=dtype).log()[:, None].expand(n, chains)
        elif adapt:
            shared = log_eps[:, counted:].mean(-1, keepdim=True)
            log_eps = torch.cat([shared.expand(n, counted), log_eps[:, counted:]], dim=1)
        used.append(log_eps[:, 0])
        state, accept_prob = hmc_transition(target, state, betas_model[i], log_eps.reshape(-1).exp(),
                                            options.leapfrog_steps)
        accept_sum = accept_sum + accept_prob
        if adapt:
            log_eps = (log_eps + options.adapt_rate * (accept_prob.view(n, chains) - options.target_accept)
                       ).clamp(math.log(MIN_STEP_SIZE), math.log(MAX_STEP_SIZE))
    transitions = max(1, len(deltas) - 1)
    schedule = torch.stack(used, dim=1).exp() if used else log_eps.new_zeros(n, 0)
    return AnnealResult(log_w, state, accept_sum / transitions, schedule)


@dataclass
class AISResult:
    """Forward AIS over examples: log w (N, K) float64 on the CPU, mean acceptance probability of the counted
    chains (N, K), and their step-size schedule (N, T - 1) (see :class:`AnnealResult`)."""

    log_weights: torch.Tensor
    acceptance: torch.Tensor
    step_sizes: torch.Tensor

    @property
    def estimates(self) -> torch.Tensor:
        """log (1/K) sum_k w_nk, (N,) float64: the stochastic lower bound on log p(x_n)."""
        return log_mean_exp(self.log_weights)


def check_model(model: Callable, x: torch.Tensor) -> None:
    """Refuse, in one line, no examples and data the model's owner does not accept (the model's sites are
    checked on its trace, ``AnnealingTarget``)."""
    Program.of(model, None).check_data(x)


def default_chunk_size(x: torch.Tensor, num_chains: int) -> int:
    """Examples per chunk so that the repeated data (n K, D) stays under ``ELEMENT_BUDGET`` elements."""
    return max(1, min(x.shape[0], ELEMENT_BUDGET // (num_chains * max(1, x[0].numel()))))


def forward_chains(target: AnnealingTarget, num_chains: int, options: AISOptions, pilot_chains: int,
                   start: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward AIS on a target of ``num_chains + pilot_chains`` chains per example, from its prior draw (or
    ``start``): (log w (n, K) float64, acceptance (n, K), step sizes (n, T - 1)) of the K counted chains."""
    betas = schedule_betas(options.num_steps, options.schedule)
    result = anneal(target, target.prior_draw if start is None else start, betas, options, pilot_chains=pilot_chains)
    chains = num_chains + pilot_chains
    n = target.rows // chains
    return (result.log_weights.view(n, chains)[:, :num_chains], result.acceptance.view(n, chains)[:, :num_chains],
            result.step_sizes)


def run_ais(model: Callable, x: torch.Tensor, num_chains: int, options: AISOptions, chunk_size: int | None = None,
            pilot_chains: int | None = None) -> AISResult:
    """Forward AIS with K = ``num_chains`` counted chains per example of ``x`` (N, ...), in chunks of examples.

    ``pilot_chains`` overrides ``options.pilot_chains`` when given."""
    check_num_samples(num_chains)
    if pilot_chains is not None:
        options = replace(options, pilot_chains=pilot_chains)
    options.validate()
    check_model(model, x)
    check_chunk_size(chunk_size)
    pilots = options.pilots
    size = chunk_size or default_chunk_size(x, num_chains + pilots)
    weights, acceptance, steps = [], [], []
    for start in range(0, x.shape[0], size):
        xc = x[start:start + size]
        lw, acc, eps = forward_chains(AnnealingTarget(model, xc, num_chains + pilots), num_chains, options, pilots)
        weights.append(lw.cpu())
        acceptance.append(acc.to("cpu", torch.float64))
        steps.append(eps.to("cpu", torch.float64))
    log_w = torch.cat(weights)
    check_log_weights(log_w)
    return AISResult(log_w, torch.cat(acceptance), torch.cat(steps))


def check_pilot_chains(pilot_chains: Any) -> int:
    if isinstance(pilot_chains, bool) or not isinstance(pilot_chains, int) or pilot_chains < 0:
        raise DGMError(f"the number of pilot chains must be an integer >= 0, got {pilot_chains!r}")
    return pilot_chains


def check_log_weights(log_w: torch.Tensor) -> None:
    """NaN or +inf log-weights, or an example whose weights are all zero: one-line errors."""
    broken = torch.isnan(log_w) | (log_w == math.inf)
    if broken.any():
        bad = int(broken.any(-1).nonzero()[0])
        raise DGMError(f"NaN or +inf AIS log-weights (first at example {bad}): the model is numerically broken")
    impossible = (log_w == -math.inf).all(-1)
    if impossible.any():
        bad = int(impossible.nonzero()[0])
        raise DGMError(f"every AIS log-weight of example {bad} is -inf: the data lies outside the support of the model")


def _ais(request: EstimateRequest) -> Estimate:
    """The ``ais`` spec's run: K = ``num_samples`` counted chains per example; the settings go into the JSON."""
    options: AISOptions = request.options
    result = run_ais(request.program.model, request.x, request.num_samples, options, request.chunk_size)
    extras = {"steps": options.num_steps, "schedule": options.schedule, "leapfrog_steps": options.leapfrog_steps,
              "step_size": options.step_size, "pilot_chains": options.pilot_chains,
              "acceptance": float(result.acceptance.mean())}
    return Estimate(result.estimates, result.log_weights, extras)


def add_ais_arguments(parser: argparse.ArgumentParser) -> None:
    """The AIS options of every command (``--ais-steps``, ``--ais-schedule``, ``--ais-leapfrog``,
    ``--ais-step-size``, ``--ais-target-accept``, ``--ais-adapt-rate``, ``--ais-pilot-chains``), generated from
    :class:`AISOptions`; the older spellings (``--schedule``, ``--leapfrog``, ...) still work, hidden."""
    add_prefixed_arguments(parser, AISOptions, OPTION_PREFIX, "AIS options")


def ais_options(args: argparse.Namespace) -> AISOptions:
    """The :class:`AISOptions` of a command line parsed with :func:`add_ais_arguments`, validated."""
    return build_config(AISOptions, prefixed_values(args, AISOptions, OPTION_PREFIX))


AIS = register_estimator(EstimatorSpec(
    "ais",
    """AIS estimate of log p(x) per example, (N,) float64 nats: log (1/K) sum_k w_k over K = ``num_samples`` chains.

    The estimators' signature (``shared/CONVENTIONS.md``) with the fields of :class:`AISOptions` as keyword
    arguments (``num_steps``, ``schedule``, ``leapfrog_steps``, ``step_size``, ``target_accept``, ``adapt_rate``,
    ``pilot_chains``); ``guide`` is unused (chains start at the prior). With ``return_log_weights`` also the
    chains' log w, (N, K). A stochastic lower bound on log p(x). ``pilot_chains`` more chains per example
    tune the step sizes and are not counted (module docstring). Per example only (no joint mode).""",
    run=_ais, options=AISOptions, option_prefix=OPTION_PREFIX, default=False, default_samples=16, joint=False))
annealed_importance_sampling = AIS.function
