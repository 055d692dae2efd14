"""VAEs with flow posteriors and flow priors: log q(z|x) against an independent change of variables, the
identity flow against the plain VAE, gradients through the flow parameters, ELBO and IWAE objectives,
the Burda preset, and one-line errors for bad options."""
from __future__ import annotations

import math

import pyro.poutine as poutine
import pytest
import torch

from core.errors import DGMError
from data.specs import DATASETS
from inference.objectives.elbo import AnalyticKLTrace_ELBO
from inference.objectives.importance import log_weights
from inference.objectives.iwae import IWAE_ELBO
from models.flows.registry import randomize_, transform_spec
from models.flows.vae_families import FAMILIES
from models.vae import PRESETS, VAE, VAEConfig
from tests.models.vae_flow_checks import (POSTERIOR_CHECKS, check_log_p_is_never_stale,
                                          check_log_p_is_the_change_of_variables)
from inference.objectives.registry import objective_for
from inference.training.optimizers import parameter_groups

SPEC = DATASETS["binarized_digits"]
LATENT = 3
FLOWS = sorted(FAMILIES["posterior"])
PRIORS = sorted(FAMILIES["prior"])
#: flows whose zero parameters are the identity map (a planar layer's u_hat constraint and a reflection never are)
IDENTITY_AT_ZERO = ["iaf", "realnvp", "sylvester_orthogonal", "sylvester_householder", "sylvester_triangular"]


def small_config(**options) -> VAEConfig:
    base = {"latent_dim": LATENT, "hidden": (16,), "flow_context": 4, "flow_hidden": (8,), "flow_length": 2,
            "sylvester_reflections": 2}
    config = VAEConfig(**{**base, **options})
    config.validate()
    return config


def flow_vae(name: str, seed: int = 0, prior: str = "none", randomize: bool = True) -> VAE:
    """A small float64 VAE whose flows have random, non-identity parameters."""
    torch.manual_seed(seed)
    vae = VAE(small_config(posterior_flow=name, prior_flow=prior), SPEC).double()
    if randomize:
        for layers in (vae.posterior_flow, vae.prior_flow):
            randomize_(layers, torch.Generator().manual_seed(seed + 1), 0.3)
    return vae


def batch(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, *SPEC.shape), 0.3, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("check", POSTERIOR_CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", FLOWS)
def test_every_posterior_family_passes_the_generic_checks(name: str, check) -> None:
    """log q(z|x) is the change of variables of the drawn sample (no inverse), the guide's trace scores z with
    it, and gradients reach the encoder's context through the flow (``vae_flow_checks``)."""
    check(flow_vae(name), batch())


@pytest.mark.parametrize("name", FLOWS)
def test_flow_length_zero_is_the_plain_vae(name: str) -> None:
    torch.manual_seed(0)
    plain = VAE(small_config(), SPEC).double()
    zero = VAE(small_config(posterior_flow=name, flow_length=0), SPEC).double()
    zero.load_state_dict(plain.state_dict())  # the same parameters, nothing more
    x = batch()
    values = []
    for vae in (plain, zero):
        torch.manual_seed(7)
        values.append(AnalyticKLTrace_ELBO().differentiable_loss(vae.model, vae.guide, x))
    torch.testing.assert_close(values[0], values[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", IDENTITY_AT_ZERO)
def test_a_zeroed_flow_reproduces_the_plain_vaes_log_weights_and_elbo(name: str) -> None:
    """With the flow's parameters zeroed the flow is the identity: the same z and log q as the Gaussian guide."""
    torch.manual_seed(0)
    plain = VAE(small_config(), SPEC).double()
    flowed = flow_vae(name, randomize=False)
    flowed.decoder.load_state_dict(plain.decoder.state_dict())
    with torch.no_grad():
        for p in flowed.posterior_flow.parameters():
            p.zero_()
        if name == "sylvester_householder":  # R = R~ = 0 makes the identity whatever Q is; Q needs v_k != 0
            for layer in flowed.posterior_flow:
                layer.head.bias[-layer._sizes()[-1]:] = 1.0
        last, plain_last = flowed.encoder.net[-1], plain.encoder.net[-1]
        last.weight[: 2 * LATENT] = plain_last.weight
        last.bias[: 2 * LATENT] = plain_last.bias
        for a, b in zip(flowed.encoder.net[:-1].parameters(), plain.encoder.net[:-1].parameters()):
            a.copy_(b)
    x = batch()
    weights = []
    for vae in (plain, flowed):
        torch.manual_seed(11)
        weights.append(log_weights(vae.model, vae.guide, x, 64))
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-12, atol=1e-10)
    # the flow guide's Monte-Carlo KL averages to the plain guide's analytic KL
    many = AnalyticKLTrace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1)
    analytic = AnalyticKLTrace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1)
    many.loss(flowed.model, flowed.guide, x)
    analytic.loss(plain.model, plain.guide, x)
    kl_mc, kl_exact = float(many.components["kl"]), float(analytic.components["kl"])
    assert kl_mc == pytest.approx(kl_exact, abs=0.1 * math.sqrt(x.shape[0] * LATENT))


@pytest.mark.parametrize("prior", PRIORS)
def test_a_flow_prior_scores_z_by_the_change_of_variables(prior: str) -> None:
    vae = flow_vae("none", prior=prior)
    check_log_p_is_the_change_of_variables(vae)
    torch.manual_seed(4)  # sampling goes base -> z through the same flow
    assert vae.sample(3).shape == (3, *SPEC.shape)


def test_every_prior_family_stacks_registered_transforms_with_closed_form_inverses() -> None:
    for prior, family in FAMILIES["prior"].items():
        spec = transform_spec(family.transform)
        assert spec.closed_form_inverse and not spec.conditional and spec.event == "vector"
        config = small_config(prior_flow=prior)
        layers = VAE(config, SPEC).prior_flow
        assert len(layers) == config.prior_flow_length and all(type(layer) is spec.cls for layer in layers), prior


def test_every_posterior_family_stacks_registered_conditional_transforms() -> None:
    for name, family in FAMILIES["posterior"].items():
        spec = transform_spec(family.transform)
        assert spec.conditional and spec.event == "vector"
        layers = VAE(small_config(posterior_flow=name), SPEC).posterior_flow
        assert layers and all(type(layer) is spec.cls for layer in layers), name


@pytest.mark.parametrize("kept", [False, True], ids=["new prior", "kept prior"])
@pytest.mark.parametrize("prior", PRIORS)
def test_log_p_of_the_same_z_after_a_weight_update_is_the_new_weights_value(prior: str, kept: bool) -> None:
    """Issue #16 item 6: the flow prior keeps no value cache (``vae_flow_checks.check_log_p_is_never_stale``)."""
    check_log_p_is_never_stale(flow_vae("none", prior=prior), kept)


def fresh_pair(prior: str) -> tuple[VAE, VAE]:
    """A plain VAE and a VAE with a freshly built flow prior (the library's initialisation, nothing
    zeroed by hand) sharing the plain VAE's encoder and decoder weights, in float64."""
    torch.manual_seed(0)
    plain = VAE(small_config(), SPEC).double()
    torch.manual_seed(1)  # other encoder and decoder draws, then overwritten: only the prior is the flow's own
    flowed = VAE(small_config(prior_flow=prior), SPEC).double()
    missing, unexpected = flowed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith("prior_flow.") for key in missing)
    return plain, flowed


@pytest.mark.parametrize("prior", PRIORS)
def test_a_fresh_flow_prior_reproduces_the_plain_vaes_elbo_exactly(prior: str) -> None:
    """A new flow prior is the identity: log p(z) = log N(z; 0, I), and with the same weights and noise the
    log-weights and the ELBO (Monte-Carlo KL with the flow, of the same sample) equal the plain VAE's."""
    plain, flowed = fresh_pair(prior)
    z = 3.0 * torch.randn(64, LATENT, dtype=torch.float64)
    torch.testing.assert_close(flowed.prior(z).log_prob(z), plain.prior(z).log_prob(z), rtol=0, atol=1e-12)
    x = batch()
    weights = []
    for vae in (plain, flowed):
        torch.manual_seed(11)
        weights.append(log_weights(vae.model, vae.guide, x, 64))
    torch.testing.assert_close(weights[1], weights[0], rtol=0, atol=1e-12)

    objective = AnalyticKLTrace_ELBO()
    torch.manual_seed(7)
    loss = objective.differentiable_loss(flowed.model, flowed.guide, x)
    torch.manual_seed(7)  # the plain VAE's ELBO with the Monte-Carlo KL of the same draw, by hand
    guide = poutine.trace(plain.guide).get_trace(x)
    model = poutine.trace(poutine.replay(plain.model, trace=guide)).get_trace(x)
    recon = model.log_prob_sum(lambda name, site: name == "x")
    kl = guide.log_prob_sum() - model.log_prob_sum(lambda name, site: name == "z")
    torch.testing.assert_close(loss, -(recon - kl), rtol=0, atol=1e-10)
    torch.testing.assert_close(objective.components["recon"], recon.detach(), rtol=0, atol=1e-10)
    # in expectation the Monte-Carlo KL is the plain VAE's closed form
    mc = AnalyticKLTrace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1)
    analytic = AnalyticKLTrace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1)
    mc.loss(flowed.model, flowed.guide, x)
    analytic.loss(plain.model, plain.guide, x)
    assert float(mc.components["kl"]) == pytest.approx(float(analytic.components["kl"]),
                                                       abs=0.1 * math.sqrt(x.shape[0] * LATENT))


@pytest.mark.parametrize("prior", PRIORS)
def test_the_prior_flow_learns_at_a_hundredth_of_the_learning_rate(prior: str) -> None:
    """At the full rate the prior collapses the posterior (issue #20): by default its group gets lr / 100."""
    vae = VAE(small_config(prior_flow=prior), SPEC)
    rest, prior_group = parameter_groups(vae, 1e-3)
    assert rest["lr"] == 1e-3 and prior_group["lr"] == pytest.approx(1e-5, rel=1e-12)
    assert [id(p) for p in prior_group["params"]] == [id(p) for p in vae.prior_flow.parameters()]
    in_prior = {id(p) for p in prior_group["params"]}
    assert sorted(map(id, rest["params"])) == sorted(id(p) for p in vae.parameters() if id(p) not in in_prior)
    (group,) = parameter_groups(VAE(small_config(), SPEC), 1e-3)  # no flow prior: one group, as before
    assert group["lr"] == 1e-3


def test_a_frozen_flow_prior_stays_the_standard_normal_while_the_rest_learns() -> None:
    torch.manual_seed(0)
    vae = VAE(small_config(prior_flow="maf", prior_flow_lr_scale=0.0), SPEC).double()
    encoder_before = [p.detach().clone() for p in vae.encoder.parameters()]
    optimizer = torch.optim.Adam(parameter_groups(vae, 1e-2))
    for _ in range(3):
        optimizer.zero_grad()
        objective_for(vae).differentiable_loss(vae.model, vae.guide, batch()).backward()
        optimizer.step()
    z = torch.randn(16, LATENT, dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(vae.prior(z).log_prob(z), normal, rtol=0, atol=1e-12)
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before, vae.encoder.parameters()))


def test_kl_is_monte_carlo_with_a_flow_and_analytic_without() -> None:
    x = batch()
    for vae, analytic in ((flow_vae("none"), True), (flow_vae("planar"), False), (flow_vae("none", prior="maf"), False)):
        objective = AnalyticKLTrace_ELBO()
        torch.manual_seed(5)
        objective.loss(vae.model, vae.guide, x)
        torch.manual_seed(5)
        guide = poutine.trace(vae.guide).get_trace(x)
        model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
        mc = float((guide.log_prob_sum() - model.log_prob_sum(lambda name, site: name == "z")).detach())
        assert (abs(float(objective.components["kl"]) - mc) > 1e-6) == analytic


@pytest.mark.parametrize("name", ["planar", "iaf"])
def test_iwae_with_one_sample_is_the_monte_carlo_elbo(name: str) -> None:
    vae, x = flow_vae(name, prior="realnvp"), batch()
    torch.manual_seed(9)
    elbo = AnalyticKLTrace_ELBO().loss(vae.model, vae.guide, x)
    torch.manual_seed(9)
    iwae = IWAE_ELBO(num_particles=1).loss(vae.model, vae.guide, x)
    assert iwae == pytest.approx(elbo, rel=1e-10)
    bound_5 = IWAE_ELBO(num_particles=5000).per_example_bound(vae.model, vae.guide, x)
    bound_1 = torch.stack([IWAE_ELBO(num_particles=1).per_example_bound(vae.model, vae.guide, x)
                           for _ in range(200)]).mean(0)
    assert (bound_5 > bound_1).all()  # L_K rises with K


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_training_a_flow_vae_lowers_the_loss(objective: str) -> None:
    torch.manual_seed(0)
    config = small_config(posterior_flow="iaf", prior_flow="realnvp", objective=objective,
                          num_particles=1 if objective == "elbo" else 4)
    vae = VAE(config, SPEC)
    loss_fn = objective_for(vae)
    opt = torch.optim.Adam(vae.parameters(), 1e-2)
    x = batch(32).float()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn.differentiable_loss(vae.model, vae.guide, x) / x.shape[0]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0


def test_burda_preset_and_explicit_options() -> None:
    config = VAEConfig(preset="burda")
    assert (config.latent_dim, config.hidden, config.activation) == (50, (200, 200), "tanh")
    vae = VAE(config, DATASETS["binarized_mnist"])
    sizes = [(m.in_features, m.out_features) for m in vae.encoder.net if isinstance(m, torch.nn.Linear)]
    assert sizes == [(784, 200), (200, 200), (200, 100)]
    assert isinstance(vae.encoder.net[1], torch.nn.Tanh)
    assert VAEConfig(preset="burda", latent_dim=20).latent_dim == 20  # an explicit option wins, even the default
    assert VAEConfig().latent_dim == PRESETS["none"]["latent_dim"] == 20


@pytest.mark.parametrize("options, message", [
    ({"posterior_flow": "bogus"}, "unknown --posterior-flow 'bogus'"),
    ({"prior_flow": "glow"}, "unknown --prior-flow 'glow'"),
    ({"posterior_flow": "planar", "flow_length": -1}, "--flow-length must be a non-negative integer"),
    ({"prior_flow": "maf", "prior_flow_length": -2}, "--prior-flow-length must be a non-negative"),
    ({"prior_flow": "maf", "prior_flow_lr_scale": -1.0}, "--prior-flow-lr-scale must be >= 0"),
    ({"posterior_flow": "iaf", "flow_hidden": (2,)}, "need at least 3 units"),
    ({"posterior_flow": "realnvp", "latent_dim": 1}, "at least 2 latent dimensions"),
    ({"posterior_flow": "planar", "flow_context": 0}, "--flow-context must be at least 1"),
    ({"posterior_flow": "sylvester_orthogonal", "sylvester_columns": 9}, "--sylvester-columns must lie in 1..3"),
    ({"preset": "kingma"}, "unknown --preset"),
])
def test_bad_options_give_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(DGMError, match=message) as info:
        small_config(**options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("argv, message", [
    (["--posterior-flow", "bogus"], "unknown --posterior-flow 'bogus'; choose one of none, householder, iaf, "
                                    "planar, realnvp, sylvester_householder, sylvester_orthogonal"),
    (["--posterior-flow", "planar", "--flow-length", "-1"], "--flow-length must be a non-negative integer, got -1"),
    (["--prior-flow", "nope"], "unknown --prior-flow 'nope'; choose one of none, maf, realnvp"),
])
def test_the_command_line_refuses_bad_flow_options_in_one_line(argv, message, capsys, tmp_path) -> None:
    from inference.train import main
    from tests.conftest import cli

    code, _, err = cli(main, ["vae", "--dataset", "binarized_digits", *argv, "--out", tmp_path / "run"], capsys)
    assert code == 2 and message in err and err.strip().count("\n") == 0
    assert not (tmp_path / "run").exists()


# ---- family options: --flow-options KEY=VALUE, the Sylvester options, old configs ----------------------
def _posterior_layer_sizes(config: VAEConfig) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in VAE(config, SPEC).posterior_flow.parameters()]


@pytest.mark.parametrize("family, old, new", [
    ("sylvester_orthogonal", {"sylvester_columns": 2}, ("columns=2",)),
    ("sylvester_householder", {"sylvester_reflections": 3}, ("reflections=3",)),
])
def test_flow_options_set_what_the_sylvester_options_set(family: str, old: dict, new: tuple[str, ...]) -> None:
    by_old = _posterior_layer_sizes(small_config(posterior_flow=family, **old))
    unset = {key: VAEConfig.__dataclass_fields__[key].default for key in old}  # the old option left at its default
    assert by_old == _posterior_layer_sizes(small_config(posterior_flow=family, flow_options=new, **unset))
    assert by_old != _posterior_layer_sizes(small_config(posterior_flow=family))  # the option changed the layers


@pytest.mark.parametrize("options, message", [
    ({"posterior_flow": "sylvester_orthogonal", "sylvester_columns": 2, "flow_options": ("columns=1",)},
     "--flow-options columns=1 contradicts --sylvester-columns 2; give one"),
    ({"posterior_flow": "sylvester_orthogonal", "flow_options": ("columns=9",)},
     "--flow-options columns must lie in 1..3 (the latent dimensions), got 9"),
    ({"posterior_flow": "sylvester_householder", "flow_options": ("reflections=two",)},
     "--flow-options reflections takes an integer, got 'two'"),
    ({"posterior_flow": "sylvester_householder", "sylvester_reflections": 0},
     "--sylvester-reflections must be at least 1"),
    ({"posterior_flow": "planar", "flow_options": ("columns=2",)},
     "--flow-options: the posterior flow planar has no option 'columns' (its options: none)"),
    ({"posterior_flow": "sylvester_orthogonal", "flow_options": ("columns",)}, "--flow-options takes KEY=VALUE pairs"),
    ({"posterior_flow": "sylvester_orthogonal", "flow_options": ("columns=1", "columns=2")}, "gives 'columns' twice"),
    ({"prior_flow": "maf", "prior_flow_options": ("depth=2",)},
     "--prior-flow-options: the prior flow maf has no option"),
])
def test_bad_family_options_give_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(DGMError) as info:
        small_config(**options)
    assert message in str(info.value) and "\n" not in str(info.value)


#: ``model_options`` of a run written before the family registry (no *_flow_options keys), as in its config.json
OLD_MODEL_OPTIONS = {
    "preset": "none", "latent_dim": 3, "hidden": [16], "activation": "relu", "arch": "mlp", "likelihood": "auto",
    "mixture_components": 5, "objective": "elbo", "num_particles": 1, "kl_warmup_epochs": 0.0,
    "posterior_flow": "sylvester_orthogonal", "flow_length": 2, "flow_context": 4, "flow_hidden": [8],
    "prior_flow": "maf", "prior_flow_length": 2, "prior_flow_lr_scale": 0.01, "sylvester_columns": 2,
    "sylvester_reflections": 8,
}


def test_an_old_config_json_loads_and_builds_the_same_model() -> None:
    """Old run directories keep loading: the same options, the same parameter layout (state_dict keys and shapes)."""
    from core.config import build_config, to_jsonable

    config = build_config(VAEConfig, OLD_MODEL_OPTIONS)
    assert config.flow_options is None and config.prior_flow_options is None
    state = VAE(config, SPEC).state_dict()
    head = state["posterior_flow.0.head.weight"]
    assert head.shape == (2 * (2 * 3 // 2) + 2 + 3 * 2, 4)  # R, R~ triangles of M = 2, b, and Q's D x M
    resaved = to_jsonable(config)
    assert {k: resaved[k] for k in OLD_MODEL_OPTIONS} == OLD_MODEL_OPTIONS
    VAE(build_config(VAEConfig, resaved), SPEC).load_state_dict(state)


def test_the_help_lists_the_registered_families_and_their_options(capsys) -> None:
    from inference.train import main
    from tests.conftest import cli

    code, out, _ = cli(main, ["vae", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0
    assert "choices: " + ", ".join(["none", *FLOWS]) in text and "choices: " + ", ".join(["none", *PRIORS]) in text
    assert "sylvester_orthogonal: columns" in text and "sylvester_householder: reflections" in text
