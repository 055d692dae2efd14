"""The epoch loop shared by every trainer (SVI and adversarial): bookkeeping, checkpoints, stopping.

A trainer subclasses :class:`EpochLoop` and supplies ``train_epoch(epoch) -> {"train_loss": ...,
...}``, ``validate() -> {"val_...": ...}``, ``objective_of(row)`` (the validation objective, higher
is better) and ``checkpoint() -> dict``. Each epoch then appends one row to ``metrics.csv``, writes
``best.pt`` when the objective improves and ``checkpoint.pt`` always (atomically, in that order,
so a run killed at any point resumes from a consistent state), and stops early after
``config.patience`` epochs without improvement. ``config.progress`` chooses what is printed: a line per
epoch (``epochs``), or a bar over the epochs (on a terminal only) and one summary line at the end
(``summary``, the main job's).

Under torchrun (``dist`` enabled) every process trains; validation runs on rank 0 and its row is
broadcast, so all processes take the same best-epoch and early-stopping decisions; only rank 0
writes ``metrics.csv`` and checkpoints, prints, and calls ``on_epoch_end`` (figures).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from core.errors import DGMError, TrainingDiverged
from core.progress import in_notebook, progress_bar
from core.run_dir import BEST, CHECKPOINT, MetricsLog, atomic_torch_save, check_resumable, load_checkpoint, load_state
from core.seeding import rng_state, set_rng_state
from data.dataset import epoch_batches
from inference.training.distributed import SINGLE_PROCESS, DistributedContext
from inference.training.precision import Precision


VAL_SEED = 12345  # validation noise is the same every epoch, so epochs compare fairly


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    step: int = 0
    best_val: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0


class EpochLoop:
    """Shared ``fit``: subclasses set ``config``, ``run_dir``, ``metrics`` and ``state`` and the hooks."""

    config: Any
    dataset: Any
    run_dir: Path
    model: Any
    model_name: str
    device: torch.device
    metrics: MetricsLog
    state: TrainState
    dist: DistributedContext = SINGLE_PROCESS
    precision: Precision
    #: report progress (``config.progress``: each epoch's line, or a bar and a summary line); False: silent, for
    #: callers that print their own summary (the Python API of user programs)
    verbose: bool = True

    def loop_state(self) -> dict[str, Any]:
        """The checkpoint entries every trainer saves: where training stands, RNG states, the fp16 scaler."""
        return {"schema_version": 1, "epoch": self.state.epoch, "step": self.state.step, "rng": rng_state(),
                "best_val": self.state.best_val, "best_epoch": self.state.best_epoch,
                "bad_epochs": self.state.bad_epochs,
                **({"scaler_state": self.precision.state_dict()} if self.precision.scaler else {})}

    def restorable(self) -> dict[str, Any]:
        """The trainer's own checkpoint entries and the objects they restore (optimisers, schedulers),
        e.g. ``{"optimizer_state": self.optimizer, "scheduler_state": self.scheduler}``."""
        raise NotImplementedError

    def checkpoint(self) -> dict[str, Any]:
        """Everything :meth:`resume` needs: loop state, RNG states, weights, optimisers and schedulers."""
        return {**self.loop_state(), "model": self.model_name, "model_state": self.model.state_dict(),
                **{key: part.state_dict() for key, part in self.restorable().items()}}

    def resume(self) -> None:
        """Restore everything from ``checkpoint.pt`` and drop ``metrics.csv`` rows written after it; a
        damaged or foreign checkpoint is a one-line error naming the entry."""
        path = self.run_dir / CHECKPOINT
        state = load_checkpoint(path, map_location=self.device)
        parts = self.restorable()
        check_resumable(state, path, (*parts, "best_val", "best_epoch", "bad_epochs"))
        load_state(self.model, state, path, self.model_name)
        for key, part in parts.items():
            try:
                part.load_state_dict(state[key])
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
                raise DGMError(f"{path} is damaged: its {key} does not fit this run ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}); start a new run") from None
        try:
            self.restore_loop_state(state)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise DGMError(f"{path} is damaged: its RNG or loop state cannot be restored ({type(exc).__name__})"
                           "; start a new run") from None

    def restore_loop_state(self, state: dict[str, Any]) -> None:
        """Undo :meth:`loop_state` from a loaded checkpoint and drop ``metrics.csv`` rows written after it."""
        set_rng_state(state["rng"])
        self.precision.load_state_dict(state.get("scaler_state"))
        self.state = TrainState(int(state["epoch"]), int(state["step"]), float(state["best_val"]),
                                int(state["best_epoch"]), int(state["bad_epochs"]))
        if self.dist.is_main:
            self.metrics.truncate_after(self.state.epoch)

    def training_batches(self, epoch: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The training images of ``epoch`` on the device and the indices of its global batches: a fresh
        permutation each epoch, cut to the first ``--epoch-size`` examples when that is set."""
        x = self.dataset.train_epoch(epoch, self.config.seed).to(self.device)
        batches = epoch_batches(x.shape[0], self.config.batch_size, self.config.seed, epoch)
        if self.config.epoch_size is not None and self.config.epoch_size < x.shape[0]:
            order = torch.cat(batches)[:self.config.epoch_size]
            batches = list(order.split(self.config.batch_size))
        return x, batches

    def train_epoch(self, epoch: int) -> dict[str, float]:
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        raise NotImplementedError

    def objective_of(self, row: dict[str, Any]) -> float:
        raise NotImplementedError

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """Track the best objective, then write metrics, ``best.pt`` and ``checkpoint.pt``."""
        self.state.epoch = epoch
        value = self.objective_of(row)
        if value > self.state.best_val:
            self.state.best_val, self.state.best_epoch, self.state.bad_epochs = value, epoch, 0
        else:
            self.state.bad_epochs += 1
        if not self.dist.is_main:
            return
        self._check_finite_weights(epoch)
        self.metrics.append(row)
        state = self.checkpoint()
        if self.state.best_epoch == epoch:
            atomic_torch_save(state, self.run_dir / BEST)
        atomic_torch_save(state, self.run_dir / CHECKPOINT)

    def _check_finite_weights(self, epoch: int) -> None:
        """Never checkpoint non-finite weights: an update can turn them NaN after the step's loss was finite."""
        bad = next((name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:
            kept = f"last good checkpoint: epoch {epoch - 1} in {self.run_dir / CHECKPOINT}" \
                if (self.run_dir / CHECKPOINT).exists() else "no checkpoint was written yet"
            raise TrainingDiverged(f"parameter {bad!r} became non-finite in epoch {epoch} (by step {self.state.step}); "
                                   f"lower --lr or set --grad-clip; {kept}")

    def fit(self, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> TrainState:
        """Train until ``config.epochs`` (or early stopping); returns the final state.

        ``config.progress``: ``"epochs"`` prints each epoch's row (``metrics.csv`` holds them either way);
        ``"summary"`` a bar over the epochs (on a terminal) and one line when training ends, which is also
        what a notebook gets."""
        every_epoch = self.verbose and getattr(self.config, "progress", "epochs") == "epochs" and not in_notebook()
        first, began = self.state.epoch, time.perf_counter()
        bar = None if every_epoch or not self.dist.is_main or not self.verbose else progress_bar(
            total=self.config.epochs, desc="epochs", unit="epoch")
        if bar is not None:
            bar.update(self.state.epoch)
        row: dict[str, Any] = {}
        stopped = ""
        try:
            while self.state.epoch < self.config.epochs:
                epoch = self.state.epoch + 1
                start = time.perf_counter()
                row = {"epoch": epoch}
                losses = self.train_epoch(epoch)
                row.update({"step": self.state.step, **losses})
                row.update(self.dist.on_main(self.validate))
                row["seconds"] = time.perf_counter() - start
                self.end_epoch(epoch, row)
                if self.dist.is_main:
                    if every_epoch:
                        print(_row_line(row), flush=True)
                    elif bar is not None:
                        bar.update(1)
                    if on_epoch_end is not None:
                        on_epoch_end(epoch, row)
                if self.config.patience and self.state.bad_epochs >= self.config.patience:
                    stopped = (f"early stopping: the validation objective did not improve for {self.config.patience} "
                               f"epochs (best epoch {self.state.best_epoch})")
                    if self.dist.is_main and every_epoch:
                        print(stopped, flush=True)
                    break
        finally:
            if bar is not None:
                bar.close()
        if self.dist.is_main and self.verbose and not every_epoch and self.state.epoch > first:
            print(f"trained epochs {first + 1}-{self.state.epoch} in {time.perf_counter() - began:.1f}s; last: "
                  f"{_row_line({k: v for k, v in row.items() if k not in ('epoch', 'step', 'seconds')})}; best epoch "
                  f"{self.state.best_epoch}" + (f"; {stopped}" if stopped else ""), flush=True)
        self.dist.barrier()  # every process leaves training once rank 0's last checkpoint is written
        return self.state


def _row_line(row: dict[str, Any]) -> str:
    """``epoch 3  step 33  train_loss 112.3 ...``: a metrics row as one line."""
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
