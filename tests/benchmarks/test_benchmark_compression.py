"""``python -m benchmarks.compression`` on tiny runs: one RESULTS row per number, the file decoded bit-exactly,
rates next to the model's NLL, baselines on the same images; nothing appended without --append."""
from __future__ import annotations

import bz2
import gzip
import re

import pytest
import torch

import benchmarks.compression as compression
from evaluation.compression.baselines import baseline_sizes
from tests.conftest import cli
from tests.evaluation.compression.compression_testing import train_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bench_runs")
    data = ("--dataset", "binarized_digits", "--epochs", "1")
    return (train_run(root / "arm", "pixelcnn", "--channels", "8", "--residual-blocks", "1", "--output-channels", "8",
                      *data),
            train_run(root / "vae", "vae", "--hidden", "16", "--latent-dim", "3", *data))


def test_rows_for_an_arm_and_a_vae(runs, tmp_path, capsys, monkeypatch):
    appended = []
    monkeypatch.setattr(compression, "emit", lambda rows, append: appended.extend(rows) or 0)
    code, out, err = cli(compression.main, [*runs, "--every", "5", "--limit", "20", "--num-samples", "20",
                                            "--out", tmp_path / "files"], capsys)
    assert code == 0, err
    assert (tmp_path / "files" / "arm.dgmz").is_file() and (tmp_path / "files" / "vae.dgmz").is_file()
    arm_rows = [r for r in appended if "pixelcnn" in r or "(no model)" in r][:9]
    assert all(re.match(r"^\| \d{4}-\d{2}-\d{2} \| ", r) for r in appended)
    assert sum("decoded bit-exact" in r for r in appended) == 2
    assert any("| exact | NLL" in r for r in arm_rows) and any("payload vs exact NLL" in r for r in arm_rows)
    vae_rows = [r for r in appended if "vae (bernoulli head)" in r]
    assert [r.split(" | ")[6] for r in vae_rows][1:] == [
        "lossless file: bits-back net rate (payload minus initial bits)", "elbo (1)", "elbo (mean of 20)",
        "importance_sampled (20)"]
    assert sum("(no model)" in r for r in appended) == 8  # 6 stream baselines (raw and packed) + 2 PNG, once
    assert "binarized_digits, every 5th test image (20 images)" in appended[0]


def test_baselines_count_every_byte():
    x = torch.randint(0, 2, (5, 1, 8, 8)).float()
    sizes = baseline_sizes(x, 2)
    raw = x.to(torch.uint8).numpy().tobytes()
    assert sizes["gzip"] == len(gzip.compress(raw, compresslevel=9, mtime=0))
    assert sizes["bz2"] == len(bz2.compress(raw, 9))
    assert sizes["png_files"] > 5 * 60 > sizes["png_mosaic"] - 60  # each file pays PNG's fixed chunks
    assert "gzip_packed" not in baseline_sizes(x * 3, 4)
