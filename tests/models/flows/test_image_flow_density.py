"""The flow density with multi-scale image flows (realnvp, glow) and variational dequantization:
bounds against a closed form, samples and figures, joint training, exact resume, bad options."""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
import torch

from data import load_dataset
from data.specs import DATASETS
from evaluation.estimators import elbo, importance_sampled
from inference.train import main as train_main
from models.flows.actnorm import ActNorm
from models.flows.density import FlowConfig, FlowDensity
from models.flows.flow_figures import interpolate, samples_at_temperatures, save_flow_figures
from models.flows.registry import randomize_
from tests.conftest import cli
from inference.objectives.registry import objective_for

DIGITS = DATASETS["digits"]
TINY = {"levels": 2, "steps": 1, "channels": 8, "blocks": 0, "dequant_steps": 2, "dequant_channels": 8,
        "dequant_blocks": 0}


def _digits(n: int = 8) -> torch.Tensor:
    return load_dataset("digits").split("val")[:n]


def _model(arch: str, dequantization: str = "uniform", perturb: float = 0.05, **options) -> FlowDensity:
    torch.manual_seed(0)
    model = FlowDensity(FlowConfig(arch=arch, dequantization=dequantization, **{**TINY, **options}), DIGITS)
    for m in model.modules():
        if isinstance(m, ActNorm):
            m.initialized.fill_(True)
    if perturb:
        randomize_(model, torch.Generator().manual_seed(1), perturb)
    return model.eval()


def test_variational_dequantization_bounds_the_exact_log_likelihood_and_training_q_tightens_them():
    """Identity flow (fresh multi-scale RealNVP, no logit): y = L z, so log P(x) = sum_d log[Phi((x_d+1)/L) -
    Phi(x_d/L)] in closed form. For any q(u|x): ELBO <= log P(x); training q alone (p fixed) closes most of
    the gap, and importance sampling with q reaches log P(x). (Here p(u|x) is nearly uniform, so the uniform
    bound is already within 0.01 nats: this checks the bound and the estimator, not which q is better.)"""
    model = _model("realnvp", "variational", perturb=0.0, logit=False).double()
    randomize_(model.dequantizer, torch.Generator().manual_seed(1), 0.05)
    x = _digits(6).double()
    normal = torch.distributions.Normal(0.0, 1.0)
    levels = DIGITS.levels
    exact = torch.log(normal.cdf((x + 1) / levels) - normal.cdf(x / levels)).flatten(1).sum(-1)
    torch.manual_seed(0)
    before = elbo(model.model, model.guide, x, num_samples=50)
    assert torch.all(exact - before > 5.0)
    flow_params = [p.detach().clone() for p in model.flow.parameters()]
    optimizer = torch.optim.Adam(model.dequantizer.parameters(), lr=3e-3)
    objective = objective_for(model)
    model.train()
    for _ in range(150):
        loss = objective.differentiable_loss(model.model, model.guide, x) / x.shape[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert all(torch.equal(a, b) for a, b in zip(flow_params, model.flow.parameters()))  # only q trained
    after = elbo(model.model, model.guide, x, num_samples=100)
    assert torch.all(after < exact)
    assert torch.all(exact - after < 0.5 * (exact - before))
    torch.testing.assert_close(importance_sampled(model.model, model.guide, x, num_samples=500), exact,
                               rtol=0, atol=0.5)


@pytest.mark.parametrize("arch", ["realnvp", "glow", "realnvp_mlp"])
@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_image_flows_give_densities_samples_and_a_joint_gradient(arch, dequantization):
    """Multi-scale flows live on (C, H, W); the variational dequantizer also serves the vector flows."""
    model = _model(arch, dequantization, **({"hidden": (32,), "num_layers": 2} if arch == "realnvp_mlp" else {}))
    x = _digits()
    log_p = model.log_density(x + torch.rand_like(x))
    assert log_p.shape == (8,) and torch.isfinite(log_p).all()
    event = (DIGITS.dim,) if arch == "realnvp_mlp" else DIGITS.shape
    assert tuple(model.distribution().event_shape) == tuple(model.event_shape) == event
    torch.manual_seed(0)
    images = model.sample(5)
    assert images.shape == (5, *DIGITS.shape) and torch.equal(images, images.round())
    assert images.min() >= 0 and images.max() <= DIGITS.levels - 1
    u = model.dequantization_distribution(x).sample((3,))
    assert u.shape == (3, 8, *DIGITS.shape) and u.min() >= 0 and u.max() < 1
    model.train()
    loss = objective_for(model).differentiable_loss(model.model, model.guide, x)
    loss.backward()
    trained = [model.flow] + ([model.dequantizer] if dequantization == "variational" else [])
    for part in trained:  # one loss trains the flow and the dequantizer together
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    copy.deepcopy(model)  # caches of the last pass must not block copies (e.g. for averaged weights)
    model.eval()
    est, log_w = importance_sampled(model.model, model.guide, x, num_samples=4, return_log_weights=True)
    assert log_w.shape == (8, 4) and torch.isfinite(log_w).all()
    assert torch.all(est >= log_w.mean(-1) - 1e-9)  # the same draws: IS >= their ELBO (Jensen)


def test_temperatures_and_latent_interpolation():
    model = _model("glow", perturb=0.1)
    grid = samples_at_temperatures(model, (1e-6, 1.0), n=3, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (6, *DIGITS.shape)
    centre = model.quantize(model.decode(torch.zeros(1, *DIGITS.shape)), mean=True)
    torch.testing.assert_close(grid[:3], centre.expand(3, -1, -1, -1), rtol=0, atol=1e-4)  # T -> 0: z = 0
    assert not torch.allclose(grid[3], grid[4])
    x = _digits(2)
    path = interpolate(model, x[0], x[1], steps=5)
    assert path.shape == (5, *DIGITS.shape)
    torch.testing.assert_close(model.quantize(path[[0, -1]], mean=True), x, rtol=0, atol=1e-3)  # ends: the images
    assert not torch.allclose(path[2], path[0])


def test_figures_are_written(tmp_path: Path):
    save_flow_figures(_model("realnvp"), tmp_path, images=_digits(2))
    assert (tmp_path / "samples_temperatures.png").is_file() and (tmp_path / "interpolation.png").is_file()


def _train(out: Path, epochs: int, capsys, resume: bool = False) -> tuple[int, str]:
    options = ["flow", "--arch", "glow", "--dequantization", "variational", "--levels", "2", "--steps", "1",
               "--channels", "8", "--blocks", "0", "--dequant-steps", "2", "--dequant-channels", "8",
               "--dequant-blocks", "0", "--epochs", str(epochs), "--batch-size", "256", "--lr", "3e-3",
               "--device", "cpu", "--out", out] + (["--resume"] if resume else [])
    code, _, err = cli(train_main, options, capsys)
    return code, err


def test_glow_with_variational_dequantization_trains_and_resumes_exactly(tmp_path: Path, capsys):
    """Two epochs in one go equal one epoch plus --resume: actnorm is initialised once (its flag is saved)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(straight, 2, capsys) == (0, "")
    code, err = _train(split, 1, capsys)
    assert code == 0, err
    code, err = _train(split, 2, capsys, resume=True)
    assert code == 0, err

    def rows(run: Path) -> list[dict[str, str]]:
        with (run / "metrics.csv").open() as handle:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]

    assert rows(straight) == rows(split) and len(rows(split)) == 2
    first = rows(straight)[0]
    assert float(first["val_kl"]) != 0.0  # log q(u|x) of the learned dequantizer (0 for uniform noise)
    assert json.loads((straight / "eval_test.json").read_text())["estimators"]["elbo"]
    for name in ("samples_temperatures.png", "interpolation.png", "bpd_curves.png"):
        assert (straight / name).is_file(), name


@pytest.mark.parametrize("options, message", [
    (["--arch", "glow", "--levels", "4"], "divisible by 16"),
    (["--arch", "realnvp", "--levels", "5"], "divisible by 16"),
    (["--arch", "realnvp", "--levels", "4"], "1x1 grid"),
    (["--arch", "glow", "--channels", "0"], "--channels must be at least 1"),
    (["--arch", "realnvp", "--blocks", "-1"], "--blocks must be at least 0"),
    (["--dequantization", "variational", "--dequant-steps", "0"], "--dequant-steps must be at least 1"),
    (["--dequantization", "learned"], "invalid choice"),
])
def test_bad_image_flow_options_are_one_line_errors(options, message, tmp_path: Path, capsys):
    code, _, err = cli(train_main, ["flow", *options, "--epochs", "1", "--out", tmp_path / "run"], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
