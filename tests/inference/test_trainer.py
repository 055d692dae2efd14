"""The shared SVI trainer: exact resume, NaN handling, early stopping, schedules, warm-up."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from core.errors import DGMError, TrainingDiverged
from core.run_dir import load_checkpoint
from data import load_dataset
from inference.train import main as train_main
from inference.training.config import TrainConfig
from inference.objectives.registry import kl_warmup_weight, request_of
from inference.training.optimizers import make_adam, make_scheduler
from inference.training.svi_trainer import SVITrainer
from models.vae import VAE, VAEConfig
from tests.conftest import cli

TINY = ["--dataset", "binarized_digits", "--hidden", "32", "--latent-dim", "4", "--batch-size", "100",
        "--device", "cpu"]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def test_kill_after_epoch_one_and_resume_reproduces_an_uninterrupted_run(tmp_path: Path, capsys,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Train 2 epochs; separately interrupt the same command after epoch 1 and resume: identical runs."""
    from inference.training.figures import TrainingFigures

    options = TINY + ["--lr-schedule", "cosine", "--kl-warmup-epochs", "1.5", "--num-particles", "2",
                      "--epochs", "2"]
    assert cli(train_main, ["vae", *options, "--out", tmp_path / "full"], capsys)[0] == 0
    original = TrainingFigures.on_epoch_end

    def interrupt(self, epoch, row):
        original(self, epoch, row)
        raise KeyboardInterrupt  # as if killed right after the epoch-1 checkpoint

    monkeypatch.setattr(TrainingFigures, "on_epoch_end", interrupt)
    code, _, err = cli(train_main, ["vae", *options, "--out", tmp_path / "split"], capsys)
    assert code == 130 and "--resume" in err
    monkeypatch.setattr(TrainingFigures, "on_epoch_end", original)
    code, _, err = cli(train_main, ["vae", "--resume", "--out", tmp_path / "split"], capsys)
    assert code == 0, err
    assert_same_runs(tmp_path / "full", tmp_path / "split")


def test_raising_epochs_on_resume_continues_exactly(tmp_path: Path, capsys) -> None:
    """With a schedule that does not depend on --epochs, 1 epoch + resume to 2 equals 2 epochs."""
    options = TINY + ["--lr-schedule", "exponential"]
    assert cli(train_main, ["vae", *options, "--epochs", "2", "--out", tmp_path / "full"], capsys)[0] == 0
    assert cli(train_main, ["vae", *options, "--epochs", "1", "--out", tmp_path / "split"], capsys)[0] == 0
    code, _, err = cli(train_main, ["vae", "--epochs", "2", "--resume", "--out", tmp_path / "split"], capsys)
    assert code == 0, err
    assert_same_runs(tmp_path / "full", tmp_path / "split")


def assert_same_runs(a: Path, b: Path) -> None:
    assert metrics(a) == metrics(b)
    first, second = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    for name, value in first["model_state"].items():
        assert torch.equal(value, second["model_state"][name]), name
    assert first["step"] == second["step"]


def test_run_directory_contents(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code, _, err = cli(train_main, ["vae", *TINY, "--latent-dim", "2", "--epochs", "2", "--out", out], capsys)
    assert code == 0, err
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.csv", "checkpoint.pt", "best.pt", "curves.png", "manifold.png",
            "samples_epoch_000.png", "samples_epoch_001.png", "samples_epoch_002.png",
            "eval_test.json", "eval_test_examples.csv"} <= names
    import json

    config = json.loads((out / "config.json").read_text())
    assert config["schema_version"] == 1 and config["model"] == "vae" and config["dataset"] == "binarized_digits"
    assert config["model_options"]["latent_dim"] == 2 and config["train"]["epochs"] == 2
    assert {"command", "git_commit", "date", "hardware", "packages"} <= set(config)
    rows = metrics(out)
    assert list(rows[0]) == ["epoch", "step", "train_loss", "val_elbo", "val_recon", "val_kl", "val_bpd",
                             "val_active_units"]
    for row in rows:  # ELBO = recon - KL, in nats, log-likelihood sign
        assert float(row["val_elbo"]) == pytest.approx(float(row["val_recon"]) - float(row["val_kl"]))
        assert float(row["val_kl"]) > 0 > float(row["val_elbo"])
    result = json.loads((out / "eval_test.json").read_text())
    assert result["n_examples"] == 250 and result["estimators"]["elbo"]["1"]["nll"] > 0


def build_trainer(tmp_path: Path, **train_options) -> SVITrainer:
    dataset = load_dataset("binarized_digits")
    torch.manual_seed(0)
    model = VAE(VAEConfig(latent_dim=4, hidden=(32,)), dataset.spec)
    config = TrainConfig(dataset="binarized_digits", batch_size=100, device="cpu", **train_options)
    return SVITrainer(model, config, dataset, tmp_path, "vae", torch.device("cpu"))


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_stops_with_step_and_layer_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    trainer = build_trainer(tmp_path, epochs=3)
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 20 else output

    trainer.model.decoder.net[0].register_forward_hook(poison)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    # 13 steps and 1 validation pass per epoch: decoder call 21 is step 20, in epoch 2
    assert "step 20 (epoch 2)" in message
    assert "decoder.net.0" in message and "epoch 1" in message
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_early_stopping_after_patience(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = build_trainer(tmp_path, epochs=10, patience=2)
    values = iter([-100.0, -90.0, -95.0, -91.0, -80.0])
    monkeypatch.setattr(trainer, "validate", lambda: {"val_elbo": next(values)})
    state = trainer.fit()
    assert state.epoch == 4 and state.best_epoch == 2
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2


@pytest.mark.parametrize("schedule,expected", [("cosine", 0.0), ("exponential", 1e-3 * 0.5 ** 2),
                                               ("constant", 1e-3)])
def test_learning_rate_schedules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule: str,
                                 expected: float) -> None:
    trainer = build_trainer(tmp_path, epochs=2, lr_schedule=schedule, lr_decay=0.5)
    monkeypatch.setattr(trainer, "validate", lambda: {"val_elbo": -1.0})
    trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-12)


def test_the_optimiser_takes_the_models_parameter_groups(tmp_path: Path) -> None:
    """A VAE's flow prior learns at --lr times --prior-flow-lr-scale; the schedule scales both groups."""
    dataset = load_dataset("binarized_digits")
    model = VAE(VAEConfig(latent_dim=4, hidden=(32,), prior_flow="maf", flow_hidden=(8,), prior_flow_lr_scale=0.1),
                dataset.spec)
    config = TrainConfig(dataset="binarized_digits", batch_size=100, device="cpu", lr=1e-3, epochs=1,
                         lr_schedule="exponential", lr_decay=0.5)
    trainer = SVITrainer(model, config, dataset, tmp_path, "vae", torch.device("cpu"))
    rest, prior = trainer.optimizer.param_groups
    assert [id(p) for p in prior["params"]] == [id(p) for p in model.prior_flow.parameters()]
    assert (rest["lr"], prior["lr"]) == pytest.approx((1e-3, 1e-4), rel=1e-12)
    trainer.fit()
    assert (rest["lr"], prior["lr"]) == pytest.approx((5e-4, 5e-5), rel=1e-12)


def test_resuming_a_checkpoint_with_other_parameter_groups_is_refused_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow-prior run saved with one optimiser group (before --prior-flow-lr-scale) cannot be resumed."""
    def flow_prior_trainer() -> SVITrainer:
        dataset = load_dataset("binarized_digits")
        model = VAE(VAEConfig(latent_dim=4, hidden=(32,), prior_flow="maf", flow_hidden=(8,)), dataset.spec)
        config = TrainConfig(dataset="binarized_digits", batch_size=100, device="cpu", epochs=1)
        return SVITrainer(model, config, dataset, tmp_path, "vae", torch.device("cpu"))

    monkeypatch.setattr(VAE, "learning_rate_groups", lambda self: [(list(self.parameters()), 1.0)])  # one group
    flow_prior_trainer().fit()
    monkeypatch.undo()
    with pytest.raises(DGMError, match="its optimizer_state does not fit") as info:
        flow_prior_trainer().resume()
    assert "\n" not in str(info.value)


def test_kl_warmup_weight() -> None:
    model = VAE(VAEConfig(latent_dim=2, hidden=(8,), kl_warmup_epochs=4), load_dataset("binarized_digits").spec)
    assert [kl_warmup_weight(request_of(model), e) for e in (0, 1, 2, 6)] == [0.0, 0.25, 0.5, 1.0]


def test_burda_schedule_gives_3_to_the_i_epochs_at_lr_times_10_to_the_minus_i_over_7() -> None:
    """Stage i (i = 0..7) lasts 3^i epochs at lr * 10^(-i/7): 3280 epochs in all, then lr stays at lr / 10."""

    config = TrainConfig(lr=1e-3, lr_schedule="burda", adam_eps=1e-4)
    optimizer = make_adam([torch.nn.Parameter(torch.zeros(3))], config)
    assert optimizer.param_groups[0]["eps"] == 1e-4
    scheduler = make_scheduler(optimizer, config)
    used = []
    for _ in range(3290):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [1e-3 * 10 ** (-i / 7) for i in range(8) for _ in range(3 ** i)]
    assert len(expected) == 3280
    assert used[:3280] == pytest.approx(expected, rel=1e-9)
    assert used[3280:] == pytest.approx([1e-4] * 10, rel=1e-9)


def test_kl_warmup_reaches_the_loss_step_by_step(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end through the CLI: with --kl-warmup-epochs 2 the ELBO's KL weight at step i of epoch e is
    min(1, (e - 1 + i / steps) / 2), so it rises from 0 over two epochs and then stays at 1."""
    from inference.objectives.elbo import AnalyticKLTrace_ELBO

    seen: list[float] = []
    original = AnalyticKLTrace_ELBO.differentiable_loss

    def spy(self, model, guide, *args, **kwargs):
        if self.num_particles == 1 and torch.is_grad_enabled():  # the training loss, not validation
            seen.append(self.kl_weight)
        return original(self, model, guide, *args, **kwargs)

    monkeypatch.setattr(AnalyticKLTrace_ELBO, "differentiable_loss", spy)
    options = ["--dataset", "binarized_digits", "--hidden", "16", "--latent-dim", "2", "--batch-size", "500",
               "--device", "cpu", "--kl-warmup-epochs", "2", "--epochs", "3"]
    assert cli(train_main, ["vae", *options, "--out", tmp_path / "run"], capsys)[0] == 0
    steps = 3  # 1297 training images in batches of 500
    expected = [min(1.0, (e - 1 + i / steps) / 2) for e in (1, 2, 3) for i in range(steps)]
    assert seen == pytest.approx(expected)
    assert seen[0] == 0.0 and seen[-1] == 1.0


def test_non_finite_weights_stop_training_before_a_checkpoint_is_written(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An update that turns a weight NaN while the step's loss was finite (--lr too large): training stops
    with the message of a diverged loss (parameter, epoch, last good checkpoint), and the checkpoint of the
    last good epoch stays as it was."""
    trainer = build_trainer(tmp_path, epochs=2)
    original = SVITrainer.train_epoch

    def corrupting(self, epoch):
        row = original(self, epoch)
        if epoch == 2:
            with torch.no_grad():
                self.model.decoder.net[0].weight[0, 0] = float("nan")
        return row

    monkeypatch.setattr(SVITrainer, "train_epoch", corrupting)
    with pytest.raises(TrainingDiverged, match=r"parameter 'decoder.net.0.weight' became non-finite in epoch 2.*"
                                               r"last good checkpoint: epoch 1"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model_state"].values()
                                       if v.is_floating_point())
