"""Bad input to the training and sampling commands: one line on stderr, non-zero exit, nothing lost."""
from __future__ import annotations

import csv

import shutil
from pathlib import Path

import pytest

from inference.sample import main as sample_main
from inference.train import main as train_main
from tests.conftest import cli, tiny_vae_options, train_tiny_vae

TINY = tiny_vae_options(hidden=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_vae(tmp_path_factory.mktemp("runs") / "vae", hidden=16)


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, _, err = result
    assert code != 0
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_unknown_model_and_data_set(capsys, tmp_path: Path) -> None:
    assert_one_line_error(cli(train_main, ["gpt", "--out", tmp_path / "a"], capsys), "invalid choice")
    assert_one_line_error(cli(train_main, ["vae", "--dataset", "cifar10", "--out", tmp_path / "b"], capsys),
                          "unknown data set 'cifar10'")


def test_data_set_the_model_cannot_represent(capsys, tmp_path: Path) -> None:
    out = tmp_path / "bern"
    assert_one_line_error(cli(train_main, ["vae", "--dataset", "digits", "--likelihood", "bernoulli",
                                           "--out", out], capsys), "cannot represent digits", "binarized_digits")
    assert not out.exists()  # nothing written for a refused run


def test_missing_data_files(capsys, tmp_path: Path) -> None:
    assert_one_line_error(cli(train_main, ["vae", "--dataset", "binarized_mnist", "--data-dir", tmp_path / "none",
                                           "--out", tmp_path / "r"], capsys),
                          "binarized_mnist_valid.amat", str(tmp_path / "none"))


def test_non_empty_out_without_resume(trained: Path, capsys) -> None:
    before = sorted(p.name for p in trained.iterdir())
    assert_one_line_error(cli(train_main, ["vae", *TINY, "--out", trained], capsys), "not empty", "--resume")
    assert sorted(p.name for p in trained.iterdir()) == before


def test_resume_without_checkpoint(capsys, tmp_path: Path) -> None:
    assert_one_line_error(cli(train_main, ["vae", "--resume", "--out", tmp_path / "empty"], capsys),
                          "not a run directory")
    run = tmp_path / "nockpt"
    run.mkdir()
    (run / "config.json").write_text("{}")  # not a run's config: refused, and nothing is written
    assert_one_line_error(cli(train_main, ["vae", "--resume", "--out", run], capsys), "config.json")
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_scratch(capsys, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in epoch 1 leaves config.json and no checkpoint: the message says so truthfully, a fresh run
    into the directory is refused (it is not empty), and --resume starts it over with its saved options,
    equal to a run never interrupted."""
    from inference.training.svi_trainer import SVITrainer

    original = SVITrainer.train_epoch
    monkeypatch.setattr(SVITrainer, "train_epoch", lambda self, epoch: (_ for _ in ()).throw(KeyboardInterrupt))
    run = tmp_path / "stopped"
    code, _, err = cli(train_main, ["vae", *TINY, "--epochs", "2", "--out", run], capsys)
    assert code == 130 and "before the first checkpoint" in err and "--resume" in err and len(err.splitlines()) == 1
    assert (run / "config.json").is_file() and not (run / "checkpoint.pt").exists()
    (run / ".checkpoint.pt.abcd.tmp").write_bytes(b"half")  # what an interrupted atomic write leaves
    assert_one_line_error(cli(train_main, ["vae", *TINY, "--epochs", "2", "--out", run], capsys), "not empty")
    monkeypatch.setattr(SVITrainer, "train_epoch", original)
    code, out, err = cli(train_main, ["vae", "--resume", "--out", run], capsys)
    assert code == 0, err
    assert "starting it over" in out and not (run / ".checkpoint.pt.abcd.tmp").exists()
    straight = tmp_path / "straight"
    assert cli(train_main, ["vae", *TINY, "--epochs", "2", "--out", straight], capsys)[0] == 0
    read = lambda d: [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((d / "metrics.csv").open())]
    assert read(run) == read(straight)


def test_resume_with_a_different_option(trained: Path, capsys, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    assert_one_line_error(cli(train_main, ["vae", "--resume", "--out", copy, "--lr", "0.1"], capsys),
                          "--lr 0.1 differs")
    assert_one_line_error(cli(train_main, ["vae", "--resume", "--out", copy, "--epochs", "0"], capsys),
                          "--epochs")


def test_checkpoint_from_another_model_or_truncated(trained: Path, capsys, tmp_path: Path) -> None:
    import torch

    from core.run_dir import atomic_torch_save, load_checkpoint

    copy = tmp_path / "other"
    shutil.copytree(trained, copy)
    state = load_checkpoint(copy / "checkpoint.pt")
    atomic_torch_save({**state, "model": "pixelcnn"}, copy / "checkpoint.pt")
    assert_one_line_error(cli(train_main, ["vae", "--resume", "--epochs", "2", "--out", copy], capsys),
                          "holds a 'pixelcnn' model")
    atomic_torch_save({**state, "model_state": {"w": torch.zeros(2)}}, copy / "checkpoint.pt")
    assert_one_line_error(cli(train_main, ["vae", "--resume", "--epochs", "2", "--out", copy], capsys),
                          "does not fit")
    data = (trained / "checkpoint.pt").read_bytes()
    (copy / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    assert_one_line_error(cli(train_main, ["vae", "--resume", "--epochs", "2", "--out", copy], capsys),
                          "unreadable")
    (copy / "best.pt").write_bytes(data[:100])
    assert_one_line_error(cli(sample_main, [copy, "--out", tmp_path / "s.png"], capsys), "unreadable")


def test_sample_command_and_load_run(trained: Path, capsys, tmp_path: Path) -> None:
    from inference.training.load_run import load_run

    code, out, err = cli(sample_main, [trained, "-n", "9", "--out", tmp_path / "s.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "s.png").stat().st_size > 0
    run = load_run(trained)
    assert run.epoch == 1 and run.model.sample(5).shape == (5, 1, 8, 8)
    assert_one_line_error(cli(sample_main, [tmp_path, "--out", tmp_path / "t.png"], capsys), "not a run directory")
