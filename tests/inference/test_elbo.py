"""Our Trace_ELBO subclass and the IWAE objective against closed forms, Pyro, and hand-written bounds."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, RenyiELBO, Trace_ELBO

from data.dataset import epoch_batches
from data.in_memory import InMemoryDataset
from data.specs import DATASETS
from inference.objectives.elbo import AnalyticKLTrace_ELBO
from inference.objectives.iwae import IWAE_ELBO
from inference.training.config import TrainConfig
from inference.training.svi_trainer import SVITrainer
from models.vae import VAE, VAEConfig

SPEC = DATASETS["binarized_digits"]


def tiny_vae(seed: int = 0, **options) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(latent_dim=3, hidden=(16,), **options), SPEC).double()


def binary_batch(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, *SPEC.shape), 0.3, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(seed))


def test_kl_is_the_closed_form_and_recon_the_observed_log_prob() -> None:
    vae, x = tiny_vae(), binary_batch()
    objective = AnalyticKLTrace_ELBO()
    torch.manual_seed(5)
    loss = objective.differentiable_loss(vae.model, vae.guide, x)
    loc, scale = vae.encode(x)
    kl = 0.5 * (loc ** 2 + scale ** 2 - 1 - 2 * torch.log(scale)).sum()
    torch.testing.assert_close(objective.components["kl"], kl.detach())
    torch.manual_seed(5)  # the same draw of z, by hand
    z = loc + scale * torch.randn_like(loc)
    probs = torch.sigmoid(vae.decoder(z))
    recon = (x * torch.log(probs) + (1 - x) * torch.log1p(-probs)).sum()
    torch.testing.assert_close(objective.components["recon"], recon.detach())
    torch.testing.assert_close(loss.detach(), -(recon - kl).detach())


def test_expectation_matches_pyro_trace_elbo_within_standard_errors() -> None:
    vae, x = tiny_vae(), binary_batch()
    ours = AnalyticKLTrace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1)
    theirs = Trace_ELBO(num_particles=1, max_plate_nesting=1)
    ours_value = ours.loss(vae.model, vae.guide, x)
    draws = torch.tensor([theirs.loss(vae.model, vae.guide, x) for _ in range(400)], dtype=torch.float64)
    se = draws.std() / math.sqrt(draws.numel())
    assert abs(ours_value - draws.mean()) < 4 * se


def test_kl_weight_scales_only_the_kl_term() -> None:
    vae, x = tiny_vae(), binary_batch()
    objective = AnalyticKLTrace_ELBO(kl_weight=0.25)
    loss = objective.differentiable_loss(vae.model, vae.guide, x)
    torch.testing.assert_close(loss.detach(), -(objective.components["recon"] - 0.25 * objective.components["kl"]))


def test_one_trainer_step_equals_one_pyro_svi_step(tmp_path) -> None:
    """One step of the real SVI trainer (``train_epoch`` on one batch: our lean ELBO traces, loss / B,
    fused torch Adam) is pyro.infer.SVI with pyro.optim.Adam on the scaled model, parameter for parameter."""
    x = binary_batch(8)
    ours, theirs = tiny_vae(3), tiny_vae(3)
    config = TrainConfig(dataset="binarized_digits", batch_size=8, lr=1e-2, epochs=1, device="cpu")
    trainer = SVITrainer(ours, config, InMemoryDataset(SPEC, x), tmp_path, "vae", torch.device("cpu"))
    (order,) = epoch_batches(8, 8, config.seed, 1)  # the trainer's batch: x in its shuffled order
    torch.manual_seed(11)
    trainer.train_epoch(1)

    pyro.clear_param_store()

    def model(data):
        pyro.module("vae", theirs)
        with poutine.scale(scale=1.0 / data.shape[0]):
            theirs.model(data)

    def guide(data):
        pyro.module("vae", theirs)
        with poutine.scale(scale=1.0 / data.shape[0]):
            theirs.guide(data)

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=AnalyticKLTrace_ELBO())
    torch.manual_seed(11)
    svi.step(x[order])
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(a, b, msg=name)
    pyro.clear_param_store()


def hand_written_iwae(vae: VAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """L_K(x_n) = log (1/K) sum_k p(x_n|z_k) p(z_k) / q(z_k|x_n), every density written out."""
    loc, scale = vae.encode(x)
    z = loc + scale * torch.randn(k, *loc.shape, dtype=loc.dtype)
    log_q = (-0.5 * ((z - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_prior = (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    logits = vae.decoder(z)
    log_lik = (x * logits - torch.nn.functional.softplus(logits)).flatten(-3).sum(-1)
    return torch.logsumexp(log_lik + log_prior - log_q, dim=0) - math.log(k)


@pytest.mark.parametrize("k", [1, 7])
def test_iwae_equals_the_hand_written_per_example_bound(k: int) -> None:
    vae, x = tiny_vae(), binary_batch()
    torch.manual_seed(2)
    ours = IWAE_ELBO(num_particles=k).per_example_bound(vae.model, vae.guide, x)
    torch.manual_seed(2)
    torch.testing.assert_close(ours, hand_written_iwae(vae, x, k))


def test_iwae_equals_renyi_alpha_zero_for_one_example() -> None:
    """Pyro's RenyiELBO(alpha=0) bounds the whole batch jointly; for a batch of one it is L_K."""
    vae, x = tiny_vae(), binary_batch(1)
    torch.manual_seed(4)
    ours = IWAE_ELBO(num_particles=9).loss(vae.model, vae.guide, x)
    torch.manual_seed(4)
    theirs = RenyiELBO(alpha=0.0, num_particles=9, vectorize_particles=True, max_plate_nesting=1).loss(
        vae.model, vae.guide, x)
    assert ours == pytest.approx(theirs, rel=1e-10)


def test_iwae_bound_rises_with_k() -> None:
    vae, x = tiny_vae(), binary_batch(20)
    means = []
    for k in (1, 10, 100):
        torch.manual_seed(0)
        with torch.no_grad():
            bounds = torch.stack([IWAE_ELBO(k).per_example_bound(vae.model, vae.guide, x) for _ in range(20)])
        means.append(float(bounds.mean()))
    assert means[0] < means[1] < means[2]


def test_models_without_latents_give_exact_log_likelihood() -> None:
    """No latent site: recon is log p(x), KL is 0 (the maximum-likelihood path of flows and ARMs)."""
    probs = torch.full((4,), 0.3, dtype=torch.float64)
    x = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.float64)

    def model(data):
        with pyro.plate("data", data.shape[0]):
            pyro.sample("x", dist.Bernoulli(probs).to_event(1), obs=data)

    objective = AnalyticKLTrace_ELBO()
    loss = objective.differentiable_loss(model, lambda data: None, x)
    expected = (x * math.log(0.3) + (1 - x) * math.log(0.7)).sum()
    torch.testing.assert_close(loss.detach(), -expected)
    assert float(objective.components["kl"]) == 0.0


def _gamma_story(x: torch.Tensor) -> None:
    """A latent whose KL has no closed form here (Gamma prior, LogNormal guide): the Monte-Carlo branch."""
    with pyro.plate("data", x.shape[0]):
        rate = pyro.sample("rate", dist.Gamma(torch.full_like(x, 2.0), torch.ones_like(x)))
        pyro.sample("x", dist.Poisson(rate), obs=x)


def _auxiliary_guide(loc: torch.Tensor, log_scale: torch.Tensor):
    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            aux = pyro.sample("aux", dist.Normal(loc, log_scale.exp()))  # guide-only auxiliary site
            pyro.sample("rate", dist.LogNormal(aux * 0.1 + loc, log_scale.exp()))
    return guide


def _bernoulli_story(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Bernoulli(torch.full_like(x, 0.4)))
        pyro.sample("x", dist.Normal(2.0 * c, 1.0), obs=x)


def _score_function_guide(logit: torch.Tensor):
    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(logits=logit * x))
    return guide


@pytest.mark.parametrize("case", ["monte_carlo_kl_and_guide_only_site", "score_function_guide"])
def test_value_and_gradient_equal_pyro_trace_elbo_on_the_same_noise(case: str) -> None:
    """Where our ELBO has no analytic KL (and beta = 1) it is Pyro's Trace_ELBO: same loss, same gradients,
    for a Monte-Carlo KL with a guide-only auxiliary site and for a non-reparameterised (score-function)
    guide, whose surrogate our lean traces must not change. Checked on the first (validated) call and a
    later one."""
    x = torch.tensor([0.0, 1.0, 3.0, 2.0], dtype=torch.float64)
    if case == "score_function_guide":
        params = [torch.tensor(0.7, dtype=torch.float64, requires_grad=True)]
        model, guide = _bernoulli_story, _score_function_guide(params[0])
    else:
        params = [torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64, requires_grad=True),
                  torch.tensor([-0.5, -0.3, -0.8, -0.2], dtype=torch.float64, requires_grad=True)]
        model, guide = _gamma_story, _auxiliary_guide(*params)
    ours = AnalyticKLTrace_ELBO(num_particles=3, max_plate_nesting=1)
    theirs = Trace_ELBO(num_particles=3, max_plate_nesting=1)
    for call in range(2):
        results = []
        for objective in (ours, theirs):
            torch.manual_seed(11 + call)
            loss = objective.differentiable_loss(model, guide, x)
            grads = torch.autograd.grad(loss, params)
            results.append((loss.detach(), grads))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
        for g_ours, g_theirs in zip(results[0][1], results[1][1]):
            torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)


DIRECT_CASES = {
    "bernoulli": ({}, "binarized_digits"),
    "categorical": ({"likelihood": "categorical"}, "digits"),
    "logistic_mixture": ({"likelihood": "logistic_mixture", "mixture_components": 2}, "digits"),
    "iaf_posterior": ({"posterior_flow": "iaf", "flow_length": 2, "flow_context": 4, "flow_hidden": (8,)},
                      "binarized_digits"),
    "planar_posterior": ({"posterior_flow": "planar", "flow_length": 2, "flow_context": 4}, "binarized_digits"),
    "maf_prior": ({"prior_flow": "maf", "prior_flow_length": 2, "flow_hidden": (8,)}, "binarized_digits"),
}


@pytest.mark.parametrize("case", sorted(DIRECT_CASES))
def test_the_direct_elbo_path_equals_the_pyro_traces_values_and_gradients(case: str) -> None:
    """The training step's speed path (``VAE.elbo_terms``, no traces) is the Pyro program's ELBO: same loss,
    recon, KL and gradients on the same noise, for every decoder and with flow posteriors and priors."""
    options, data = DIRECT_CASES[case]
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=3, hidden=(16,), **options), DATASETS[data]).double()
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(0, DATASETS[data].levels, (6, *DATASETS[data].shape), generator=generator).double()
    results = []
    for objective in (AnalyticKLTrace_ELBO(max_plate_nesting=1, story=vae, kl_weight=0.7),
                      AnalyticKLTrace_ELBO(max_plate_nesting=1, kl_weight=0.7)):
        torch.manual_seed(5)
        loss = objective.differentiable_loss(vae.model, vae.guide, x)
        grads = torch.autograd.grad(loss, list(vae.parameters()), allow_unused=True)
        results.append((loss.detach(), dict(objective.components), grads))
    (direct, direct_parts, direct_grads), (traced, traced_parts, traced_grads) = results
    torch.testing.assert_close(direct, traced, rtol=1e-10, atol=1e-10)
    for key in ("recon", "kl"):
        torch.testing.assert_close(direct_parts[key], traced_parts[key], rtol=1e-10, atol=1e-10)
    for a, b in zip(direct_grads, traced_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_the_direct_path_is_taken_only_when_one_class_defines_program_and_elbo_terms() -> None:
    """A subclass that rewrites the Pyro program but not ``elbo_terms`` trains through the traces; the
    dequantized head (its noise site is the program's business) has no direct terms."""
    from inference.objectives.registry import objective_for

    class Rewritten(VAE):
        def model(self, x):
            return super().model(x)

    spec = DATASETS["binarized_digits"]
    assert objective_for(VAE(VAEConfig(latent_dim=2, hidden=(8,)), spec)).story is not None
    assert objective_for(Rewritten(VAEConfig(latent_dim=2, hidden=(8,)), spec)).story is None
    gaussian = VAE(VAEConfig(latent_dim=2, hidden=(8,), likelihood="gaussian"), DATASETS["digits"])
    assert gaussian.elbo_terms(torch.zeros(2, *DATASETS["digits"].shape)) is None
