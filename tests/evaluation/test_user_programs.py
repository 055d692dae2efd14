"""Ordinary Pyro programs written outside the project, each with its closed-form log p(x), through every
estimator: agreement where the estimator applies, a one-line error naming the site and the fix where it
does not. Nothing in between (issue #16).

Each :class:`UserProgram` lists, for every registered estimator and for BDMC, what must happen:
``EXACT`` (equal to the closed form, 1e-6), ``MC`` (within Monte-Carlo error of it), ``BOUND`` (below it
within noise: the ELBO of an inexact guide), or a refusal: a fragment the one-line ``DGMError`` must
contain. A newly registered estimator fails :func:`test_every_program_says_what_every_estimator_does`
until its behaviour on every program is stated here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from core.errors import DGMError
from evaluation import ESTIMATORS
from evaluation.ais import AISOptions
from evaluation.bdmc import Simulation, bidirectional_monte_carlo, simulate
from evaluation.diagnostics import standard_error

EXACT, MC, BOUND = "exact", "mc", "bound"
#: samples per example of each estimator (AIS: chains)
SAMPLES = {"naive_monte_carlo": 20000, "elbo": 200, "importance_sampled": 4000, "exact": 1, "ais": 32}
AIS = {"num_steps": 250, "leapfrog_steps": 5}
#: BDMC checks a sandwich, not closeness: a shorter schedule does
BDMC = AISOptions(num_steps=100, leapfrog_steps=4)
#: mean over units of |estimate - closed form| accepted as Monte-Carlo error (nats), as tests/evaluation/test_ais.py
MC_TOLERANCE = 0.1
Z = 4.0
S = 0.5  # observation noise
N, D = 6, 3
MUS = torch.tensor([-1.0, 1.5], dtype=torch.float64)
PIS = torch.tensor([0.3, 0.7], dtype=torch.float64)
LAMBDA = 1 + D / S**2  # posterior precision of z given the D observations of the Gaussian program


@dataclass
class UserProgram:
    name: str
    model: Callable
    guide: Callable
    x: torch.Tensor
    truth: Callable[[torch.Tensor], torch.Tensor]  # closed-form log p per unit
    expect: dict[str, str]
    max_plate_nesting: int | None = None
    joint: bool | str = False
    #: samples of some estimators other than SAMPLES (AIS holding a discrete latent needs more chains)
    samples: dict[str, int] = field(default_factory=dict)
    #: log p(x_sim | held sites) of BDMC's simulation, for programs with latents AIS holds fixed
    held_truth: Callable[[Simulation], torch.Tensor] | None = None


def _data(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _gaussian_truth(x: torch.Tensor, shared: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """x_n (D,) ~ N(shift, S^2 I + shared 11^T): a latent N(0, shared) added to every coordinate."""
    d = x.shape[-1]
    cov = S**2 * torch.eye(d, dtype=torch.float64) + shared * torch.ones(d, d, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(torch.full((d,), shift, dtype=torch.float64), cov).log_prob(x)


def _mixture_truth(x: torch.Tensor, variance: float = 1.0) -> torch.Tensor:
    comps = torch.distributions.Normal(MUS, math.sqrt(variance)).log_prob(x[..., None])
    return torch.logsumexp(comps + PIS.log(), -1)


def _zero(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(())


# ---- the Gaussian program and its variants ------------------------------------------------------------
def gaussian_model(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(_zero(x), 1.0))
        pyro.sample("x", dist.Normal(z[..., None].expand(z.shape + (D,)), S).to_event(1), obs=x)


def gaussian_guide(x: torch.Tensor) -> None:
    """The exact posterior: z | x ~ N(sum(x) / (S^2 LAMBDA), 1 / LAMBDA)."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x.sum(-1) / S**2 / LAMBDA, LAMBDA**-0.5))


def subsampled_model(x: torch.Tensor) -> None:
    with pyro.plate("data", 1000, subsample=torch.arange(len(x))):
        z = pyro.sample("z", dist.Normal(_zero(x), 1.0))
        pyro.sample("x", dist.Normal(z[..., None].expand(z.shape + (D,)), S).to_event(1), obs=x)


def subsampled_guide(x: torch.Tensor) -> None:
    with pyro.plate("data", 1000, subsample=torch.arange(len(x))):
        pyro.sample("z", dist.Normal(x.sum(-1) / S**2 / LAMBDA, LAMBDA**-0.5))


def two_level_model(outer: str, inner: str, latent: str) -> Callable[[torch.Tensor], None]:
    """x (rows, columns): a latent per row shared by its columns, x ~ N(latent, S^2); plates ``outer`` over the
    rows (dim -2) and ``inner`` over the columns (dim -1), as plain functions."""
    def model(x: torch.Tensor) -> None:
        with pyro.plate(outer, x.shape[0], dim=-2):
            value = pyro.sample(latent, dist.Normal(_zero(x), 1.0))
            with pyro.plate(inner, x.shape[1], dim=-1):
                pyro.sample("x", dist.Normal(value, S), obs=x)

    return model


#: pixels inside the data plate (two plate dimensions)
nested_model = two_level_model("data", "pixels", "z")


def nested_guide(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0], dim=-2):
        pyro.sample("z", dist.Normal(x.sum(-1, keepdim=True) / S**2 / LAMBDA, LAMBDA**-0.5))


OBSERVED = torch.tensor([True, True, False])


def masked_model(x: torch.Tensor) -> None:
    """The third coordinate of every example is missing: masked out of the likelihood."""
    with pyro.plate("data", x.shape[0], dim=-2):
        z = pyro.sample("z", dist.Normal(_zero(x), 1.0))
        with pyro.plate("pixels", x.shape[1], dim=-1), poutine.mask(mask=OBSERVED):
            pyro.sample("x", dist.Normal(z, S), obs=x)


def masked_guide(x: torch.Tensor) -> None:
    precision = 1 + 2 / S**2
    with pyro.plate("data", x.shape[0], dim=-2):
        pyro.sample("z", dist.Normal(x[:, :2].sum(-1, keepdim=True) / S**2 / precision, precision**-0.5))


def nuisance_model(x: torch.Tensor) -> None:
    """A second per-example latent e that the guide below leaves out."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(_zero(x), 1.0))
        e = pyro.sample("e", dist.Normal(_zero(x), 1.0))
        pyro.sample("x", dist.Normal((z + e)[..., None].expand(z.shape + (D,)), S).to_event(1), obs=x)


def auxiliary_guide(x: torch.Tensor) -> None:
    """The exact posterior of z plus an auxiliary a the model does not have."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x.sum(-1) / S**2 / LAMBDA, LAMBDA**-0.5))
        pyro.sample("a", dist.Normal(_zero(x), 1.0))


SHIFT = 0.3


def deterministic_model(x: torch.Tensor) -> None:
    """A pyro.param, a global pyro.deterministic and a per-example one."""
    shift = pyro.param("shift", torch.tensor(SHIFT, dtype=torch.float64))
    pyro.deterministic("twice_shift", 2 * shift)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(_zero(x), 1.0))
        mean = pyro.deterministic("mean", z + shift, event_dim=0)
        pyro.sample("x", dist.Normal(mean[..., None].expand(z.shape + (D,)), S).to_event(1), obs=x)


def deterministic_guide(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal((x - SHIFT).sum(-1) / S**2 / LAMBDA, LAMBDA**-0.5))


# ---- mixtures: a discrete latent sampled by the guide, or enumerated --------------------------------
def mixture_model(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(PIS))
        pyro.sample("x", dist.Normal(MUS[c], 1.0), obs=x)


def mixture_posterior_guide(x: torch.Tensor) -> None:
    """q(c | x) = p(c | x): the exact posterior over the component."""
    logits = PIS.log() + torch.distributions.Normal(MUS, 1.0).log_prob(x[:, None])
    with pyro.plate("data", x.shape[0]):
        pyro.sample("c", dist.Categorical(logits=logits))


def enumerated_mixture_model(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(PIS), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(MUS[c], 1.0), obs=x)


def empty_guide(x: torch.Tensor) -> None:
    pass


def enumerated_continuous_model(x: torch.Tensor) -> None:
    """z continuous, c summed out: x ~ sum_c pi_c N(mu_c, 1 + S^2)."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(_zero(x), 1.0))
        c = pyro.sample("c", dist.Categorical(PIS), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(z + MUS[c], S), obs=x)


def continuous_guide(x: torch.Tensor) -> None:
    """An approximate q(z | x) (the posterior would be a mixture)."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(0.8 * (x - 0.75), 0.7))


def enumerated_in_pixels_model(x: torch.Tensor) -> None:
    """An enumerated site inside a plate nested in the data plate: refused by name."""
    with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("pixels", x.shape[1], dim=-1):
        c = pyro.sample("c", dist.Categorical(PIS), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(MUS[c], 1.0), obs=x)


# ---- latents shared by the examples -----------------------------------------------------------------
def global_model(x: torch.Tensor) -> None:
    """mu ~ N(0, 1) shared by all examples, x_n ~ N(mu, S^2)."""
    mu = pyro.sample("mu", dist.Normal(_zero(x), 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, S), obs=x)


def global_guide(x: torch.Tensor) -> None:
    precision = 1 + x.shape[0] / S**2
    pyro.sample("mu", dist.Normal(x.sum() / S**2 / precision, precision**-0.5))


#: x (G, n): a latent mu_g per group, shared by the group's n examples
grouped_model = two_level_model("groups", "data", "mu")


def grouped_guide(x: torch.Tensor) -> None:
    precision = 1 + x.shape[1] / S**2
    with pyro.plate("groups", x.shape[0], dim=-2):
        pyro.sample("mu", dist.Normal(x.sum(-1, keepdim=True) / S**2 / precision, precision**-0.5))


def _global_truth(x: torch.Tensor) -> torch.Tensor:
    return _gaussian_truth(x.reshape(1, -1))


def _grouped_truth(x: torch.Tensor) -> torch.Tensor:
    return _gaussian_truth(x)


def _grouped_joint_truth(x: torch.Tensor) -> torch.Tensor:
    return _gaussian_truth(x).sum().reshape(1)


# ---- expectations -----------------------------------------------------------------------------------
ALL_AGREE = {"naive_monte_carlo": MC, "elbo": EXACT, "importance_sampled": EXACT, "ais": MC, "bdmc": MC}
SAMPLED = "'z' is sampled"
GLOBAL = "latent site 'mu' is not inside pyro.plate('data', N)"
ON_THE_REAL_LINE = "latent sample sites on the real line"


def _x_gaussian() -> torch.Tensor:
    return 1.2 * _data(N, D)


PROGRAMS = [
    UserProgram("gaussian", gaussian_model, gaussian_guide, _x_gaussian(), _gaussian_truth,
                {**ALL_AGREE, "exact": SAMPLED}),
    UserProgram("subsample_plate", subsampled_model, subsampled_guide, _x_gaussian(), _gaussian_truth,
                {**ALL_AGREE, "exact": SAMPLED}),
    UserProgram("poutine_scale", poutine.scale(gaussian_model, scale=125.0), poutine.scale(gaussian_guide, scale=125.0),
                _x_gaussian(), _gaussian_truth, {**ALL_AGREE, "exact": SAMPLED}),
    UserProgram("nested_plates", nested_model, nested_guide, _x_gaussian(), _gaussian_truth,
                {**ALL_AGREE, "exact": SAMPLED}),
    UserProgram("nested_plates_nesting_too_small", nested_model, nested_guide, _x_gaussian(), _gaussian_truth,
                {**{name: "pass max_plate_nesting" for name in ALL_AGREE}, "exact": "pass max_plate_nesting",
                 "ais": MC, "bdmc": MC}, max_plate_nesting=1),
    UserProgram("masked_observation", masked_model, masked_guide, _x_gaussian(),
                lambda x: _gaussian_truth(x[..., :2]), {**ALL_AGREE, "exact": SAMPLED}),
    UserProgram("guide_misses_a_latent", nuisance_model, gaussian_guide, _x_gaussian(),
                lambda x: _gaussian_truth(x, shared=2.0),
                {"naive_monte_carlo": MC, "elbo": "latent site 'e' is not sampled by the guide",
                 "importance_sampled": "latent site 'e' is not sampled by the guide", "exact": "'z', 'e' are sampled",
                 "ais": MC, "bdmc": MC}),
    UserProgram("guide_only_auxiliary_site", gaussian_model, auxiliary_guide, _x_gaussian(), _gaussian_truth,
                {"naive_monte_carlo": MC, "elbo": "guide site 'a' is not in the model",
                 "importance_sampled": "guide site 'a' is not in the model", "exact": SAMPLED, "ais": MC, "bdmc": MC}),
    UserProgram("param_and_deterministic_sites", deterministic_model, deterministic_guide, _x_gaussian() + SHIFT,
                lambda x: _gaussian_truth(x, shift=SHIFT), {**ALL_AGREE, "exact": SAMPLED}),
    UserProgram("discrete_latent_sampled_by_the_guide", mixture_model, mixture_posterior_guide, 2 * _data(N),
                _mixture_truth, {"naive_monte_carlo": MC, "elbo": EXACT, "importance_sampled": EXACT,
                                 "exact": "'c' is sampled", "ais": ON_THE_REAL_LINE, "bdmc": ON_THE_REAL_LINE}),
    UserProgram("enumerated_discrete_latent", enumerated_mixture_model, empty_guide, 2 * _data(N), _mixture_truth,
                {"naive_monte_carlo": EXACT, "elbo": EXACT, "importance_sampled": EXACT, "exact": EXACT,
                 "ais": ON_THE_REAL_LINE, "bdmc": ON_THE_REAL_LINE}),
    UserProgram("enumerated_and_continuous_latents", enumerated_continuous_model, continuous_guide, 2 * _data(N),
                lambda x: _mixture_truth(x, 1 + S**2),
                {"naive_monte_carlo": MC, "elbo": BOUND, "importance_sampled": MC, "exact": SAMPLED, "ais": MC,
                 "bdmc": MC}, samples={"ais": 256, "importance_sampled": 20000},
                held_truth=lambda sim: torch.distributions.Normal(MUS[sim.held["c"]], math.sqrt(1 + S**2)).log_prob(
                    sim.observed["x"])),
    UserProgram("enumerated_inside_a_nested_plate", enumerated_in_pixels_model, empty_guide, 2 * _data(N, D),
                lambda x: _mixture_truth(x).sum(-1),
                {**{name: "enumerated site 'c' is inside pyro.plate('pixels')" for name in
                    ("naive_monte_carlo", "elbo", "importance_sampled", "exact")},
                 "ais": ON_THE_REAL_LINE, "bdmc": ON_THE_REAL_LINE}),
    UserProgram("global_latent", global_model, global_guide, 1.5 + _data(8), _global_truth,
                {**{name: GLOBAL for name in ALL_AGREE}, "exact": GLOBAL,
                 "ais": "AIS anneals each example's chains", "bdmc": "AIS anneals each example's chains"}),
    UserProgram("global_latent_joint", global_model, global_guide, 1.5 + _data(8), _global_truth,
                {"naive_monte_carlo": MC, "elbo": EXACT, "importance_sampled": EXACT, "exact": "'mu' is sampled",
                 "ais": "no joint mode", "bdmc": "AIS anneals each example's chains"}, joint=True),
    UserProgram("grouped_latents", grouped_model, grouped_guide, _data(3, 4) + torch.tensor([[1.0], [-1.0], [0.0]],
                dtype=torch.float64), _grouped_truth,
                {"naive_monte_carlo": MC, "elbo": EXACT, "importance_sampled": EXACT, "exact": "'mu' is sampled",
                 "ais": "no joint mode", "bdmc": GLOBAL}, joint="groups"),
    UserProgram("grouped_latents_joint", grouped_model, grouped_guide, _data(3, 4), _grouped_joint_truth,
                {"naive_monte_carlo": MC, "elbo": EXACT, "importance_sampled": EXACT, "exact": "'mu' is sampled",
                 "ais": "no joint mode", "bdmc": GLOBAL}, joint=True),
]
IDS = [p.name for p in PROGRAMS]
BY_NAME = {p.name: p for p in PROGRAMS}


@pytest.fixture(autouse=True)
def fresh_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def _check(expect: str, estimate: Callable[[], torch.Tensor], truth: torch.Tensor) -> None:
    if expect in (EXACT, MC, BOUND):
        est = estimate()
        assert est.dtype == torch.float64 and est.shape == truth.shape, (est.shape, truth.shape)
        error = est - truth
        if expect == EXACT:
            assert error.abs().max() < 1e-6, error
        elif expect == MC:
            assert error.abs().mean() < MC_TOLERANCE, error
        else:
            assert (error < MC_TOLERANCE).all() and error.mean() < 0, error
        return
    with pytest.raises(DGMError) as info:
        estimate()
    message = str(info.value)
    assert expect in message and "\n" not in message, message


def test_every_program_says_what_every_estimator_does():
    for program in PROGRAMS:
        assert set(program.expect) == set(ESTIMATORS) | {"bdmc"}, program.name


@pytest.mark.parametrize("estimator", [n for n in SAMPLES])
@pytest.mark.parametrize("name", IDS)
def test_estimator_on_user_program(name: str, estimator: str):
    program = BY_NAME[name]
    options = AIS if estimator == "ais" else {}
    torch.manual_seed(0)

    def estimate() -> torch.Tensor:
        k = program.samples.get(estimator, SAMPLES[estimator])
        return ESTIMATORS[estimator](program.model, program.guide, program.x, k,
                                     max_plate_nesting=program.max_plate_nesting, joint=program.joint, **options)

    _check(program.expect[estimator], estimate, program.truth(program.x))


@pytest.mark.parametrize("name", IDS)
def test_bdmc_on_user_program(name: str):
    """BDMC sandwiches the closed form of the data it simulates (lower <= log p(x_sim) <= upper within noise,
    given the held sites where AIS holds some), with a gap under half a nat at these settings; or refuses."""
    program = BY_NAME[name]
    torch.manual_seed(0)
    expect = program.expect["bdmc"]
    if expect not in (MC, EXACT, BOUND):
        with pytest.raises(DGMError) as info:
            bidirectional_monte_carlo(program.model, program.x, 8, BDMC)
        assert expect in str(info.value) and "\n" not in str(info.value), str(info.value)
        return
    sim = simulate(program.model, program.x)
    result = bidirectional_monte_carlo(program.model, program.x, 16, BDMC, simulation=sim)
    truth = program.held_truth(sim) if program.held_truth else program.truth(sim.observed["x"])
    below, above = truth - result.lower, result.upper - truth
    assert float(below.mean()) > -Z * standard_error(below) and float(above.mean()) > -Z * standard_error(above)
    assert float(result.gap.mean()) < 0.5, result.gap


def test_a_global_latent_is_refused_per_example_by_every_estimator_in_the_same_words():
    """Naive MC used to accept the global latent and return per-example marginals p(x_n) whose sum is off the
    joint; now every estimator names the site and the joint mode."""
    program = BY_NAME["global_latent"]
    messages = set()
    for name in ("naive_monte_carlo", "elbo", "importance_sampled", "exact"):
        with pytest.raises(DGMError) as info:
            ESTIMATORS[name](program.model, program.guide, program.x, 10)
        messages.add(str(info.value))
    assert len(messages) == 1 and "joint=True" in messages.pop()


def test_the_joint_of_a_global_latent_is_one_estimate_of_the_whole_data_set():
    program = BY_NAME["global_latent_joint"]
    est = ESTIMATORS["importance_sampled"](program.model, program.guide, program.x, 5, joint=True)
    assert est.shape == (1,)
    per_point = torch.distributions.Normal(0.0, math.sqrt(1 + S**2)).log_prob(program.x).sum()
    assert abs(float(est[0] - per_point)) > 1.0  # the joint is not the sum of the marginals (shared mu)


def test_inferred_plate_depth_equals_the_explicit_one_on_the_same_noise():
    program = BY_NAME["nested_plates"]
    torch.manual_seed(3)
    inferred = ESTIMATORS["elbo"](program.model, continuous_like_nested_guide, program.x, 7)
    torch.manual_seed(3)
    explicit = ESTIMATORS["elbo"](program.model, continuous_like_nested_guide, program.x, 7, max_plate_nesting=2)
    assert torch.equal(inferred, explicit)


def continuous_like_nested_guide(x: torch.Tensor) -> None:
    """An inexact guide (so that the noise shows in the ELBO)."""
    with pyro.plate("data", x.shape[0], dim=-2):
        pyro.sample("z", dist.Normal(0.5 * x.mean(-1, keepdim=True), 0.8))


def test_sequential_enumeration_and_enumerated_guide_sites_are_refused_by_name():
    def sequential(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(PIS), infer={"enumerate": "sequential"})
            pyro.sample("x", dist.Normal(MUS[c], 1.0), obs=x)

    def enumerated_guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Categorical(PIS), infer={"enumerate": "parallel"})

    x = _data(4)
    with pytest.raises(DGMError, match="site 'c' asks for sequential enumeration"):
        ESTIMATORS["importance_sampled"](sequential, empty_guide, x, 3)
    with pytest.raises(DGMError, match="guide site 'c' is marked for enumeration"):
        ESTIMATORS["importance_sampled"](mixture_model, enumerated_guide, x, 3)


def test_a_subsample_that_is_not_the_examples_given_is_refused():
    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", len(x), subsample_size=2):
            z = pyro.sample("z", dist.Normal(_zero(x), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[:2])

    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", len(x), subsample_size=2):
            pyro.sample("z", dist.Normal(_zero(x), 1.0))

    with pytest.raises(DGMError, match="a subsampled plate must cover exactly the examples given"):
        ESTIMATORS["importance_sampled"](model, guide, _data(5), 3)
