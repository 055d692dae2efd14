"""The estimator registry: every registered estimator passes the generic harness; a new estimator is one spec
plus its registration and then runs through ``python -m evaluation.evaluate`` (with its own options) and the
harness; the ELBO and IS reductions of one pass are what they claim (their gap is positive at K >= 10)."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from core.errors import DGMError
from evaluation import ESTIMATORS, EstimatorSpec, register_estimator
from evaluation.diagnostics import standard_error
from evaluation.estimator_registry import headline_order
from evaluation.result_files import result_paths
from evaluation.estimators import log_mean_exp, log_weight_chunks
from evaluation.evaluate import main as evaluate_main
from inference.train import main as train_main
from models.ppca import PPCA
from evaluation.result_files import result_paths
from tests.conftest import cli
from tests.evaluation import estimator_harness

Z = 4.0


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_registered_estimator_passes_the_harness(name: str):
    estimator_harness.check_all(ESTIMATORS.spec(name))


# ---- a toy estimator, registered the documented way ----------------------------------------------------
@dataclass(frozen=True)
class ShiftOptions:
    offset: float = field(default=0.0, metadata={"help": "nats added to the importance-sampled estimate"})

    def validate(self) -> "ShiftOptions":
        if not math.isfinite(self.offset):
            raise DGMError(f"the offset must be finite, got {self.offset}")
        return self


TOY = EstimatorSpec("shifted_is", "log (1/K) sum_k w_k + offset: a toy that reduces the guide pass.",
                    proposal="guide", reduce=lambda lw, options: log_mean_exp(lw) + options.offset,
                    options=ShiftOptions, default=False, importance_weights=True)


@pytest.fixture
def toy() -> EstimatorSpec:
    spec = register_estimator(TOY)
    yield spec
    ESTIMATORS.unregister(TOY.name)


@pytest.fixture(scope="module")
def ppca_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.errors import run_cli

    run = tmp_path_factory.mktemp("registry") / "run"
    with pytest.raises(SystemExit) as info:
        run_cli(train_main, ["ppca", "--dataset", "binarized_digits", "--latent-dim", "2", "--epochs", "1",
                             "--out", str(run)])
    assert info.value.code == 0
    return run


def test_a_registered_toy_runs_through_the_command_line_with_its_options(toy, ppca_run, tmp_path, capsys):
    code, out, _ = cli(evaluate_main, [ppca_run, "--help"], capsys)
    assert code == 0 and "shifted_is" in out and "--shifted-is-offset" in out
    code, out, err = cli(evaluate_main, [ppca_run, "--estimators", "importance_sampled", "shifted_is",
                                         "--num-samples", "10", "--limit", "6", "--shifted-is-offset", "1.5"], capsys)
    assert code == 0, err
    summary, examples = result_paths(ppca_run, "test", limit=6)  # the first 6 test images' own files
    result = json.loads(summary.read_text())
    assert set(result["estimators"]) >= {"importance_sampled", "shifted_is"}
    rows = list(csv.DictReader(examples.open()))
    value = {(r["estimator"], int(r["example_id"])): float(r["log_likelihood"]) for r in rows if r["K"] == "10"}
    for i in range(6):  # the same pass of guide samples: exactly IS + 1.5 per example
        assert value[("shifted_is", i)] == pytest.approx(value[("importance_sampled", i)] + 1.5, abs=1e-12)
    code, _, err = cli(evaluate_main, [ppca_run, "--estimators", "shifted_is", "--num-samples", "2",
                                       "--limit", "2", "--shifted-is-offset", "inf"], capsys)
    assert code == 2 and "the offset must be finite" in err and err.count("\n") == 1


def test_a_registered_toy_passes_the_generic_harness(toy):
    estimator_harness.check_all(toy)
    model, x = estimator_harness.ppca_and_data()
    torch.manual_seed(0)
    shifted = toy.function(model.model, model.exact_guide, x, 4, offset=-2.0)
    torch.testing.assert_close(shifted, model.log_marginal(x).double() - 2.0)  # exact guide: IS is exact


def test_a_plain_function_registered_by_assignment_runs_in_evaluate(ppca_run, capsys):
    """The way the README used to show (ESTIMATORS[name] = f) no longer silently produces nothing."""
    def best_weight(model, guide, x, num_samples=1, *, chunk_size=None, return_log_weights=False):
        """The largest of K log-weights minus log K (a lower bound on IS)."""
        ((_, lw),) = list(log_weight_chunks(model, guide, x, num_samples, chunk_size=x.shape[0]))
        est = lw.max(-1).values - math.log(num_samples)
        return (est, lw) if return_log_weights else est

    ESTIMATORS["best_weight"] = best_weight
    try:
        code, _, err = cli(evaluate_main, [ppca_run, "--estimators", "best_weight", "--num-samples", "4",
                                           "--limit", "3"], capsys)
        assert code == 0, err
        summary, _ = result_paths(ppca_run, "test", limit=3)
        entry = json.loads(summary.read_text())["estimators"]["best_weight"]["4"]
        assert math.isfinite(entry["log_likelihood"])
    finally:
        ESTIMATORS.unregister("best_weight")


def test_a_spec_must_say_how_it_runs_and_names_are_unique():
    with pytest.raises(ValueError, match="either proposal and reduce"):
        EstimatorSpec("nothing", "runs nowhere")
    with pytest.raises(ValueError, match="registered twice"):
        register_estimator(ESTIMATORS.spec("elbo"))
    with pytest.raises(DGMError, match="unknown estimator 'magic'; choose from naive_monte_carlo"):
        ESTIMATORS.spec("magic")
    assert headline_order()[:2] == ["exact", "importance_sampled"]


# ---- the reductions of one pass are what they claim ----------------------------------------------------
@pytest.mark.parametrize("k", [10, 100])
def test_importance_sampling_beats_the_elbo_by_many_standard_errors(k: int):
    """With an inexact (diagonal, shifted) guide, IS - ELBO on the same samples is > 0 by Z standard errors at
    K >= 10: reporting the ELBO as a log-mean-exp (ELBO == IS) fails here, as does IS as a mean."""
    model = PPCA.random(data_dim=8, latent_dim=3, weight_scale=1.0, seed=3)
    with torch.no_grad():
        model.enc_bias.add_(0.5)
    torch.manual_seed(0)
    x = model.sample(200)
    ((_, lw),) = list(log_weight_chunks(model.model, model.diagonal_guide, x, k, chunk_size=x.shape[0]))
    elbo = ESTIMATORS.spec("elbo").reduce(lw, None)
    is_ = ESTIMATORS.spec("importance_sampled").reduce(lw, None)
    gap = is_ - elbo
    assert float(gap.mean()) > Z * standard_error(gap) and (gap >= -1e-12).all()
    with torch.no_grad():
        truth = model.log_marginal(x).double()
    assert float((truth - is_).mean()) < float((truth - elbo).mean())  # IS is the tighter bound
