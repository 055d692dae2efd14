"""The Python API of a user's own Pyro program (issue #16, item 3): training into a conventions run directory,
resumption equal to an uninterrupted run, reloading with ``load_run(program=...)``, parameters in nn.Modules
and in Pyro's param store, and the one-line refusals."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

from core.errors import DGMError
from data.in_memory import tensor_dataset
from evaluation import exact, importance_sampled
from inference.training.config import TrainConfig
from inference.training.load_run import load_run
from inference.training.program_training import train_program
from inference.training.user_program import PyroProgram
from tests.inference.program_fixtures import (GaussianProgram, gaussian_data, missing_latent_guide,
                                              missing_latent_model, store_guide, store_model)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = TrainConfig(epochs=3, batch_size=32, lr=0.05, device="cpu")
HOLD = "import sys, time; from core.run_lock import RunLock\nwith RunLock(sys.argv[1], 'a test'):\n" \
       "    print('held', flush=True)\n    time.sleep(120)\n"


def _train(out: Path, **kwargs) -> object:
    torch.manual_seed(0)
    return train_program(GaussianProgram(), gaussian_data(), out, kwargs.pop("config", CONFIG), progress=False,
                         **kwargs)


def test_a_gaussian_program_trains_into_a_conventions_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = _train(out)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.csv", "checkpoint.pt", "best.pt", "data.pt", "curves.png"} <= names
    metrics = (out / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert header[:4] == ["epoch", "step", "train_loss", "val_elbo"] and len(metrics) == 4
    losses = [float(r.split(",")[2]) for r in metrics[1:]]
    assert losses[-1] < losses[0]
    for name in ("checkpoint.pt", "best.pt", "data.pt"):
        state = torch.load(out / name, weights_only=True)
        assert isinstance(state, dict)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"user_modules.0.w", "user_modules.0.encoder.weight", "param_store.s"} <= set(state["model_state"])
    config = json.loads((out / "config.json").read_text())
    assert config["user_program"] is True and config["model"] == "GaussianProgram"
    assert config["model_options"]["params"] == ["s"] and config["model_options"]["max_plate_nesting"] == 1
    assert run.epoch == int(state["best_epoch"]) and run.model.has_latents


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = _train(tmp_path / "straight", config=TrainConfig(epochs=2, batch_size=32, lr=0.05, device="cpu"))
    _train(tmp_path / "split", config=TrainConfig(epochs=1, batch_size=32, lr=0.05, device="cpu"))
    torch.manual_seed(123)  # resumption restores every RNG state: the noise between the calls does not matter
    train_program(GaussianProgram(), None, tmp_path / "split", epochs=2, resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert a["model_state"].keys() == b["model_state"].keys()
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 2 and straight.epoch == int(a["best_epoch"])
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and len(config["resumes"]) == 1
    with pytest.raises(DGMError, match="differs from the saved run's"):
        train_program(GaussianProgram(), None, tmp_path / "split", TrainConfig(lr=0.5, epochs=3), resume=True)
    with pytest.raises(DGMError, match="the data given differ"):
        train_program(GaussianProgram(), gaussian_data(seed=1), tmp_path / "split", epochs=3, resume=True)


def test_load_run_with_the_program_restores_it_and_gives_identical_estimates(tmp_path: Path) -> None:
    run = _train(tmp_path / "run")
    loaded = load_run(tmp_path / "run", program=GaussianProgram())
    x = loaded.dataset.split("test")
    assert torch.equal(x, run.dataset.split("test"))
    assert torch.equal(loaded.model.param("s"), run.model.param("s"))
    estimates = []
    for r in (run, loaded):
        torch.manual_seed(7)
        estimates.append(importance_sampled(r.model.model, r.model.guide, x, 50))
    assert torch.equal(estimates[0], estimates[1])
    with pytest.raises(DGMError, match=r"user program 'GaussianProgram'.*program=\(model, guide\)") as info:
        load_run(tmp_path / "run")
    assert len(str(info.value).splitlines()) == 1


def test_a_param_store_program_is_trained_and_restored(tmp_path: Path) -> None:
    pyro.clear_param_store()
    pyro.param("mu", torch.full((3,), 99.0))  # a global value of the same name must neither leak in nor be touched
    x = gaussian_data() + torch.tensor([2.0, -1.0, 0.5])
    try:
        run = train_program((store_model, store_guide), tensor_dataset(x), tmp_path / "store", CONFIG, progress=False)
        assert torch.equal(pyro.param("mu"), torch.full((3,), 99.0))
    finally:
        pyro.clear_param_store()  # other tests' global programs must not see it
    mu = run.model.param("mu")
    assert run.model.param_names() == ["guide.a", "guide.log_scale", "mu", "sigma"]  # guide first, then model
    assert (mu - torch.zeros(3)).abs().max() > 0.1  # trained away from its initial value
    state = torch.load(tmp_path / "store" / "best.pt", weights_only=True)["model_state"]
    assert set(state) == {"param_store.mu", "param_store.sigma", "param_store.guide%2Ea", "param_store.guide%2Elog_scale"}
    loaded = load_run(tmp_path / "store", program=(store_model, store_guide))
    for name in run.model.param_names():
        assert torch.equal(loaded.model.param(name), run.model.param(name))
    assert torch.allclose(state["param_store.sigma"], loaded.model.param("sigma").log())  # stored unconstrained


def test_a_model_latent_missing_in_the_guide_is_refused_by_name_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(DGMError, match="'e' is not sampled by the guide") as info:
        train_program((missing_latent_model, missing_latent_guide), gaussian_data(), tmp_path / "bad", CONFIG)
    assert len(str(info.value).splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_refusals_of_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _train(out, config=TrainConfig(epochs=1, batch_size=64, device="cpu"))
    with pytest.raises(DGMError, match="is not empty; pass resume=True"):
        _train(out)
    with pytest.raises(DGMError, match="not a run directory"):
        train_program(GaussianProgram(), None, tmp_path / "none", resume=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(DGMError, match=f"in use by process {proc.pid}") as info:
            train_program(GaussianProgram(), None, out, epochs=2, resume=True, progress=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(str(info.value).splitlines()) == 1
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 1  # nothing was written


def test_plain_functions_with_their_closed_form_and_discrete_data(tmp_path: Path) -> None:
    """``PyroProgram`` gives functions a ``log_marginal``; ``tensor_dataset(x, levels)`` checks integer levels."""
    def log_marginal(x: torch.Tensor) -> torch.Tensor:
        mu, sigma = pyro.param("mu"), pyro.param("sigma")
        cov = sigma**2 * torch.eye(3) + torch.ones(3, 3)
        return torch.distributions.MultivariateNormal(mu, cov).log_prob(x)

    run = train_program(PyroProgram(store_model, store_guide, log_marginal), gaussian_data(), tmp_path / "f",
                        CONFIG, progress=False)
    x = run.dataset.split("test")
    with torch.no_grad():
        assert torch.allclose(exact(run.model.model, run.model.guide, x).float(), log_marginal_of(run, x))
    with pytest.raises(DGMError, match=r"integer levels 0\.\.1"):
        tensor_dataset(torch.full((10, 4), 0.5), levels=2)
    assert tensor_dataset(torch.randint(0, 2, (10, 2, 2)), levels=2).spec.shape == (2, 2)


def log_marginal_of(run, x: torch.Tensor) -> torch.Tensor:
    with run.model.scope():
        cov = pyro.param("sigma") ** 2 * torch.eye(3) + torch.ones(3, 3)
        return torch.distributions.MultivariateNormal(pyro.param("mu"), cov).log_prob(x).detach()


def test_a_param_first_reached_after_the_first_run_is_refused_by_name(tmp_path: Path) -> None:
    calls = []

    def late_model(x: torch.Tensor) -> None:
        calls.append(1)
        store_model(x)
        if len(calls) > 1:
            pyro.param("late", torch.zeros(()))

    with pytest.raises(DGMError, match="pyro.param site 'late' was first reached after"):
        train_program((late_model, store_guide), gaussian_data(), tmp_path / "late", CONFIG, progress=False)
