"""A user's Gaussian program trained through the Python API, measured by every estimator against its closed
form (issue #16, item 3): the eval files of ``evaluation.evaluate`` and agreement within Monte-Carlo error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.errors import DGMError
from evaluation.ais import AISOptions
from evaluation.program_evaluation import evaluate_program, program_estimators
from inference.training.config import TrainConfig
from inference.training.load_run import load_run
from inference.training.program_training import train_program
from tests.inference.program_fixtures import GaussianProgram, gaussian_data

#: |mean estimate - mean closed form| accepted as Monte-Carlo error (nats per example)
TOLERANCE = 0.05


def test_every_estimator_agrees_with_the_closed_form(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train_program(GaussianProgram(), gaussian_data(300), tmp_path / "run",
                  TrainConfig(epochs=3, batch_size=32, lr=0.05, device="cpu"), progress=False)
    run = load_run(tmp_path / "run", program=GaussianProgram())  # a fresh process would do just this
    assert program_estimators(run) == ["naive_monte_carlo", "elbo", "importance_sampled", "exact", "ais"]
    result = evaluate_program(run, num_samples=[1, 500], ais=AISOptions(num_steps=100, leapfrog_steps=4),
                              log=None)
    est = result["estimators"]
    exact = est["exact"]["1"]["log_likelihood"]
    x = run.dataset.split("test")
    with torch.no_grad():
        assert exact == pytest.approx(float(run.model.log_marginal(x).double().mean()), abs=1e-6)
    for name in ("naive_monte_carlo", "importance_sampled", "ais"):
        assert abs(est[name]["500"]["log_likelihood"] - exact) < TOLERANCE, name
    assert est["elbo"]["500"]["log_likelihood"] <= exact + TOLERANCE  # a bound, below within noise
    assert est["importance_sampled"]["500"]["khat"]["frac_above_0.7"] == 0.0
    written = json.loads((tmp_path / "run" / "eval_test.json").read_text())
    assert written["model"] == "GaussianProgram" and written["n_examples"] == x.shape[0]
    rows = (tmp_path / "run" / "eval_test_examples.csv").read_text().splitlines()
    assert rows[0] == "example_id,estimator,K,log_likelihood,khat,ess" and len(rows) == 1 + x.shape[0] * 9


def test_evaluate_program_refuses_a_registered_run() -> None:
    with pytest.raises(DGMError, match="takes the run of a user program"):
        evaluate_program(object())  # type: ignore[arg-type]
