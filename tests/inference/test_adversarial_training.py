"""``python -m inference.train gan``: the run directory, figures, resume = uninterrupted run, clear errors."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from core.errors import DGMError, run_cli
from inference.training.load_run import load_run
from inference.train import main as train_main
from tests.conftest import cli

TINY = ["--dataset", "digits", "--arch", "mlp", "--hidden", "32", "--latent-dim", "4", "--val-samples", "100",
        "--device", "cpu", "--batch-size", "256"]


@pytest.fixture(scope="module", autouse=True)
def digits_classifier(tmp_path_factory: pytest.TempPathFactory):
    """A quickly trained digits classifier in a private cache folder (the trainer finds it there)."""
    from evaluation.classifier import classifier_path, save_classifier, train_classifier

    folder = tmp_path_factory.mktemp("classifiers")
    save_classifier(train_classifier("digits", epochs=8, progress=False), classifier_path("digits", folder))
    old = os.environ.get("DGM_CLASSIFIER_DIR")
    os.environ["DGM_CLASSIFIER_DIR"] = str(folder)
    yield folder
    if old is None:
        del os.environ["DGM_CLASSIFIER_DIR"]
    else:
        os.environ["DGM_CLASSIFIER_DIR"] = old


def train(argv: list) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(train_main, ["gan", *[str(a) for a in argv]])
    assert info.value.code == 0


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gan") / "full"
    train([*TINY, "--epochs", "2", "--out", out])
    return out


def test_run_directory_figures_and_metrics(two_epochs: Path) -> None:
    names = {p.name for p in two_epochs.iterdir()}
    assert {"config.json", "metrics.csv", "checkpoint.pt", "best.pt", "losses.png", "val_fd.png",
            "interpolation.png", "samples_epoch_000.png", "samples_epoch_001.png", "samples_epoch_002.png",
            "sample_quality_test.json", "class_histogram_test.png"} <= names
    table = rows(two_epochs)
    assert [r["epoch"] for r in table] == ["1", "2"]
    assert list(table[0])[:3] == ["epoch", "step", "train_loss"]
    for key in ("train_d_loss", "train_d_real", "train_d_fake", "val_fd", "val_class_entropy", "seconds"):
        assert all(float(r[key]) == float(r[key]) for r in table), key  # present and not NaN
    assert int(table[1]["step"]) == 2 * 6  # ceil(1297 / 256) discriminator updates an epoch
    config = json.loads((two_epochs / "config.json").read_text())
    assert config["model"] == "gan" and config["model_options"]["loss"] == "non_saturating"


def test_checkpoints_load_weights_only_and_best_has_the_lowest_val_fd(two_epochs: Path) -> None:
    best = torch.load(two_epochs / "best.pt", weights_only=True)
    last = torch.load(two_epochs / "checkpoint.pt", weights_only=True)
    assert {"optimizer_state", "d_optimizer_state", "rng", "model_state"} <= set(last)
    fds = [float(r["val_fd"]) for r in rows(two_epochs)]
    assert best["epoch"] == 1 + fds.index(min(fds))
    assert any(k.startswith("discriminator.") for k in best["model_state"])


def test_load_run_rebuilds_the_gan_and_the_quality_file_has_the_floor(two_epochs: Path) -> None:
    run = load_run(two_epochs)
    assert type(run.model).__name__ == "GAN" and not run.model.training
    x = run.model.sample(3)
    assert x.shape == (3, 1, 8, 8) and torch.equal(x, x.round())
    quality = json.loads((two_epochs / "sample_quality_test.json").read_text())
    assert quality["checkpoint_epoch"] == run.epoch
    for part in ("samples", "floor"):
        assert {"fd", "fd_se", "kid", "kid_se", "class_histogram", "class_entropy"} <= set(quality[part])
        assert sum(quality[part]["class_histogram"]) == pytest.approx(1.0, abs=1e-5)
    # two epochs of a tiny GAN are far from real data; real training images are not
    assert quality["samples"]["fd"] > quality["floor"]["fd"]


def test_resume_reproduces_the_uninterrupted_run(two_epochs: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    train([*TINY, "--epochs", "1", "--out", out])
    train([*TINY, "--epochs", "2", "--out", out, "--resume"])
    full = torch.load(two_epochs / "checkpoint.pt", weights_only=True)
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    for key, value in full["model_state"].items():
        assert torch.equal(value, resumed["model_state"][key]), key
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in rows(two_epochs)]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in rows(out)]


@pytest.mark.parametrize("loss, extra", [("minimax", []), ("hinge", ["--arch", "dcgan", "--channels", "4"]),
                                         ("wgan_gp", ["--d-steps", "2", "--adam-betas", "0.0", "0.9"])])
def test_every_loss_trains_with_finite_losses(loss: str, extra: list, tmp_path: Path) -> None:
    out = tmp_path / loss
    train([*TINY, "--epochs", "1", "--val-samples", "0", "--loss", loss, *extra, "--out", out])
    (row,) = rows(out)
    assert all(float(row[k]) == float(row[k]) and abs(float(row[k])) < 1e6
               for k in ("train_loss", "train_d_loss"))
    assert "val_fd" not in row and (out / "best.pt").is_file()  # no validation: best.pt is the last epoch


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, _, err = result
    assert code == 2
    assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_unknown_loss_name(capsys, tmp_path: Path) -> None:
    assert_one_line_error(cli(train_main, ["gan", *TINY, "--loss", "lsgan", "--out", tmp_path / "x"], capsys),
                          "invalid choice: 'lsgan'", "non_saturating")
    assert not (tmp_path / "x").exists()


def test_resume_with_another_latent_size_is_refused(two_epochs: Path, capsys, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(two_epochs, copy)
    argv = ["gan", *TINY, "--epochs", "3", "--latent-dim", "8", "--resume", "--out", copy]
    assert_one_line_error(cli(train_main, argv, capsys), "--latent-dim 8 differs from the saved run's 4")


def test_checkpoint_of_another_latent_size_is_refused_by_name(two_epochs: Path, tmp_path: Path) -> None:
    copy = tmp_path / "edited"
    shutil.copytree(two_epochs, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model_options"]["latent_dim"] = 16
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(DGMError, match="checkpoint's generator takes latent_dim 4, but the config asks for "
                                       "latent_dim 16"):
        load_run(copy)


def test_patience_without_validation_is_refused(capsys, tmp_path: Path) -> None:
    assert_one_line_error(cli(train_main, ["gan", *TINY, "--val-samples", "0", "--patience", "2",
                                           "--out", tmp_path / "p"], capsys), "--patience needs")
