"""The shared row writer and the FLOP counter of the benchmark scripts."""
from __future__ import annotations

import torch

from benchmarks.flops import network_flops, peak_gflops
from benchmarks.results_rows import append_rows, results_row


def test_row_has_the_eight_results_columns_and_names_the_device(tmp_path):
    row = results_row(torch.device("cpu"), "binarized_mnist", "VAE a|b", "ELBO (K=1)", "1.0 ± 0.1",
                      command="python -m x --y", command_note="(note)")
    cells = row.strip("|").split(" | ")
    assert row.startswith("| ") and row.endswith(" |")
    assert len(row.replace("\\|", "").strip("|").split("|")) == 8  # escaped pipes do not open cells
    assert "measured on cpu" in cells[2] and "no GPU used" in cells[2]
    assert cells[3] == "`python -m x --y` (note)"
    path = tmp_path / "RESULTS.md"
    path.write_text("header\n")
    append_rows([row, row + "\n"], path)
    assert path.read_text().splitlines()[1:] == [row, row]


def test_linear_and_conv_flops_match_the_formula():
    linear = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 5, bias=False))
    # batch 2: 2 * 2 * 3 * 4 + 2 * 4 (bias) + 2 * 2 * 4 * 5
    assert network_flops(linear, torch.zeros(2, 3)) == 48 + 8 + 80
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    # output (1, 3, 4, 4): 2 * 48 outputs * 2 input channels * 9 taps + 48 bias adds
    assert network_flops(conv, torch.zeros(1, 2, 4, 4)) == 2 * 48 * 2 * 9 + 48
    assert not any(m._forward_hooks for m in linear.modules())  # hooks removed


def test_peak_is_a_positive_rate():
    assert peak_gflops(torch.device("cpu"), torch.float32, n=64, repeats=1) > 0
