"""benchmarks/svi_overhead.py on tiny networks: every variant agrees with the plain loop, the table is printed."""
from __future__ import annotations

import re

import pyro
import torch

from benchmarks import svi_overhead as bench


def test_tiny_run_checks_and_times_each_variant(capsys):
    variants = ["plain", "ours", "pyro_svi", "pyro_jit", "plain_k", "ours_vectorized", "ours_sequential"]
    bench.main(["--hidden", "16", "--latent-dim", "2", "--batch-size", "8", "--blocks", "1", "--steps", "2",
                "--particles", "3", "--device", "cpu", "--threads", "1", "--variants", *variants])
    out = capsys.readouterr().out
    for name in variants:
        assert f"{name}: correctness against" in out
        assert f"{name}: correctness against plain" in out and "FAILED" not in out
    table = [line.split() for line in out.splitlines() if line.startswith(("K = 1", "K = 3"))]
    assert sorted(row[3] for row in table) == sorted(variants)
    assert all(float(row[4]) > 0 for row in table)  # steps/s
    assert [row for row in table if row[3] in ("plain", "plain_k")][0][6] == "1.000x"
    assert len(re.findall(r"^\| \d{4}-\d{2}-\d{2} \|", out, re.M)) == 2  # one RESULTS row per group, printed (not appended without --append)


def test_the_check_catches_a_wrong_gradient():
    pyro.clear_param_store()
    device = torch.device("cpu")
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.2), generator=torch.Generator().manual_seed(0))
    reference = bench.build_variant("plain", (8,), 2, 1, device)
    wrong_kl = bench.build_variant("plain_mc", (8,), 2, 1, device)  # another estimator: same mean, other noise use
    doubled = bench.Variant("doubled", reference.vae, lambda v: 2 * bench.plain_loss(reference.vae, v))
    assert bench.check(bench.build_variant("ours", (8,), 2, 1, device), reference, x).startswith("ok")
    assert bench.check(doubled, reference, x).startswith("FAILED")
    assert bench.check(wrong_kl, reference, x).startswith("FAILED")
