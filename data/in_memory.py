"""Data sets held in memory: a user's own tensors (or a slice of a named data set) as a ``Dataset``.

``InMemoryDataset(spec, train, val, test)`` has what trainers and evaluation read of
``data.dataset.Dataset`` (``name``, ``spec``, ``directory``, ``split``, ``labels``, ``train_epoch``).
``image_spec(shape, levels)`` describes images of any shape (C, H, W) with ``levels`` integer levels,
so a small model (a 3x3 binary image, say) needs no hand-made internal objects; ``tensor_spec(shape,
levels)`` describes examples of any event shape, continuous (``levels=None``) or discrete.
``tensor_dataset(x, levels)`` cuts one tensor of shape (N, ...) into train/val/test splits with a fixed
permutation. ``save_dataset``/``load_saved_dataset`` keep the splits in a run directory (``data.pt``, a
plain dict of tensors loadable with ``torch.load(weights_only=True)``), and ``dataset_fingerprint`` names
their content (SHA-256 of every split's bytes).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from core.errors import DGMError
from core.run_dir import atomic_torch_save
from data.specs import SPLITS, DatasetSpec


def image_spec(shape: tuple[int, ...], levels: int, name: str = "custom",
               splits: tuple[int, int, int] = (0, 0, 0)) -> DatasetSpec:
    """The spec of images (C, H, W) (or (H, W), one channel) with integer levels 0..levels-1."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise DGMError(f"image shape must be (C, H, W) or (H, W) of positive sizes, got {shape}")
    _check_levels(levels)
    return DatasetSpec(name, shape, levels, splits, f"in-memory images {shape}, {levels} levels")  # type: ignore[arg-type]


def _check_levels(levels: int | None) -> None:
    if levels is None:
        return
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise DGMError(f"levels must be an integer of at least 2 (2 for binary data), or None for continuous data, "
                       f"got {levels!r}")


def tensor_spec(shape: tuple[int, ...], levels: int | None = None, name: str = "custom",
                splits: tuple[int, int, int] = (0, 0, 0)) -> DatasetSpec:
    """The spec of examples of event shape ``shape`` (any rank, () for scalars): real-valued when ``levels``
    is None, else integer levels 0..levels-1. ``dim`` (bits/dim) is the product of ``shape``."""
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise DGMError(f"the event shape must have positive sizes, got {shape}")
    _check_levels(levels)
    kind = "real-valued" if levels is None else f"{levels} levels"
    return DatasetSpec(name, shape, levels, splits, f"in-memory tensors {shape}, {kind}")  # type: ignore[arg-type]


def check_examples(x: torch.Tensor, spec: DatasetSpec, what: str = "the data") -> None:
    """Refuse, in one line, examples ``x`` that are not (N, *spec.shape) float values in the spec's support:
    integer levels 0..levels-1, or finite reals when ``spec.levels`` is None."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DGMError(f"{what} must be a float tensor, got {type(x).__name__} {getattr(x, 'dtype', '')}")
    if tuple(x.shape[1:]) != tuple(spec.shape):
        raise DGMError(f"{what} has examples of shape {tuple(x.shape[1:])}, the spec says {tuple(spec.shape)}")
    if spec.levels is None:
        if x.numel() and not torch.isfinite(x).all():
            raise DGMError(f"{what} holds NaN or infinite values")
    elif x.numel() and (x.min() < 0 or x.max() > spec.levels - 1 or not torch.equal(x, x.round())):
        raise DGMError(f"{what} must hold integer levels 0..{spec.levels - 1}")


class InMemoryDataset:
    """Splits given as float tensors (N, *spec.shape), checked against the spec once: integer levels
    0..levels-1, or finite reals when ``spec.levels`` is None."""

    def __init__(self, spec: DatasetSpec, train: torch.Tensor, val: torch.Tensor | None = None,
                 test: torch.Tensor | None = None):
        given = {"train": train, "val": val, "test": test}
        self._splits = {k: self._checked(k, v, spec) for k, v in given.items() if v is not None}
        sizes = tuple(self._splits[k].shape[0] if k in self._splits else 0 for k in SPLITS)
        self.spec = DatasetSpec(spec.name, spec.shape, spec.levels, sizes, spec.description)  # type: ignore[arg-type]
        self.directory: Path | None = None

    @staticmethod
    def _checked(split: str, x: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise DGMError(f"the {split} split must be a tensor, got {type(x).__name__}")
        x = x if x.is_floating_point() else x.float()
        if x.dim() == 3 and len(spec.shape) == 3 and spec.shape[0] == 1:
            x = x.unsqueeze(1)
        check_examples(x, spec, f"the {split} split")
        return x

    @property
    def name(self) -> str:
        return self.spec.name

    def split(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise DGMError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if split not in self._splits:
            raise DGMError(f"this in-memory data set has no {split} split")
        return self._splits[split]

    def require(self, splits: tuple[str, ...] = SPLITS) -> None:
        """Every split of ``splits`` is there (a one-line error naming the first missing one)."""
        for split in splits:
            self.split(split)

    def labels(self, split: str) -> torch.Tensor | None:
        return None

    def train_epoch(self, epoch: int, seed: int) -> torch.Tensor:
        return self.split("train")



def tensor_dataset(x: torch.Tensor, levels: int | None = None, *, val: float | torch.Tensor = 0.1,
                   test: float | torch.Tensor = 0.1, seed: int = 0, name: str = "custom") -> InMemoryDataset:
    """``x`` (N, ...) as train/val/test splits: ``val`` and ``test`` are fractions of N taken after a
    permutation seeded by ``seed`` (at least one example each), or tensors of their own. ``levels``: None for
    real-valued data, else the number of integer levels (2 for binary data); the event shape is ``x.shape[1:]``."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise DGMError("tensor_dataset needs a tensor of shape (N, ...) with at least one example")
    x = x if x.is_floating_point() else x.float()
    spec = tensor_spec(tuple(x.shape[1:]), levels, name)
    n = x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cuts: dict[str, torch.Tensor | None] = {}
    start = 0
    for split, given in (("val", val), ("test", test)):
        if isinstance(given, torch.Tensor):
            cuts[split] = given
            continue
        if isinstance(given, bool) or not isinstance(given, (int, float)) or not 0 <= given < 1:
            raise DGMError(f"{split} must be a fraction in [0, 1) or a tensor, got {given!r}")
        size = max(1, round(given * n)) if given > 0 else 0
        cuts[split] = x[order[start:start + size]] if size else None
        start += size
    if start >= n:
        raise DGMError(f"{n} examples leave none for training after the val and test splits; give more data or "
                       "smaller fractions")
    return InMemoryDataset(spec, x[order[start:]], cuts["val"], cuts["test"])


def dataset_fingerprint(dataset: InMemoryDataset) -> str:
    """SHA-256 of the splits' shapes and float32 bytes: equal for the same data, different otherwise."""
    digest = hashlib.sha256()
    for split in SPLITS:
        if split in dataset._splits:
            values = dataset._splits[split].detach().to("cpu", torch.float32).contiguous()
            digest.update(f"{split}{tuple(values.shape)}".encode())
            digest.update(values.numpy().tobytes())
    return digest.hexdigest()


def save_dataset(dataset: InMemoryDataset, path: Path) -> None:
    """The splits and the spec as a plain dict of tensors, numbers and strings, written atomically."""
    spec = dataset.spec
    atomic_torch_save({"name": spec.name, "shape": list(spec.shape), "levels": spec.levels,
                       "description": spec.description,
                       "splits": {k: v.detach().cpu() for k, v in dataset._splits.items()}}, Path(path))


def load_saved_dataset(path: Path) -> InMemoryDataset:
    """What :func:`save_dataset` wrote (a one-line error for a missing or damaged file)."""
    path = Path(path)
    if not path.is_file():
        raise DGMError(f"no saved data at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        splits = state["splits"]
        spec = DatasetSpec(state["name"], tuple(state["shape"]), state["levels"], (0, 0, 0), state["description"])  # type: ignore[arg-type]
        return InMemoryDataset(spec, splits["train"], splits.get("val"), splits.get("test"))
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DGMError(f"{path} is damaged or not saved data ({type(exc).__name__}); restore it") from None
