"""Options shared by every trained model (``TrainConfig``); model options come from each model's config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from core.errors import DGMError
from data.specs import DATASETS


#: the largest --lr accepted: Adam's step is about lr per parameter, so more than this diverges at once
MAX_LR = 10.0
MAX_EPOCHS = 10 ** 6


@dataclass
class TrainConfig:
    """Options of ``python -m inference.train MODEL`` common to all models."""

    dataset: str = field(default="digits", metadata={"help": f"data set: {', '.join(DATASETS)}"})
    data_dir: Optional[str] = field(default=None, metadata={"help": "data directory (else $DGM_DATA_DIR, else the "
                                                                    "per-user cache)", "resumable": True})
    epochs: int = field(default=10, metadata={"help": "epochs to train in all (raise it with --resume to go on)",
                                              "resumable": True})
    batch_size: int = field(default=128, metadata={"help": "examples per optimisation step (under torchrun: the "
                                                                  "global batch, split over the processes)"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "seed of every random number generator"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={
        "help": "auto uses a GPU when there is one", "resumable": True})
    lr_schedule: Literal["constant", "cosine", "exponential", "burda"] = field(default="constant", metadata={
        "help": "learning-rate schedule over epochs: cosine anneals to 0 at --epochs; burda is Burda et al. "
                "(2016)'s 3^i epochs at lr 10^(-i/7), i = 0..7 (3280 epochs in all), then constant"})
    lr_decay: float = field(default=0.97, metadata={"help": "per-epoch factor of the exponential schedule"})
    adam_eps: float = field(default=1e-8, metadata={"help": "epsilon of Adam's denominator (Burda et al.: 1e-4)"})
    patience: int = field(default=0, metadata={"help": "stop after this many epochs without a better validation "
                                                       "objective (0: never)", "resumable": True})
    grad_clip: float = field(default=0.0, metadata={"help": "clip the gradient norm to this value (0: off)"})
    val_batch_size: int = field(default=1000, metadata={"help": "examples per validation pass", "resumable": True})
    epoch_size: Optional[int] = field(default=None, metadata={
        "help": "examples per epoch, drawn afresh from the shuffled training set every epoch, so that validation "
                "and a checkpoint come every N examples (long runs on a CPU budget, smoke tests); unset: the whole "
                "training set"})
    progress: Literal["epochs", "summary"] = field(default="epochs", metadata={
        "help": "epochs: a line per epoch (and a bar over each epoch's batches on a terminal); summary: a bar "
                "over the epochs on a terminal and one line when training ends (the main job's)",
        "resumable": True})
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata={
        "help": "arithmetic of the networks in training steps (autocast; fp16 with loss scaling, CUDA only); "
                "validation and evaluation always run in fp32", "resumable": True})

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise DGMError(f"unknown data set {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        for name in ("epochs", "batch_size", "val_batch_size"):
            if getattr(self, name) < 1:
                raise DGMError(f"--{name.replace('_', '-')} must be at least 1")
        if self.epochs > MAX_EPOCHS:
            raise DGMError(f"--epochs must be at most {MAX_EPOCHS:,}, got {self.epochs:,}")
        if not 0 < self.lr <= MAX_LR:
            raise DGMError(f"--lr must be in (0, {MAX_LR:g}] (Adam's step size), got {self.lr:g}")
        if not 0 < self.adam_eps <= 1:
            raise DGMError(f"--adam-eps must be in (0, 1], got {self.adam_eps:g}")
        if not 0 <= self.seed < 2 ** 32:
            raise DGMError(f"--seed must be an integer in 0..{2 ** 32 - 1} (numpy's seed range), got {self.seed}")
        if self.epoch_size is not None and self.epoch_size < 1:
            raise DGMError(f"--epoch-size must be at least 1, got {self.epoch_size}")
        if self.patience < 0 or self.grad_clip < 0 or not 0 < self.lr_decay <= 1:
            raise DGMError("--patience and --grad-clip must be >= 0, --lr-decay in (0, 1]")
