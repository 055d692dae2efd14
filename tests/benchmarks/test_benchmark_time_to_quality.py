"""benchmarks/time_to_quality.py: the first crossing in a metrics.csv, and the train-until-target loop."""
from __future__ import annotations

import json

import pytest

from benchmarks import time_to_quality as bench
from core.errors import DGMError
from tests.conftest import cli


def fake_run(path, bpd=(2.0, 1.9, 1.84, 1.86)):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({
        "model": "flow", "dataset": "mnist", "model_options": {"arch": "realnvp_mlp"}, "command": "python -m x",
        "hardware": {"cpu": "CPU", "cpu_count": 2, "torch_threads": 1, "gpu": None}, "packages": {}}))
    lines = ["epoch,step,train_loss,val_bpd,seconds"] + [f"{i + 1},{i},1.0,{b},{10 * (i + 1)}" for i, b in enumerate(bpd)]
    (path / "metrics.csv").write_text("\n".join(lines) + "\n")
    return path


def test_first_crossing_sums_the_seconds_up_to_that_epoch(tmp_path):
    rows = bench.read_metrics(fake_run(tmp_path / "run"))
    hit = bench.first_crossing(rows, "val_bpd", 1.85, "below")
    assert (hit.epoch, hit.seconds, hit.value, hit.best_value) == (3, 10 + 20 + 30, 1.84, 1.84)
    assert bench.first_crossing(rows, "val_bpd", 1.5, "below").epoch is None
    assert bench.default_direction("val_bpd") == "below" and bench.default_direction("val_elbo") == "above"


def test_from_run_table_and_errors(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    code, out, _ = cli(bench.main, ["--from-run", run, "--metric", "val_bpd", "--target", "1.85"], capsys)
    assert code == 0 and "first reached at epoch 3 after 60 s" in out and "no eval_test.json" in out
    code, _, err = cli(bench.main, ["--from-run", run, "--metric", "val_elbo", "--target", "-100"], capsys)
    assert code == 2 and err.startswith("error:") and "val_bpd" in err and "Traceback" not in err
    with pytest.raises(DGMError, match="KEY=VALUE"):
        bench.parse_sets(["lr"])
    assert bench.parse_sets(["hidden=8 8", "lr=1e-3"]) == {"hidden": ["8", "8"], "lr": "1e-3"}


def test_training_mode_stops_at_the_first_epoch_that_crosses(tmp_path, capsys):
    out_dir = tmp_path / "vae"
    options = ["--set", "dataset=binarized_digits", "--set", "hidden=16", "--set", "latent_dim=2",
               "--set", "batch_size=256", "--device", "cpu"]
    code, out, _ = cli(bench.main, ["--train", "vae", "--out", out_dir, "--metric", "val_elbo", "--target", "-1000",
                                    "--max-epochs", "3", *options], capsys)
    assert code == 0 and "first reached at epoch 1 after" in out
    assert len(bench.read_metrics(out_dir)) == 1  # stopped as soon as the target was crossed
    assert "test (250 examples, best.pt = epoch 1): elbo K=1" in out
    code, out, _ = cli(bench.main, ["--train", "vae", "--out", tmp_path / "vae2", "--metric", "val_elbo",
                                    "--target", "0", "--max-epochs", "2", *options], capsys)
    assert code == 0 and "NOT reached in 2 epochs" in out
    assert len(bench.read_metrics(tmp_path / "vae2")) == 2
