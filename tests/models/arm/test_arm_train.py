"""The ARMs through the shared commands: ``python -m inference.train MODEL`` trains them by exact maximum
likelihood, writes val_log_likelihood / val_bpd and an exact test evaluation; ``load_run`` and
``python -m inference.sample`` work on the run. The class-conditional model trains from Python."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from core.errors import DGMError
from inference.training.load_run import build_model, load_run
from core.seeding import seed_everything
from data import load_dataset
from evaluation.estimators import exact
from inference.objectives.elbo import AnalyticKLTrace_ELBO
from inference.sample import main as sample_main
from inference.train import main as train_main
from tests.conftest import cli
from tests.models.arm.arm_testing import build

TINY = {"causal_conv1d": ["--channels", "8", "--layers", "3", "--output-channels", "8"],
        "pixelcnn": ["--channels", "8", "--residual-blocks", "1", "--output-channels", "8"],
        "gated_pixelcnn": ["--channels", "4", "--layers", "2", "--output-channels", "8"]}


@pytest.mark.parametrize("name", list(TINY))
def test_train_evaluate_load_and_sample(name, tmp_path: Path, capsys):
    out = tmp_path / name
    argv = [name, *TINY[name], "--dataset", "binarized_digits", "--epochs", "1", "--lr", "0.01", "--device", "cpu"]
    code, _, err = cli(train_main, [*argv, "--out", out], capsys)
    assert code == 0, err
    row = next(csv.DictReader((out / "metrics.csv").open()))
    assert "val_log_likelihood" in row and "val_elbo" not in row
    assert float(row["val_bpd"]) == pytest.approx(-float(row["val_log_likelihood"]) / (64 * 0.6931471805599453))
    summary = json.loads((out / "eval_test.json").read_text())["estimators"]["exact"]["1"]
    run = load_run(out)
    x = run.dataset.split("test")
    assert summary["nll"] == pytest.approx(-float(exact(run.model.model, run.model.guide, x).mean()), rel=1e-9)
    seed_everything(run.train_config.seed)  # the trainer seeds, then builds: this is the untrained model
    untrained, _, _ = build_model(run.config)
    assert 0 < summary["nll"] < -float(exact(untrained.model, untrained.guide, x).mean()) - 1.0  # it learned
    png = tmp_path / "samples.png"
    code, _, err = cli(sample_main, [out, "-n", "4", "--out", png], capsys)
    assert code == 0 and png.stat().st_size > 0, err


def test_bad_option_is_one_line_error(tmp_path: Path, capsys):
    code, _, err = cli(train_main, ["pixelcnn", "--first-kernel", "4", "--out", tmp_path / "a"], capsys)
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1 and "odd" in err
    code, _, err = cli(train_main, ["gated_pixelcnn", "--likelihood", "bernoulli", "--dataset", "digits",
                                    "--out", tmp_path / "b"], capsys)
    assert code == 2 and "cannot represent digits" in err


def test_class_conditional_training_from_python():
    """The conditional gated PixelCNN trains with labels passed to model and guide through our ELBO."""
    data = load_dataset("digits")
    x, y = data.split("train")[:128], data.labels("train")[:128]
    model = build("gated_pixelcnn", "digits", dtype=torch.float32, num_classes=10, channels=8)
    objective = AnalyticKLTrace_ELBO()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = objective.differentiable_loss(model.model, model.guide, x, y) / x.shape[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 5  # nats per image
    assert torch.allclose(torch.tensor(losses[-1]), -model.log_prob(x, y).mean().detach(), rtol=0.05)
    samples = model.sample(10, y=torch.arange(10))
    assert samples.shape == (10, 1, 8, 8)
    with pytest.raises(DGMError, match="class-conditional"):
        model.log_marginal(x)
