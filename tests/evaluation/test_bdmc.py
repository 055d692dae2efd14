"""Bidirectional Monte Carlo on probabilistic PCA: the bounds sandwich the closed-form log p(x) of the
simulated data, the gap shrinks with more annealing steps; the command writes ``bdmc.json``."""
from __future__ import annotations

import json
import math

import pytest
import torch

from core.errors import DGMError
from evaluation.ais import AISOptions
from evaluation.bdmc import bidirectional_monte_carlo, simulate
from evaluation.bdmc import main as bdmc_main
from evaluation.diagnostics import standard_error
from models.ppca import PPCA
from tests.conftest import cli

Z = 4.0


@pytest.fixture(scope="module")
def simulated() -> tuple[PPCA, torch.Tensor, object, torch.Tensor]:
    torch.manual_seed(0)
    model = PPCA.random(data_dim=10, latent_dim=3, weight_scale=0.7, seed=1)
    x_like = torch.zeros(60, 10, dtype=torch.float64)  # templates: only their number and shape matter
    sim = simulate(model.model, x_like)
    with torch.no_grad():
        return model, x_like, sim, model.log_marginal(sim.observed["x"]).to(torch.float64)


def test_simulation_draws_data_latents_and_nothing_else(simulated):
    _, x_like, sim, _ = simulated
    assert set(sim.observed) == {"x"} and set(sim.latent) == {"z"} and sim.held == {}
    assert sim.observed["x"].shape == (60, 10) and sim.latent["z"].shape == (60, 3)
    assert not torch.equal(sim.observed["x"], x_like)


def test_bounds_sandwich_exact_log_px_and_the_gap_shrinks_with_steps(simulated):
    model, x_like, sim, log_px = simulated
    gaps = []
    for steps in (4, 60):
        torch.manual_seed(steps)
        result = bidirectional_monte_carlo(model.model, x_like, 8, AISOptions(num_steps=steps, leapfrog_steps=3),
                                           simulation=sim)
        assert result.lower.shape == result.upper.shape == (60,) and result.forward_log_weights.shape == (60, 8)
        below, above = log_px - result.lower, result.upper - log_px
        assert float(below.mean()) > -Z * standard_error(below)  # lower <= exact
        assert float(above.mean()) > -Z * standard_error(above)  # exact <= upper
        gaps.append(result.gap)
    short, long = gaps
    assert float(short.mean()) > 1.0 and float(long.mean()) < 0.5, (float(short.mean()), float(long.mean()))
    assert float(short.mean() - long.mean()) > Z * math.hypot(standard_error(short), standard_error(long))


def test_reverse_chains_start_at_the_exact_posterior_sample(simulated):
    """With T = 1 there is no transition: the reverse weight is 1 / p(x | z*) exactly, so upper = log p(x | z*)."""
    model, x_like, sim, _ = simulated
    result = bidirectional_monte_carlo(model.model, x_like[:5], 3, AISOptions(num_steps=1), simulation=sim.rows(slice(0, 5)))
    z = sim.latent["z"][:5]
    with torch.no_grad():
        loc = z @ model.weight.T + model.bias
        log_lik = torch.distributions.Normal(loc, model.noise).log_prob(sim.observed["x"][:5]).sum(-1)
    torch.testing.assert_close(result.upper, log_lik.to(torch.float64))


def test_bad_options(simulated):
    model, x_like, _, _ = simulated
    with pytest.raises(DGMError, match="at least 1 annealing step"):
        bidirectional_monte_carlo(model.model, x_like, 2, AISOptions(num_steps=0))
    with pytest.raises(DGMError, match="unknown AIS schedule"):
        bidirectional_monte_carlo(model.model, x_like, 2, AISOptions(schedule="geometric"))


def test_the_command_writes_bdmc_json_and_refuses_bad_options(tmp_path, capsys):
    from inference.train import main as train_main

    run = tmp_path / "run"
    code, _, err = cli(train_main, ["ppca", "--dataset", "digits", "--latent-dim", "2", "--epochs", "1",
                                    "--out", run], capsys)
    assert code == 0, err
    code, out, err = cli(bdmc_main, [run, "-n", "5", "--ais-steps", "6", "--chains", "3", "--leapfrog", "2",
                                     "--schedule", "linear", "--seed", "1"], capsys)
    assert code == 0, err
    result = json.loads((run / "bdmc.json").read_text())
    assert result["n"] == 5 and result["chains"] == 3 and result["options"]["num_steps"] == 6
    assert result["options"]["schedule"] == "linear" and result["seed"] == 1 and result["seconds"] >= 0
    assert result["held_sites"] == ["u"] and result["bounds"] == "log p(observed | u)"
    gap = result["gap"]
    assert gap["mean"] == pytest.approx(result["upper"]["mean"] - result["lower"]["mean"])
    assert gap["bpd"] == pytest.approx(gap["mean"] / (64 * math.log(2)))
    assert "gap" in out
    for bad, message in ((["--ais-steps", "0"], "at least 1 annealing step"),
                         (["--schedule", "cosine"], "unknown AIS schedule"), (["--chains", "0"], "positive integer"),
                         (["-n", "0"], "-n must be at least 1")):
        code, _, err = cli(bdmc_main, [run, *bad], capsys)
        assert code == 2 and message in err and err.count("\n") == 1


def test_the_ais_options_are_spelled_the_same_in_every_command(tmp_path, capsys):
    """evaluate, bdmc and gan_likelihood share the options generated from AISOptions; the older spellings of
    bdmc and gan_likelihood still parse but are not advertised."""
    from evaluation.ais import AISOptions, add_ais_arguments, ais_options
    from evaluation.evaluate import main as evaluate_main
    from evaluation.gan_likelihood import main as gan_main
    from core.config import OneLineErrorParser

    flags = ["--ais-steps", "--ais-schedule", "--ais-leapfrog", "--ais-step-size", "--ais-target-accept",
             "--ais-adapt-rate", "--ais-pilot-chains"]
    for main in (evaluate_main, bdmc_main, gan_main):
        code, out, _ = cli(main, [tmp_path, "--help"], capsys)
        assert code == 0 and all(flag in out for flag in flags), main
        usage = out.split("\n\n")[0].replace("--ais-", "")  # the usage line lists every advertised option
        assert "--leapfrog" not in usage and "--pilot-chains" not in usage and "--schedule" not in usage
    parser = OneLineErrorParser(prog="test")
    add_ais_arguments(parser)
    new = ais_options(parser.parse_args(["--ais-steps", "7", "--ais-schedule", "linear", "--ais-leapfrog", "3",
                                         "--ais-step-size", "0.2", "--ais-target-accept", "0.5", "--ais-pilot-chains",
                                         "2"]))
    old = ais_options(parser.parse_args(["--ais-steps", "7", "--schedule", "linear", "--leapfrog", "3",
                                         "--step-size", "0.2", "--target-accept", "0.5", "--pilot-chains", "2"]))
    assert new == old == AISOptions(num_steps=7, schedule="linear", leapfrog_steps=3, step_size=0.2,
                                    target_accept=0.5, pilot_chains=2)
