"""The training and sampling commands on bad input: a one-line error (exit 2) or a correct result, never a
traceback, and nothing written for a refused run. One row per case (issue #17's table is the guide)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch

from inference.sample import main as sample_main
from inference.train import main as train_main
from tests.conftest import assert_one_line, cli, tiny_vae_options, train_tiny_vae

TINY = tiny_vae_options()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_vae(tmp_path_factory.mktemp("bad") / "vae")


# (options added to a fresh tiny run, fragment of the message)
FRESH_RUN_CASES = [
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "1e308"], "--lr must be in (0, 10]"),
    (["--lr", "0"], "--lr must be in"),
    (["--grad-clip", "nan"], "--grad-clip must be a finite number"),
    (["--lr-decay", "2"], "--lr-decay in (0, 1]"),
    (["--adam-eps", "0"], "--adam-eps must be in (0, 1]"),
    (["--seed", "-1"], "--seed must be an integer in 0..4294967295"),
    (["--seed", str(2 ** 32)], "--seed must be an integer in 0..4294967295"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--epochs", "10000000"], "--epochs must be at most"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--epochs", "x"], "invalid int value"),
    (["--kl-warmup-epochs", "nan"], "--kl-warmup-epochs must be a finite number"),
    (["--kl-warmup-epochs", "-1"], "--kl-warmup-epochs must be >= 0"),
    (["--num-particles", "0"], "--num-particles must be at least 1"),
    (["--hidden", "100000", "100000"], "GiB are free"),
    (["--latent-dim", "0"], "--latent-dim must be at least 1"),
    (["--no-such-option", "1"], "unrecognized arguments"),
    (["--dataset", "cifar10"], "unknown data set 'cifar10'"),
]


@pytest.mark.parametrize("options, fragment", FRESH_RUN_CASES, ids=[" ".join(c[0]) for c in FRESH_RUN_CASES])
def test_bad_options_are_refused_before_anything_is_written(options, fragment, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert_one_line(cli(train_main, ["vae", *TINY, *options, "--out", out], capsys), fragment)
    assert not out.exists()


def test_out_that_is_a_file_or_cannot_be_created(tmp_path: Path, capsys) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    assert_one_line(cli(train_main, ["vae", *TINY, "--out", afile], capsys), "is a file")
    assert_one_line(cli(train_main, ["vae", *TINY, "--out", afile / "run"], capsys), "is a file, not a folder")
    assert afile.read_text() == "x"


def _damage(run: Path, what: str) -> None:
    config = json.loads((run / "config.json").read_text())
    if what == "config_not_json":
        (run / "config.json").write_text("{not json")
    elif what == "config_a_list":
        (run / "config.json").write_text("[1, 2]")
    elif what == "config_without_train":
        config.pop("train")
        (run / "config.json").write_text(json.dumps(config))
    elif what == "config_wrong_type":
        config["train"]["batch_size"] = "three"
        (run / "config.json").write_text(json.dumps(config))
    elif what == "config_nan":
        (run / "config.json").write_text(json.dumps(config).replace('"lr": 0.001', '"lr": NaN'))
    else:
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        if what == "checkpoint_without_rng":
            state.pop("rng")
        elif what == "checkpoint_broken_optimizer":
            state["optimizer_state"] = {"state": {}, "param_groups": [{"params": [0]}]}
        elif what == "checkpoint_nan_weight":
            next(iter(state["model_state"].values())).fill_(float("nan"))
        elif what == "checkpoint_truncated":
            (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:100])
            return
        torch.save(state, run / "checkpoint.pt")


RESUME_CASES = [
    ("config_not_json", "is not valid JSON"),
    ("config_a_list", "a JSON object is expected"),
    ("config_without_train", "'train' should be a dict"),
    ("config_wrong_type", "--batch-size takes an integer, got 'three'"),
    ("config_nan", "--lr must be a finite number"),
    ("checkpoint_without_rng", "no 'rng' entry"),
    ("checkpoint_broken_optimizer", "its optimizer_state does not fit"),
    ("checkpoint_nan_weight", "non-finite weights"),
    ("checkpoint_truncated", "unreadable"),
]


@pytest.mark.parametrize("what, fragment", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_resuming_a_damaged_run_is_a_one_line_error(what, fragment, trained: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    _damage(run, what)
    assert_one_line(cli(train_main, ["vae", "--resume", "--out", run, "--epochs", "2"], capsys), fragment)


def test_resume_needs_out_and_a_run_directory(tmp_path: Path, capsys) -> None:
    assert_one_line(cli(train_main, ["vae", "--resume"], capsys), "--resume needs --out")
    assert_one_line(cli(train_main, ["vae", "--resume", "--out", tmp_path], capsys), "not a run directory")


def test_resume_of_a_finished_run_says_there_is_nothing_to_do(trained: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "done"
    shutil.copytree(trained, run)
    code, out, err = cli(train_main, ["vae", "--resume", "--out", run, "--epochs", "1"], capsys)
    assert code == 0, err
    assert "nothing to train" in out


SAMPLE_CASES: list[tuple[Callable[[Path, Path], list], str]] = [
    (lambda run, tmp: [run, "-n", "0"], "-n must be in 1..10000"),
    (lambda run, tmp: [run, "-n", "100000000"], "-n must be in 1..10000"),
    (lambda run, tmp: [run, "--out", tmp / "x.txt"], "ending in .png"),
    (lambda run, tmp: [run, "--temperature", "nan"], "--temperature must be a positive finite number"),
    (lambda run, tmp: [run, "--seed", "-1"], "--seed must be in"),
    (lambda run, tmp: [tmp, "-n", "4"], "not a run directory"),
]


@pytest.mark.parametrize("argv, fragment", SAMPLE_CASES, ids=[c[1][:30] for c in SAMPLE_CASES])
def test_bad_sample_commands(argv, fragment, trained: Path, tmp_path: Path, capsys) -> None:
    assert_one_line(cli(sample_main, argv(trained, tmp_path), capsys), fragment)


def test_sample_into_a_directory_writes_samples_png_there_and_says_so(trained: Path, tmp_path: Path, capsys) -> None:
    code, out, err = cli(sample_main, [trained, "-n", "4", "--out", tmp_path], capsys)
    assert code == 0, err
    assert (tmp_path / "samples.png").is_file() and str(tmp_path / "samples.png") in out
    assert not (tmp_path.parent / f"{tmp_path.name}.png").exists()
