"""How to extend: a new trainer is one file. The toy trainer below is that whole file (a class and its
registration); a model family that names it trains through ``python -m inference.train`` with the run
directory, checkpoints, resume and the final evaluation of every trainer, with nothing else edited. And every
registered trainer provides what the orchestration in ``inference/train.py`` calls."""
from __future__ import annotations

import json

import pytest
import torch

from inference.train import main as train_main
from inference.training.optimizers import make_scheduler
from inference.training.svi_trainer import SVITrainer
from inference.training.trainers import TRAINERS, register_trainer
from models.registry import MODELS, register_model
from core.run_dir import load_checkpoint
from tests.conftest import cli
from tests.models.test_extension_toy_model import ToyConfig, ToyFactorModel


# ---- the one file a user writes ----------------------------------------------------------------------
class MomentumSGDTrainer(SVITrainer):
    """SVI with SGD and Nesterov momentum instead of Adam (same objective, run directory and resume)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.lr, momentum=0.9, nesterov=True)
        self.scheduler = make_scheduler(self.optimizer, self.config)


def register_toy_trainer() -> None:
    register_trainer("toy_sgd", MomentumSGDTrainer)
# -------------------------------------------------------------------------------------------------------


@pytest.fixture
def toy_trainer():
    register_toy_trainer()
    register_model("toy_sgd_family", ToyConfig, trainer="toy_sgd", description="a toy factor model by SGD")(
        ToyFactorModel)
    yield TRAINERS["toy_sgd"]
    del TRAINERS["toy_sgd"], MODELS["toy_sgd_family"]


def test_a_registered_trainer_trains_checkpoints_and_resumes_through_the_command_line(toy_trainer, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["toy_sgd_family", "--dataset", "binarized_digits", "--batch-size", "100", "--lr", "0.01",
            "--device", "cpu", "--out", out]
    code, _, err = cli(train_main, [*argv, "--epochs", "1"], capsys)
    assert code == 0, err
    state = load_checkpoint(out / "checkpoint.pt")
    assert all("momentum_buffer" in s for s in state["optimizer_state"]["state"].values())  # our optimiser ran
    code, _, err = cli(train_main, [*argv, "--epochs", "3", "--resume"], capsys)
    assert code == 0, err
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    losses = [float(r.split(",")[2]) for r in rows[1:]]
    assert losses[-1] < losses[0]  # SGD with momentum does train the toy story
    assert json.loads((out / "eval_test.json").read_text())["estimators"]["elbo"]["1"]["nll"] > 0


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_every_registered_trainer_provides_what_the_orchestration_calls(name: str) -> None:
    cls = TRAINERS[name].cls
    for method in ("check_options", "describe", "resume", "fit", "final_evaluation", "restorable", "train_epoch", "validate",
                   "objective_of"):
        assert callable(getattr(cls, method, None)), f"trainer {name!r} lacks {method}()"
    assert TRAINERS[name].description, f"trainer {name!r} has no description"
