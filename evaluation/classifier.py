"""A small CNN classifier trained in the project: the feature extractor of the sample-quality metrics.

One classifier per family of data sets, trained on the family's grey-level images scaled to [0, 1]:

    mnist          for mnist, binarized_mnist, dynamic_binarized_mnist   (28x28, 128 features)
    fashion_mnist  for fashion_mnist                                      (28x28, 128 features)
    digits         for digits, binarized_digits                           (8x8,   64 features)

Binary samples must be judged by the same classifier as grey ones, so half of every training batch
is binarized the way the family's binary data sets are (Bernoulli(pixel) for MNIST, pixel >= 1/2
for digits): the classifier then reads both representations, and the sample-quality floor (real
train against real test, in the run's representation) shows what remains of the gap.

Network (28x28): Conv5x5(32) ReLU MaxPool Conv5x5(64) ReLU MaxPool Linear(128) ReLU [features]
Dropout(0.3) Linear(10); (8x8): Conv3x3(32) ReLU Conv3x3(64) ReLU MaxPool Linear(64) ReLU [features]
Dropout(0.3) Linear(10). The penultimate ReLU layer is the feature space of FD and KID.

Checkpoints are plain dicts (``torch.load(weights_only=True)``) kept in a cache folder:
``--classifier-dir``, else ``$DGM_CLASSIFIER_DIR``, else ``$XDG_CACHE_HOME/dgm-pyro/classifiers``.
``python -m evaluation.classifier --dataset mnist`` trains one and prints its test accuracy.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.config import OneLineErrorParser
from core.errors import DGMError, run_cli
from data import load_dataset
from core.run_dir import git_commit, hardware
from core.run_dir import atomic_torch_save

#: data set -> the family whose classifier judges it
FAMILY: dict[str, str] = {
    "mnist": "mnist", "binarized_mnist": "mnist", "dynamic_binarized_mnist": "mnist",
    "fashion_mnist": "fashion_mnist", "digits": "digits", "binarized_digits": "digits",
}
#: how each family's binary data sets are made from its grey images in [0, 1]
BINARIZATION = {"mnist": "bernoulli", "fashion_mnist": "bernoulli", "digits": "threshold"}
#: default training epochs per family (MNIST: 50,000 images an epoch; digits: 1,297)
DEFAULT_EPOCHS = {"mnist": 6, "fashion_mnist": 6, "digits": 60}
#: about how long training a family's classifier takes on 2 CPU cores (seconds), for the announcement
EXPECTED_SECONDS = {"mnist": 300, "fashion_mnist": 300, "digits": 15}
NUM_CLASSES = 10
KIND = "dgm_feature_classifier"
CLASSIFIER_SEED = 0


class Classifier(nn.Module):
    """Images in [0, 1], (N, C, H, W) -> ``features`` (N, F) -> ``forward`` logits (N, 10)."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int = NUM_CLASSES):
        super().__init__()
        channels, height, width = shape
        self.shape = tuple(shape)
        large = height >= 16
        kernel = 5 if large else 3
        layers: list[nn.Module] = [nn.Conv2d(channels, 32, kernel, padding=kernel // 2), nn.ReLU()]
        if large:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(32, 64, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool2d(2)]
        self.conv = nn.Sequential(*layers)
        side_h, side_w = (height // 4, width // 4) if large else (height // 2, width // 2)
        self.feature_dim = 128 if large else 64
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(64 * side_h * side_w, self.feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer features (N, F) of images in [0, 1]."""
        return self.embed(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class FeatureClassifier:
    """A trained classifier with its record: family, data scale, test accuracies, where it is stored."""

    net: Classifier
    family: str
    info: dict[str, Any]
    path: Path | None = None

    @torch.no_grad()
    def features_and_probs(self, x: torch.Tensor, levels: int, batch_size: int = 1000,
                           device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, F) float64 and class probabilities (N, 10) of images ``x`` on the data scale 0..levels-1."""
        if tuple(x.shape[1:]) != self.net.shape:
            raise DGMError(f"the {self.family} classifier reads images of shape {self.net.shape}, "
                           f"got {tuple(x.shape[1:])}")
        device = device or next(self.net.parameters()).device
        self.net.to(device).eval()
        feats, probs = [], []
        for i in range(0, x.shape[0], batch_size):
            xb = (x[i:i + batch_size].to(device).float() / max(levels - 1, 1))
            h = self.net.features(xb)
            feats.append(h.double().cpu())
            probs.append(self.net.head(h).softmax(-1).double().cpu())
        return torch.cat(feats), torch.cat(probs)

    def summary(self) -> dict[str, Any]:
        """What a result file records about the feature extractor."""
        keys = ("family", "test_accuracy", "test_accuracy_binarized", "epochs", "seed", "git_commit", "date")
        return {**{k: self.info[k] for k in keys if k in self.info}, "path": str(self.path) if self.path else None}


def family_of(dataset: str) -> str:
    """The classifier family of a data set name."""
    if dataset not in FAMILY:
        raise DGMError(f"no feature classifier for data set {dataset!r}; known: {', '.join(FAMILY)}")
    return FAMILY[dataset]


def classifier_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where classifier checkpoints live: explicit, ``$DGM_CLASSIFIER_DIR``, or the per-user cache."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("DGM_CLASSIFIER_DIR"):
        return Path(os.environ["DGM_CLASSIFIER_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "dgm-pyro" / "classifiers"


def binarize_unit(x: torch.Tensor, rule: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary images from grey ones in [0, 1]: Bernoulli(x) or x >= 1/2."""
    if rule == "bernoulli":
        return torch.bernoulli(x, generator=generator)
    return (x >= 0.5).to(x.dtype)


@torch.no_grad()
def accuracy(net: Classifier, x01: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of images (in [0, 1]) whose arg-max class is the label."""
    net.eval()
    correct = 0
    for i in range(0, x01.shape[0], batch_size):
        correct += int((net(x01[i:i + batch_size]).argmax(-1) == labels[i:i + batch_size]).sum())
    return correct / x01.shape[0]


def train_classifier(family: str, data_dir: str | None = None, epochs: int | None = None, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = CLASSIFIER_SEED, progress: bool = True) -> FeatureClassifier:
    """Train the family's classifier on its grey training split (half of each batch binarized).

    Minimises the cross-entropy (nats) with Adam; runs under its own RNG (``fork_rng``), so training
    it in the middle of another run leaves that run's random numbers untouched.
    """

    if family not in DEFAULT_EPOCHS:
        raise DGMError(f"unknown classifier family {family!r}; choose one of {', '.join(DEFAULT_EPOCHS)}")
    epochs = DEFAULT_EPOCHS[family] if epochs is None else epochs
    if epochs < 1:
        raise DGMError(f"--epochs must be at least 1, got {epochs}")
    data = load_dataset(family, data_dir)
    levels = data.spec.levels
    x_train, y_train = data.split("train") / (levels - 1), data.labels("train")
    x_test, y_test = data.split("test") / (levels - 1), data.labels("test")
    rule = BINARIZATION[family]
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Classifier(data.spec.shape)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        generator = torch.Generator().manual_seed(seed)
        for epoch in range(1, epochs + 1):
            net.train()
            order = torch.randperm(x_train.shape[0], generator=generator)
            total = 0.0
            for index in order.split(batch_size):
                x, y = x_train[index], y_train[index]
                half = x.shape[0] // 2  # binary copies of half the batch: both representations are read
                x = torch.cat([binarize_unit(x[:half], rule, generator), x[half:]])
                loss = F.cross_entropy(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * x.shape[0]
            scheduler.step()
            if progress and (epoch % max(1, epochs // 10) == 0 or epoch == epochs):
                print(f"classifier {family} epoch {epoch}/{epochs}: train cross-entropy "
                      f"{total / x_train.shape[0]:.4f} nats", file=sys.stderr, flush=True)
        binary_test = binarize_unit(x_test, rule, torch.Generator().manual_seed(0))
        info = {"kind": KIND, "family": family, "shape": list(data.spec.shape), "num_classes": NUM_CLASSES,
                "test_accuracy": accuracy(net, x_test, y_test),
                "test_accuracy_binarized": accuracy(net, binary_test, y_test),
                "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                "train_seconds": time.perf_counter() - start, "git_commit": git_commit(),
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "hardware": str(hardware())}
    net.eval()
    return FeatureClassifier(net, family, info)


def classifier_path(family: str, directory: str | os.PathLike | None = None) -> Path:
    return classifier_dir(directory) / f"{family}_classifier.pt"


def save_classifier(classifier: FeatureClassifier, path: Path) -> None:
    """Write the classifier atomically as a plain dict of tensors, numbers and strings."""

    atomic_torch_save({**classifier.info, "model_state": classifier.net.state_dict()}, Path(path))
    classifier.path = Path(path)


def load_classifier(path: str | os.PathLike) -> FeatureClassifier:
    """Load a classifier checkpoint with ``weights_only=True``; foreign files give a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise DGMError(f"no classifier checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise DGMError(f"classifier checkpoint {path} is unreadable: {type(exc).__name__}") from None
    if not isinstance(state, dict) or state.get("kind") != KIND or "model_state" not in state:
        raise DGMError(f"{path} is not a feature-classifier checkpoint of this project")
    net = Classifier(tuple(state["shape"]), int(state["num_classes"]))
    try:
        net.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise DGMError(f"{path} does not fit the classifier network ({str(exc).splitlines()[0]})") from None
    net.eval()
    info = {k: v for k, v in state.items() if k != "model_state"}
    return FeatureClassifier(net, str(state["family"]), info, path)


def get_classifier(dataset: str, directory: str | os.PathLike | None = None, data_dir: str | None = None,
                   train_if_missing: bool = True) -> FeatureClassifier:
    """The classifier that judges ``dataset``: loaded from the cache, or trained once and cached."""
    family = family_of(dataset)
    path = classifier_path(family, directory)
    if path.is_file():
        return load_classifier(path)
    if not train_if_missing:
        raise DGMError(f"no {family} classifier at {path}; train it with python -m evaluation.classifier "
                       f"--dataset {family}")
    print(f"training the feature classifier for sample quality (one-off, ~{EXPECTED_SECONDS.get(family, 60)} s; the "
          f"{family} family, cached in {path}) ...", flush=True)
    start = time.perf_counter()
    classifier = train_classifier(family, data_dir, progress=False)
    save_classifier(classifier, path)
    print(f"trained the {family} feature classifier in {time.perf_counter() - start:.0f} s", flush=True)
    return classifier


def has_classifier(dataset: str, directory: str | os.PathLike | None = None) -> bool:
    """Whether the classifier that judges ``dataset`` is cached (``get_classifier`` would not train one)."""
    return classifier_path(family_of(dataset), directory).is_file()


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.classifier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", help=f"any of {', '.join(FAMILY)} (trains its family's)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: per family)")
    parser.add_argument("--classifier-dir", default=None, help="cache folder of classifier checkpoints")
    parser.add_argument("--data-dir", default=None, help="folder of the data files (default: $DGM_DATA_DIR, else the per-user cache)")
    parser.add_argument("--seed", type=int, default=CLASSIFIER_SEED,
                        help=f"seed of the classifier's training (default: {CLASSIFIER_SEED})")
    parser.add_argument("--force", action="store_true", help="retrain even if a checkpoint exists")
    args = parser.parse_args(argv)
    family = family_of(args.dataset)
    path = classifier_path(family, args.classifier_dir)
    if path.is_file() and not args.force:
        classifier = load_classifier(path)
        print(f"{path} exists (use --force to retrain)")
    else:
        classifier = train_classifier(family, args.data_dir, args.epochs, seed=args.seed)
        save_classifier(classifier, path)
        print(f"wrote {path}")
    info = classifier.info
    print(f"{family} classifier: test accuracy {info['test_accuracy']:.4f} (grey), "
          f"{info['test_accuracy_binarized']:.4f} (binarized); {info['epochs']} epochs")
    return 0


if __name__ == "__main__":
    run_cli(main)
