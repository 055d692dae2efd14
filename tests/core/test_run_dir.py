"""Run-directory files: atomic writes, checkpoints that load with weights_only=True, clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.errors import DGMError
from core.run_dir import MetricsLog, atomic_torch_save, load_checkpoint, read_config, write_json
from core.seeding import rng_state, seed_everything, set_rng_state


def test_checkpoint_round_trip_with_weights_only(tmp_path: Path) -> None:
    state = {"model": "vae", "model_state": {"w": torch.randn(3)}, "epoch": 2, "rng": rng_state()}
    atomic_torch_save(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model_state"]["w"], state["model_state"]["w"]) and loaded["epoch"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_truncated_and_foreign_checkpoints_give_one_line_errors(tmp_path: Path) -> None:
    atomic_torch_save({"model": "vae", "model_state": {"w": torch.randn(1000)}}, tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DGMError, match="unreadable"):
        load_checkpoint(tmp_path / "t.pt")
    torch.save({"something": torch.zeros(1)}, tmp_path / "f.pt")
    with pytest.raises(DGMError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "f.pt")
    with pytest.raises(DGMError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_restores_every_generator() -> None:
    import random

    import numpy as np

    seed_everything(3)
    saved = rng_state()
    first = (torch.rand(2), random.random(), np.random.rand())
    set_rng_state(saved)
    second = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]


def test_metrics_log_appends_and_truncates(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.csv")
    for epoch in (1, 2, 3):
        log.append({"epoch": epoch, "train_loss": 1.0 / epoch})
    log.truncate_after(2)
    assert [int(r["epoch"]) for r in log.rows()] == [1, 2]
    assert float(log.rows()[1]["train_loss"]) == 0.5


def test_read_config_refuses_non_runs(tmp_path: Path) -> None:
    with pytest.raises(DGMError, match="not a run directory"):
        read_config(tmp_path)
    write_json(tmp_path / "config.json", {"schema_version": 99})
    with pytest.raises(DGMError, match="schema_version"):
        read_config(tmp_path)
