"""benchmarks/eval_throughput.py on a tiny VAE run: samples/s, GFLOP/s and the fraction of the peak."""
from __future__ import annotations

import torch

from benchmarks import eval_throughput as bench
from inference.train import train
from tests.conftest import cli


def test_tiny_run_reports_rate_flops_and_fraction(tmp_path, capsys):
    run = train("vae", tmp_path / "vae", dataset="binarized_digits", epochs=1, hidden=(16,), latent_dim=2,
                batch_size=256, device="cpu")
    capsys.readouterr()
    # F_enc: 64 -> 16 -> 4 (2 L); F_sample: decoder 2 -> 16 -> 64, + 6 per output + 12 per latent dimension
    f_enc = 2 * 64 * 16 + 16 + 2 * 16 * 4 + 4
    f_sample = 2 * 2 * 16 + 16 + 2 * 16 * 64 + 64 + 6 * 64 + 12 * 2
    x = run.dataset.split("test")[:3]
    assert bench.flops_per_example_and_sample(run.model, x) == (f_enc, f_sample)
    assert bench.total_flops((f_enc, f_sample), "importance_sampled", 3, 5) == 3 * f_enc + 15 * f_sample
    assert bench.total_flops((f_enc, f_sample), "naive_monte_carlo", 3, 5) == 15 * f_sample
    code, out, _ = cli(bench.main, [tmp_path / "vae", "--num-samples", "7", "--limit", "4", "--repeats", "1",
                                    "--peak-n", "256", "--device", "cpu"], capsys)
    assert code == 0
    assert "measured on cpu" in out and "GFLOP/s float32" in out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith(("importance_sampled", "naive"))]
    assert len(lines) == 2
    for cells in lines:
        assert float(cells[2].replace(",", "")) > 0  # samples/s
        assert float(cells[4]) > 0 and cells[5].endswith("%")  # GFLOP/s and fraction of the peak
    assert "of the measured float32 matmul peak" in out


def test_models_without_encoder_have_no_flop_count():
    assert bench.flops_per_example_and_sample(torch.nn.Linear(2, 2), torch.zeros(1, 2)) is None
