"""GAN log-likelihood by AIS with a Gaussian observation of validated sigma (Wu et al. 2017), on a tiny
MLP GAN of digits trained for one epoch: sigma choice, AIS against importance sampling, BDMC, the command."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.errors import DGMError
from inference.training.load_run import load_run
from evaluation.ais import annealed_importance_sampling
from evaluation.diagnostics import standard_error
from evaluation.estimators import importance_sampled
from evaluation.gan_likelihood import gaussian_gan
from evaluation.gan_likelihood import main as gan_likelihood_main
from inference.train import main as train_main
from tests.conftest import cli

Z = 4.0
SIGMAS = ["0.05", "0.3", "3.0"]  # too narrow, about right, far too wide for an untrained generator


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.errors import run_cli

    run = tmp_path_factory.mktemp("gan") / "run"
    with pytest.raises(SystemExit) as info:
        run_cli(train_main, ["gan", "--arch", "mlp", "--hidden", "16", "--latent-dim", "2", "--dataset", "digits",
                             "--epochs", "1", "--val-samples", "0", "--out", str(run)])
    assert info.value.code == 0
    return run


def test_rebuilt_gan_has_the_runs_weights_and_a_gaussian_observation(gan_run):
    run = load_run(gan_run)
    model = gaussian_gan(run, 0.3)
    assert model.config.observation == "gaussian" and model.config.obs_sigma == 0.3
    assert run.model.config.observation == "binomial"  # the loaded run is left alone
    for (name, a), (_, b) in zip(run.model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name


def test_ais_agrees_with_importance_sampling_on_the_gaussian_gan(gan_run):
    """L = 2 latents: importance sampling from the prior with K = 4000 is accurate; AIS (u held fixed per
    chain, as the IS proposal draws u ~ U too) agrees with it."""
    run = load_run(gan_run)
    model = gaussian_gan(run, 0.3)
    x = run.dataset.split("test")[:20]
    torch.manual_seed(0)
    ais = annealed_importance_sampling(model.model, None, x, 16, num_steps=60, leapfrog_steps=4)
    torch.manual_seed(1)
    reference = importance_sampled(model.model, model.guide, x, 4000)
    diff = ais - reference
    assert abs(float(diff.mean())) < 0.1 + Z * standard_error(diff), (float(diff.mean()), standard_error(diff))


def test_the_command_picks_sigma_on_validation_and_reports_test_ais_and_bdmc(gan_run, capsys):
    code, out, err = cli(gan_likelihood_main, [gan_run, "--sigmas", *SIGMAS, "--val-limit", "20", "--limit", "20",
                                               "--bdmc-n", "10", "--ais-steps", "20", "--chains", "4",
                                               "--leapfrog", "3"], capsys)
    assert code == 0, err
    result = json.loads((gan_run / "gan_likelihood.json").read_text())
    by_sigma = {entry["sigma"]: entry["log_likelihood"] for entry in result["sigmas"]}
    assert list(by_sigma) == [float(s) for s in SIGMAS]
    assert result["best_sigma"] == max(by_sigma, key=by_sigma.get) == 0.3  # neither end of the grid
    test = result["test"]
    assert test["n"] == 20 and test["nll"] == pytest.approx(-test["log_likelihood"])
    assert test["bpd"] == pytest.approx(test["nll"] / (64 * math.log(2))) and 0 < test["bpd"] < 10
    assert result["options"]["num_steps"] == 20 and result["chains"] == 4 and result["val_limit"] == 20
    bdmc = result["bdmc"]
    assert bdmc["n"] == 10 and bdmc["held_sites"] == ["u"]
    assert bdmc["gap"]["mean"] > -Z * bdmc["gap"]["se"]  # upper >= lower, within noise
    assert "sigma 0.3: test NLL" in out and "BDMC gap" in out


def test_bad_input_is_refused_in_one_line(gan_run, capsys):
    for bad, message in ((["--sigmas", "0"], "positive number"), (["--sigmas", "-0.1"], "positive number"),
                         (["--ais-steps", "0"], "at least 1 annealing step"),
                         (["--schedule", "cosine"], "unknown AIS schedule"), (["--limit", "0"], "--limit must be"),
                         (["--chains", "0"], "positive integer")):
        code, _, err = cli(gan_likelihood_main, [gan_run, "--ais-steps", "2", "--val-limit", "2", *bad], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, (bad, err)
    not_a_gan = SimpleNamespace(config={"model": "ppca"}, run_dir=Path("elsewhere"))
    with pytest.raises(DGMError, match="gan_likelihood is for GAN runs"):
        gaussian_gan(not_a_gan, 0.1)
