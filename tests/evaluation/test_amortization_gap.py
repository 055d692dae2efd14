"""The amortisation gap (Cremer et al. 2018): local posteriors, the gap decomposition, the command line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.errors import DGMError, run_cli
from data.specs import DATASETS
from evaluation.amortization_gap import amortization_gap, local_guide, main
from inference.objectives.importance import log_weights
from inference.train import main as train_main
from models.vae import VAE, VAEConfig
from tests.conftest import cli

SPEC = DATASETS["binarized_digits"]


def _vae(posterior_flow: str = "none") -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(latent_dim=2, hidden=(16,), posterior_flow=posterior_flow, flow_length=2, flow_context=3,
                         flow_hidden=(8,)), SPEC)


def _x(n: int = 12) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, *SPEC.shape), 0.3), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("flow", ["none", "planar"])
def test_a_local_guide_at_the_encoders_output_is_the_amortised_guide(flow: str) -> None:
    vae, x = _vae(flow), _x()
    weights = []
    for guide in (vae.guide, local_guide(vae, vae.encoder_outputs(x))):
        torch.manual_seed(3)
        weights.append(log_weights(vae.model, guide, x, 16))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_optimising_a_bad_encoders_posteriors_opens_an_amortisation_gap() -> None:
    """An encoder that ignores x and puts q at z = (3, 3), far from the posterior (near the prior N(0, I) for an
    untrained decoder), leaves a gap of about KL(q || p) = 9 nats that per-example optimisation closes."""
    vae, x = _vae(), _x()
    with torch.no_grad():
        vae.encoder.net[-1].weight.zero_()
        vae.encoder.net[-1].bias.zero_()
        vae.encoder.net[-1].bias[:2] = 3.0
    before = [p.detach().clone() for p in vae.parameters()]
    result = amortization_gap(vae, x, steps=60, lr=0.05, train_samples=8, num_samples=200, chunk=5, log=None)
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))  # the model is left untouched
    assert all(p.requires_grad for p in vae.parameters())
    assert (result["amortization_gap"] > 3.0).all()
    assert result["approximation_gap"].abs().mean() < 1.0
    torch.testing.assert_close(result["inference_gap"], result["approximation_gap"] + result["amortization_gap"])
    assert (result["is_amortized"] >= result["elbo_amortized"] - 1e-9).all()  # Jensen on the same samples
    assert (result["is_local"] >= result["elbo_local"] - 1e-9).all()
    assert result["log_px"].dtype == torch.float64 and result["log_px"].shape == (12,)


def test_bad_arguments_give_one_line_errors() -> None:
    vae, x = _vae(), _x(2)
    with pytest.raises(DGMError, match="number of steps must be at least 1"):
        amortization_gap(vae, x, steps=0, log=None)
    with pytest.raises(DGMError, match="learning rate must be positive"):
        amortization_gap(vae, x, lr=0.0, log=None)
    with pytest.raises(DGMError, match="needs an amortised posterior"):
        amortization_gap(torch.nn.Linear(2, 2), x, log=None)


def test_the_command_line_writes_report_table_figure_and_json(tmp_path: Path, capsys) -> None:
    run = tmp_path / "vae_planar"
    with pytest.raises(SystemExit) as info:
        run_cli(train_main, ["vae", "--dataset", "binarized_digits", "--epochs", "1", "--hidden", "16",
                             "--latent-dim", "2", "--posterior-flow", "planar", "--flow-length", "2", "--out", str(run)])
    assert info.value.code == 0
    capsys.readouterr()
    code, out, err = cli(main, [run, "--limit", "6", "--every", "10", "--steps", "5", "--num-samples", "20",
                                "--out", tmp_path / "gap"], capsys)
    assert code == 0, err
    report = (tmp_path / "gap" / "report.md").read_text()
    assert "| vae_planar |" in report and "amortisation gap" in report
    assert (tmp_path / "gap" / "gaps.png").stat().st_size > 0
    lines = (tmp_path / "gap" / "gaps.csv").read_text().splitlines()
    assert len(lines) == 7 and lines[1].startswith("vae_planar,0,") and lines[2].startswith("vae_planar,10,")
    saved = json.loads((run / "amortization_gap_test.json").read_text())
    assert saved["n_examples"] == 6 and set(saved["summary"]["amortization_gap"]) == {"mean", "low", "high"}
    code, _, err = cli(main, [run, "--limit", "0", "--out", tmp_path / "gap2"], capsys)
    assert code == 2 and "--limit and --every must be at least 1" in err and err.strip().count("\n") == 0
    code, _, err = cli(main, [tmp_path / "missing", "--out", tmp_path / "gap3"], capsys)
    assert code == 2 and err.strip().count("\n") == 0
