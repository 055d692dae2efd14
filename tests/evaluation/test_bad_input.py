"""Bad input to the estimators and the evaluation commands: one-line errors (DGMError), each tested."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch

from core.errors import DGMError
from evaluation.compare import main as compare_main
from evaluation.estimators import ESTIMATORS, elbo, importance_sampled, naive_monte_carlo
from evaluation.evaluate import evaluate_run, main as evaluate_main
from models.ppca import PPCA
from tests.conftest import cli

SAMPLING = [naive_monte_carlo, elbo, importance_sampled]


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, _, err = result
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def ppca() -> PPCA:
    return PPCA.random(data_dim=5, latent_dim=2, seed=0)


@pytest.mark.parametrize("estimator", list(ESTIMATORS.values()), ids=list(ESTIMATORS))
@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_k_below_one_or_not_an_integer(ppca, estimator, k):
    with pytest.raises(DGMError, match="positive integer"):
        estimator(ppca.model, ppca.guide, ppca.sample(3), num_samples=k)


def _no_plate_model(x: torch.Tensor) -> None:
    z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(2))
    pyro.sample("x", dist.Normal(z.sum(-1), 1.0).to_event(1), obs=x)


def _no_plate_guide(x: torch.Tensor) -> None:
    pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(2))


@pytest.mark.parametrize("estimator", SAMPLING)
def test_model_without_the_data_plate(estimator):
    with pytest.raises(DGMError, match=r"is not inside pyro.plate\('data', N\)"):
        estimator(_no_plate_model, _no_plate_guide, torch.zeros(4), num_samples=3)


def test_data_outside_the_support_refused_by_the_model_check(ppca):
    from data.specs import DATASETS
    from models.vae import VAE, VAEConfig

    vae = VAE(VAEConfig(latent_dim=2, hidden=(8,)), DATASETS["binarized_digits"])
    with pytest.raises(DGMError, match=r"pixels must be integers in 0..1"):
        importance_sampled(vae.model, vae.guide, torch.full((2, 1, 8, 8), 0.5), num_samples=2)
    bad = ppca.sample(3)
    bad[1, 2] = float("inf")
    with pytest.raises(DGMError, match="finite"):
        elbo(ppca.model, ppca.guide, bad, num_samples=2)


def _uniform_model(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))
        pyro.sample("x", dist.Uniform(z - 1, z + 1, validate_args=False), obs=x)


def _uniform_guide(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 0.01))


@pytest.mark.parametrize("estimator", SAMPLING)
def test_data_outside_the_support_caught_by_the_log_weights(estimator):
    """A model with no data check: x = 50 has density 0 under U(z - 1, z + 1) for every plausible z."""
    x = torch.tensor([0.0, 50.0, 0.1])
    with pytest.raises(DGMError, match="every log-weight of example 1 is -inf: the data lies outside the support"):
        estimator(_uniform_model, _uniform_guide, x, num_samples=4)


def test_some_zero_weights_are_legitimate_but_a_minus_infinite_elbo_is_refused():
    """Prior samples with |z| > 1 give p(x = 0 | z) = 0: naive MC averages them; the ELBO would be -inf."""
    torch.manual_seed(0)
    x = torch.zeros(3)
    est = naive_monte_carlo(_uniform_model, _uniform_guide, x, num_samples=2000)
    assert torch.isfinite(est).all() and (est - torch.log(torch.tensor(0.5 * 0.6827))).abs().max() < 0.1

    def wide_guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 3.0))

    with pytest.raises(DGMError, match="the estimate of example 0 is -inf"):
        elbo(_uniform_model, wide_guide, x, num_samples=100)


@pytest.mark.parametrize("estimator", list(ESTIMATORS.values()), ids=list(ESTIMATORS))
def test_no_examples(ppca, estimator):
    with pytest.raises(DGMError, match="no examples"):
        estimator(ppca.model, ppca.guide, ppca.sample(3)[:0], num_samples=2)


def test_empty_split(ppca, tmp_path):
    spec = SimpleNamespace(dim=5)
    run = SimpleNamespace(model=ppca, run_dir=tmp_path, epoch=1, config={"dataset": "synthetic", "model": "ppca"},
                          dataset=SimpleNamespace(spec=spec, split=lambda name: torch.zeros(0, 5, dtype=torch.float64)))
    with pytest.raises(DGMError, match="the test split of synthetic is empty"):
        evaluate_run(run, "test", None, [1, 10])
    assert not list(tmp_path.iterdir())  # nothing written


def test_exact_refused_for_a_model_without_closed_form(tmp_path):
    from data.specs import DATASETS
    from evaluation.evaluate import check_estimators
    from models.vae import VAE, VAEConfig

    vae = VAE(VAEConfig(latent_dim=2, hidden=(8,)), DATASETS["binarized_digits"])
    with pytest.raises(DGMError, match="exact estimator needs"):
        check_estimators(vae, ["exact"])
    with pytest.raises(DGMError, match="unknown estimator 'magic'"):
        check_estimators(vae, ["magic"])


@pytest.mark.parametrize("main", [evaluate_main, compare_main], ids=["evaluate", "compare"])
def test_a_directory_that_is_not_a_run(main, tmp_path: Path, capsys):
    (tmp_path / "notes.txt").write_text("not a run")
    extra = ["--out", tmp_path / "report"] if main is compare_main else []
    assert_one_line_error(cli(main, [tmp_path, *extra], capsys), "is not a run directory (no config.json)")
    assert_one_line_error(cli(main, [tmp_path / "missing", *extra], capsys), "missing")


def test_bad_options_of_the_evaluate_command(tmp_path: Path, capsys):
    assert_one_line_error(cli(evaluate_main, [tmp_path, "--num-samples", "x"], capsys), "invalid int value")
