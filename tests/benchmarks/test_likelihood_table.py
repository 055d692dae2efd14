"""The cross-family likelihood table prints exactly the numbers the evaluation files hold."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.likelihood_table import main, run_rows
from core.errors import DGMError


def write(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload))


def test_rows_carry_the_files_numbers_and_subsets(tmp_path: Path) -> None:
    run = tmp_path / "vae"
    run.mkdir()
    nll = 784 * math.log(2) * 1.5  # 1.5 bits/dim
    entry = {"log_likelihood": -nll, "nll": nll, "se": 2.0, "bpd": 1.5, "seconds": 12.0}
    write(run / "eval_test.json", {"split": "test", "n_examples": 50, "every": 1, "limit": 50,
                                   "estimators": {"ais": {"8": {**entry, "steps": 500, "schedule": "sigmoid"}},
                                                  "elbo": {"5000": entry}}})
    write(run / "eval_test_full.json", {"split": "test", "n_examples": 10000, "every": 1, "limit": None,
                                        "estimators": {"elbo": {"1": entry}}})
    write(run / "bdmc.json", {"n": 20, "gap": {"mean": 3.0, "se": 0.5, "bpd": 0.0055}, "seconds": 7.0})
    rows = run_rows(run, "VAE")
    assert rows[0].startswith("| VAE | test, first 50 | ais (8, T=500 sigmoid) | 815.14 ± 2.00 | 1.5000 ± 0.0037 |")
    assert "elbo (5000)" in rows[1] and "| test, all 10000 | elbo (1) |" in rows[2]
    assert "20 simulated | BDMC gap" in rows[3] and "3.00 ± 0.50 nats (0.0055 bits/dim)" in rows[3]


def test_gan_likelihood_rows(tmp_path: Path) -> None:
    run = tmp_path / "gan"
    run.mkdir()
    write(run / "gan_likelihood.json", {
        "chains": 8, "options": {"num_steps": 300}, "best_sigma": 0.05,
        "test": {"n": 50, "nll": 3000.0, "se": 30.0, "bpd": 5.52, "seconds": 100.0},
        "bdmc": {"n": 50, "gap": {"mean": 10.0, "se": 1.0, "bpd": 0.0184}, "seconds": 200.0}})
    rows = run_rows(run, "GAN")
    assert "ais (8, T=300, sigma=0.05)" in rows[0] and "3000.00 ± 30.00" in rows[0]
    assert "BDMC gap at sigma=0.05" in rows[1]


def test_a_directory_without_results_is_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(DGMError, match="no evaluation results"):
        run_rows(tmp_path, "x")
    with pytest.raises(DGMError, match="not a run directory"):
        run_rows(tmp_path / "missing", "x")
    with pytest.raises(DGMError, match="names for"):
        main([str(tmp_path), "--label", "a", "b"])
