"""benchmarks/sampling_speed.py on a few families at batch 2: images of the data shape, a sane table."""
from __future__ import annotations

import pytest
import torch

from benchmarks import sampling_speed as bench
from core.errors import DGMError


def test_tiny_run_prints_fast_and_slow_rows(capsys):
    names = ["vae_iaf", "ppca", "flow_glow", "pixelcnn_naive", "pixelcnn_cached", "gan_dcgan"]
    bench.main(["-n", "2", "--repeats", "1", "--naive-pixels", "1", "--device", "cpu", "--only", *names])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in names}
    assert set(rows) == set(names)
    assert "fast: 1 network pass" in rows["flow_glow"] and "fast: 1 network pass" in rows["gan_dcgan"]
    assert "slow: D = 784 sequential full passes" in rows["pixelcnn_naive"]
    assert "slow: D = 784 sequential steps (cached" in rows["pixelcnn_cached"]
    assert rows["pixelcnn_naive"].split()[-3] == "yes"  # the naive time is marked as extrapolated
    assert "measured on cpu" in out


def test_naive_time_is_per_step_time_times_d():
    entry = next(e for e in bench.ENTRIES if e.name == "pixelcnn_naive")
    model = bench.build(entry, torch.device("cpu"))
    _, factor = bench.sampler_fn(entry, model, 2, naive_full=False, naive_pixels=4)
    assert factor == 784 / 4


def test_sample_output_is_checked():
    model = bench.build(next(e for e in bench.ENTRIES if e.name == "gan_mlp"), torch.device("cpu"))
    bench.check_images(model.sample(3), 3, model)
    with pytest.raises(DGMError, match="shape"):
        bench.check_images(model.sample(3)[:2], 3, model)
    with pytest.raises(DGMError, match="data scale"):
        bench.check_images(model.sample(3) + 300, 3, model)
