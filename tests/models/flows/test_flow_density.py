"""The flow density model: units of the pre-processing, estimators, samples, save/load, bad input, NaN."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch

from core.errors import DGMError, TrainingDiverged
from core.run_dir import CHECKPOINT, load_checkpoint
from data import load_dataset
from data.specs import DATASETS
from evaluation.estimators import elbo, importance_sampled
from inference.train import main as train_main
from inference.training.config import TrainConfig
from inference.training.svi_trainer import SVITrainer
from models.flows import Planar
from models.flows.architecture_registry import ARCHITECTURES
from models.flows.density import FlowConfig, FlowDensity
from models.flows.preprocessing import Logit, Rescale
from models.flows.registry import randomize_
from tests.conftest import cli
from inference.objectives.registry import objective_for

DIGITS = DATASETS["digits"]
SMALL = {"num_layers": 2, "hidden": (64,)}
#: small enough for every registered architecture, vector or multi-scale
EVERY_ARCH = {**SMALL, "levels": 2, "steps": 1, "channels": 8, "blocks": 0}


def _digits(n: int = 16) -> torch.Tensor:
    return load_dataset("digits").split("val")[:n]


def _model(arch: str = "realnvp_mlp", perturb: float = 0.05, **options) -> FlowDensity:
    torch.manual_seed(0)
    model = FlowDensity(FlowConfig(arch=arch, **{**SMALL, **options}), DIGITS)
    if perturb:
        randomize_(model, torch.Generator().manual_seed(1), perturb)
    return model.eval()


# ---- units: the pre-processing Jacobians and the dequantization bound ---------------------------
def test_logit_and_rescale_jacobians_give_the_hand_computed_density():
    """log p(y) = sum log N(w) - sum[log s(w) + log s(-w)] + D log(1 - 2a) - D log L, w = logit(a + (1-2a) y/L)."""
    levels, alpha, d = 17, 0.05, 5
    y = torch.rand(8, d, dtype=torch.float64) * levels
    base = dist.Normal(torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)).to_event(1)
    flow = dist.TransformedDistribution(base, [Logit(alpha), Rescale(levels)])
    p = alpha + (1 - 2 * alpha) * y / levels
    w = torch.log(p / (1 - p))
    by_hand = (torch.distributions.Normal(0.0, 1.0).log_prob(w)
               - torch.nn.functional.logsigmoid(w) - torch.nn.functional.logsigmoid(-w)).sum(-1) \
        + d * math.log(1 - 2 * alpha) - d * math.log(levels)
    torch.testing.assert_close(flow.log_prob(y), by_hand, rtol=1e-12, atol=1e-12)


def test_dequantization_estimators_bracket_the_exact_discrete_log_likelihood():
    """Identity flow, no logit: y = L z, z ~ N(0, I), so everything is in closed form per pixel:

        log P(x)          = sum_d log[Phi((x_d + 1)/L) - Phi(x_d/L)]
        E_u log p(x + u)  = sum_d [-log(2 pi)/2 - log L - (x_d^2 + x_d + 1/3) / (2 L^2)]

    ``elbo`` must estimate the second (the uniform-dequantization bound, below the first) and
    ``importance_sampled`` with many draws of u the first: nats of the *discrete* data, Jacobians included."""
    model = _model(perturb=0.0, logit=False).double()  # zero-initialised couplings: the identity map
    x = _digits(6).double()
    normal = torch.distributions.Normal(0.0, 1.0)
    levels = DIGITS.levels
    exact = torch.log(normal.cdf((x + 1) / levels) - normal.cdf(x / levels)).flatten(1).sum(-1)
    flat = x.flatten(1)
    bound = (-0.5 * math.log(2 * math.pi) - math.log(levels) - (flat ** 2 + flat + 1 / 3) / (2 * levels ** 2)).sum(-1)
    assert torch.all(bound < exact)
    torch.manual_seed(0)
    torch.testing.assert_close(elbo(model.model, model.guide, x, num_samples=2000), bound, rtol=0, atol=0.015)
    torch.testing.assert_close(importance_sampled(model.model, model.guide, x, num_samples=4000), exact,
                               rtol=0, atol=2e-3)


def test_validation_bits_per_dim_are_of_the_discrete_data(tmp_path: Path):
    """The trainer's val_bpd equals -val_elbo / (D ln 2), and the bound is below the exact value above."""
    model = _model(perturb=0.0, logit=False)
    dataset = load_dataset("digits")
    trainer = SVITrainer(model, TrainConfig(epochs=1), dataset, tmp_path, "flow", torch.device("cpu"))
    row = trainer.validate()
    assert set(row) >= {"val_elbo", "val_bpd"}
    assert row["val_bpd"] == pytest.approx(-row["val_elbo"] / (DIGITS.dim * math.log(2)))
    assert row["val_kl"] == 0.0  # log q(u) = log p(u) = 0: the ELBO is E_u log p(x + u)


# ---- every architecture: density, samples, save/load ---------------------------------------------
@pytest.mark.parametrize("arch", ["realnvp_mlp", "maf", "nice"])
def test_architectures_give_finite_densities_and_valid_samples(arch):
    model = _model(arch)
    x = _digits()
    log_p = model.log_density(x + torch.rand_like(x))
    assert log_p.shape == (16,) and torch.isfinite(log_p).all()
    torch.manual_seed(0)
    images = model.sample(5)
    assert images.shape == (5, *DIGITS.shape)
    assert torch.equal(images, images.round()) and images.min() >= 0 and images.max() <= DIGITS.levels - 1


def test_maf_samples_are_scored_consistently():
    """MAF sampling runs its D-pass inverse; scoring the draw afresh (no cache) gives the same density."""
    model = _model("maf", perturb=0.1)
    flow = model.distribution()
    torch.manual_seed(0)
    y = flow.sample((4,))
    torch.testing.assert_close(flow.log_prob(y), flow.log_prob(y.clone()), rtol=1e-4, atol=1e-3)


def test_temperature_scales_the_base_distribution():
    """At T -> 0 every draw is the image of z = 0; identity flow: y = L sigmoid(0) = L/2 for every pixel."""
    model = _model(perturb=0.0)
    images = model.sample(3, temperature=1e-6)
    assert torch.all(images == math.floor(DIGITS.levels / 2))
    assert model.distribution(0.5).base_dist.base_dist.scale.max() == 0.5
    with pytest.raises(DGMError, match="temperature"):
        model.sample(2, temperature=0.0)


@pytest.mark.parametrize("arch", ["realnvp_mlp", "maf", "nice"])
def test_save_and_load_keep_the_log_likelihoods(arch):
    model = _model(arch)
    x = _digits()
    y = x + torch.rand(x.shape, generator=torch.Generator().manual_seed(3))
    before = model.log_density(y)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    twin = _model(arch, perturb=0.2)
    assert not torch.allclose(twin.log_density(y), before)
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(twin.log_density(y), before, rtol=0, atol=0)


# ---- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    (torch.zeros(3, 1, 8, 7), "shape"),
    (torch.zeros(3, 1, 8, 8, dtype=torch.long), "float tensor"),
    (torch.full((3, 1, 8, 8), 17.0), "integers in 0..16"),
    (torch.full((3, 1, 8, 8), -1.0), "integers in 0..16"),
    (torch.full((3, 1, 8, 8), 2.5), "integers in 0..16"),
])
def test_bad_images_are_refused_by_the_model_and_the_estimators(bad, message):
    model = _model()
    with pytest.raises(DGMError, match=message):
        model.model(bad)
    with pytest.raises(DGMError, match=message):
        elbo(model.model, model.guide, bad)


def test_bad_dequantized_values_are_refused():
    model = _model()
    with pytest.raises(DGMError, match=r"\[0, 17\)"):
        model.log_density(torch.full((2, 1, 8, 8), 17.0))
    with pytest.raises(DGMError, match="shape"):
        model.log_density(torch.zeros(2, 64))


def test_scoring_data_with_a_flow_without_inverse_is_refused():
    base = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
    flow = dist.TransformedDistribution(base, [Planar(3)])
    y = flow.sample((2,))
    assert torch.isfinite(flow.log_prob(y)).all()  # its own samples: cached
    with pytest.raises(DGMError, match="no closed-form inverse"):
        flow.log_prob(torch.randn(2, 3))


@pytest.mark.parametrize("options, message", [
    (["--logit-alpha", "0.7"], "logit-alpha"),
    (["--arch", "maf", "--hidden", "10"], "at least 63 units"),
    (["--temperature", "0"], "temperature"),
    (["--num-layers", "0"], "num-layers"),
    (["--log-scale-min", "1"], "log-scale-min"),
    (["--arch", "pixelflow"], "unknown --arch 'pixelflow'; choose one of glow, maf, nice, realnvp, realnvp_mlp"),
])
def test_bad_options_are_one_line_errors(options, message, tmp_path: Path, capsys):
    code, _, err = cli(train_main, ["flow", *options, "--epochs", "1", "--out", tmp_path / "run"], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# ---- training through the shared trainer ---------------------------------------------------------
def test_training_from_the_command_line(tmp_path: Path, capsys):
    out = tmp_path / "run"
    code, stdout, err = cli(train_main, ["flow", "--arch", "realnvp_mlp", "--num-layers", "4", "--hidden", "64",
                                         "--epochs", "2", "--batch-size", "200", "--lr", "3e-3", "--device", "cpu",
                                         "--out", out], capsys)
    assert code == 0, err
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "val_elbo", "val_bpd"} <= set(rows[0])
    assert float(rows[1]["val_elbo"]) > float(rows[0]["val_elbo"])  # it learns
    result = json.loads((out / "eval_test.json").read_text())
    assert "elbo" in result["estimators"]
    assert (out / "bpd_curves.png").is_file() and (out / "samples_epoch_002.png").is_file()
    from inference.sample import main as sample_main

    code, _, err = cli(sample_main, [out, "-n", "4", "--temperature", "0.7", "--out", tmp_path / "t.png"], capsys)
    assert code == 0 and (tmp_path / "t.png").is_file(), err
    code, _, err = cli(sample_main, [out, "-n", "4", "--temperature", "0", "--out", tmp_path / "t0.png"], capsys)
    assert code == 2 and "temperature must be a positive" in err


@pytest.mark.filterwarnings("ignore:Encountered NaN")
@pytest.mark.parametrize("corrupt, layer", [
    ("transform", "flow.2"),              # the coupling's own arithmetic overflows: exp(1e4)
    ("conditioner", "flow.2.conditioner.net.0"),  # a NaN weight inside a conditioner
])
def test_nan_during_training_names_the_step_and_layer_and_keeps_the_checkpoint(corrupt, layer, tmp_path: Path):
    dataset = load_dataset("digits")
    torch.manual_seed(0)
    model = FlowDensity(FlowConfig(num_layers=4, hidden=(32,), log_scale_bound="clamp", log_scale_min=-1e6,
                                   log_scale_max=1e6), DIGITS)
    config = TrainConfig(epochs=1, batch_size=650, device="cpu")
    trainer = SVITrainer(model, config, dataset, tmp_path, "flow", torch.device("cpu"))
    trainer.fit()
    good = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        net = model.flow[2].conditioner.net
        if corrupt == "transform":
            net[-1].bias[net[-1].bias.shape[0] // 2:] = -1e4  # raw log-scale -1e4: x_t = (y_t - t) e^{1e4}
        else:
            net[0].weight[0, 0] = float("nan")
    trainer.config.epochs = 2
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    assert "at step 3 (epoch 2)" in message
    assert f"first non-finite output in layer '{layer}'" in message
    assert "last good checkpoint: epoch 1" in message
    saved = load_checkpoint(tmp_path / CHECKPOINT)
    assert saved["epoch"] == 1
    for key, value in saved["model_state"].items():
        torch.testing.assert_close(value, good[key], rtol=0, atol=0)


def test_a_model_can_be_copied_after_a_training_step():
    """Caches hold non-leaf tensors of the last pass; deepcopy (e.g. for an averaged model) must still work."""
    import copy

    model = _model()
    loss = objective_for(model).differentiable_loss(model.model, model.guide, _digits())
    loss.backward()
    twin = copy.deepcopy(model)
    y = _digits() + 0.5
    torch.testing.assert_close(twin.log_density(y), model.log_density(y))


# ---- no stale densities: scoring the same tensor again after a weight update (issue #16 item 6) ---
def _perturb(model: FlowDensity) -> None:
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(0.05 * torch.randn_like(p))


def _score_across_an_update(model: FlowDensity, path: str, y: torch.Tensor):
    """(before, after, reference): ``path`` scores the same tensor object before and after a weight update;
    the reference scores a copy of it (a new object, which no cache can answer) after the update."""
    v = model.to_event(y)
    kept = model.distribution()
    samples = kept.sample((3,))
    score = {"distribution": lambda t: model.distribution().log_prob(t), "kept distribution": kept.log_prob,
             "log_density": model.log_density, "own samples": kept.log_prob, "encode": model.encode}[path]
    value = {"distribution": v, "kept distribution": v, "log_density": y, "own samples": samples, "encode": y}[path]
    before = score(value).detach()
    _perturb(model)
    return before, score(value), score(value.clone())


@pytest.mark.parametrize("path", ["distribution", "kept distribution", "log_density", "own samples", "encode"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_density_path_scores_the_same_tensor_afresh_after_a_weight_update(arch, path):
    """The flow's transforms keep no value cache: whatever path scores a tensor again after a step, it gets the
    new weights' value, exactly what a new tensor object gets."""
    model = _model(arch, **EVERY_ARCH)
    before, after, reference = _score_across_an_update(model, path, _digits(4) + 0.5)
    torch.testing.assert_close(after, reference, rtol=0, atol=0)
    assert not torch.allclose(after, before)                     # the update changed the value
