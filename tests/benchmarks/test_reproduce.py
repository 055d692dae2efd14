"""Every literature preset runs: a tiny-step smoke run of each through training, resume and its paper's
estimator (issue #20), plus the bookkeeping of budgets and changed options."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.reproduce import PRESETS, main as reproduce_main, parse_set, train_argv
from evaluation.result_files import result_paths
from tests.conftest import cli


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_trains_resumes_and_evaluates_with_its_estimator(name: str, tmp_path: Path, capsys,
                                                                    shared_data: Path | None) -> None:
    if shared_data is None:  # the presets are the papers' data sets (MNIST), as tests/data/test_datasets.py
        pytest.skip("../shared/data is absent: the presets train on MNIST files (CI has them)")
    out = tmp_path / name
    code, stdout, err = cli(reproduce_main, [name, "--smoke", "--device", "cpu", "--out", out], capsys)
    assert code == 0, err
    preset = PRESETS[name]
    assert f"paper {preset.reported:g} {preset.unit}" in stdout and " by epoch: 1 " in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == preset.model
    for key, value in {**preset.options, **preset.smoke}.items():  # the preset's own options reached training
        saved = config["train"].get(key, config["model_options"].get(key))
        assert saved == (list(value) if isinstance(value, tuple) else value), key
    summary, _ = result_paths(out, "test", limit=8)  # the smoke run evaluates the first 8 images: its own file
    assert preset.estimator in json.loads(summary.read_text())["estimators"]


def test_a_budget_trains_in_chunks_and_waits_for_the_schedule(tmp_path: Path, capsys,
                                                              shared_data: Path | None) -> None:
    if shared_data is None:
        pytest.skip("../shared/data is absent: the presets train on MNIST files (CI has them)")
    out = tmp_path / "chunks"
    # --set given twice keeps both changes (argparse's default would keep only the last, silently)
    argv = ["burda_vae_k1", "--smoke", "--set", "epochs=2", "--set", "lr=0.002", "--budget-epochs", "1",
            "--device", "cpu", "--out", out]
    code, stdout, _ = cli(reproduce_main, argv, capsys)
    assert code == 0 and "1 of 2 epochs trained" in stdout and "paper 88.71" not in stdout
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 0.002
    code, stdout, _ = cli(reproduce_main, argv, capsys)
    assert code == 0 and "paper 88.71" in stdout and "2/2 epochs" in stdout and '"epochs": 2' in stdout
    assert '"lr": 0.002' in stdout


def test_options_and_resume_command_lines() -> None:
    assert parse_set(["batch_size=100", "hidden=(500, 500)", "activation=tanh"]) == {
        "batch_size": 100, "hidden": (500, 500), "activation": "tanh"}
    preset = PRESETS["burda_iwae_k5"]
    argv = train_argv(preset, preset.options, Path("/nonexistent/run"), "cpu", 13)
    assert argv[:2] == ["vae", "--out"] and argv[argv.index("--epochs") + 1] == "13"
    assert argv[argv.index("--objective") + 1] == "iwae" and argv[argv.index("--num-particles") + 1] == "5"
    assert "--threads" not in argv  # training then picks its load-aware default
    argv = train_argv(preset, preset.options, Path("/nonexistent/run"), "cpu", 13, threads=2)
    assert argv[argv.index("--threads") + 1] == "2"  # --threads reaches the training it starts


def test_the_validation_curve_reads_metrics_at_doubling_epochs_and_the_last(tmp_path: Path) -> None:
    from benchmarks.reproduce import validation_curve
    from core.run_dir import MetricsLog

    log = MetricsLog(tmp_path / "metrics.csv")
    for epoch in range(1, 7):
        log.append({"epoch": epoch, "step": 10 * epoch, "train_loss": 1.0, "val_elbo": -100.0 - 10.0 / epoch,
                    "seconds": 2.5})
    assert validation_curve(tmp_path) == ("val_elbo by epoch: 1 -110.00, 2 -105.00, 4 -102.50, 6 -101.67; "
                                          "15 s of training")
    assert "no validation curve" in validation_curve(tmp_path / "missing")
