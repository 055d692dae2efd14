"""Sample quality of any model, in the feature space of the project's classifier, with the data's floor.

For features a (n, F) of a model's samples and b (m, F) of real test images (``evaluation.classifier``):

    FD   = ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a^1/2 S_b S_a^1/2)^1/2)
           the Frechet distance of Gaussians fitted to the features (Heusel et al. 2017's FID with
           our small CNN instead of Inception: the numbers are not comparable with Inception FIDs)
    KID  = MMD^2_u with the kernel k(x, y) = (x.y / F + 1)^3 (Binkowski et al. 2018), unbiased,
           averaged over disjoint blocks; its standard error is that of the block mean. Features
           are first divided by one number, the root mean square of the real features, so that
           x.y / F is of order 1 as with Inception features (else the cubic kernel is dominated
           by a few large dot products and the estimate by noise)
    classes: histogram of the classifier's arg-max over the samples, its entropy (nats; ln 10 =
           2.303 when all ten classes are equally present; mode collapse lowers it), the mean
           top-class probability, and the total-variation distance to the test set's histogram

The floor is the same metrics between n real *training* images and the test images, in the
run's representation (binary against binary, 8-bit against 8-bit): no model can be expected to
beat it, and a model is judged by its distance above it, never by a representation gap.

Python: ``run_sample_quality(load_run(RUN_DIR))`` (any run: it draws ``model.sample(n)``) returns
and writes ``RUN_DIR/sample_quality_<split>.json``; ``model_sample_quality`` and
``floor_sample_quality`` are the pieces. Command line::

    python -m evaluation.sample_quality RUN_DIR [RUN_DIR ...] [--dataset NAME ...] [-n N] [--split test]
"""
from __future__ import annotations

import argparse
import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from core.config import OneLineErrorParser
from core.paths import check_output_dir
from core.plots import run_label
from core.errors import DGMError, run_cli
from evaluation.classifier import FeatureClassifier, get_classifier
from inference.training.load_run import load_run
from core.run_lock import RunLock
from core.run_dir import SCHEMA_VERSION, provenance, write_json
from core.device import THREADS_HELP, resolve_device, set_threads
from data import load_dataset
from matplotlib.figure import Figure

__all__: Sequence[str] = ["FeatureReference", "class_statistics", "floor_sample_quality", "frechet_distance",
                          "kernel_distance", "model_sample_quality", "model_samples", "run_sample_quality",
                          "table_row"]

SAMPLE_SEED = 0
MIN_BLOCK = 50  # KID blocks are at least this large (an unbiased MMD^2 from fewer pairs is mostly noise)
MAX_BLOCKS = 10


# ---- distances between feature sets ---------------------------------------------------------------
def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features (n, F), in float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance_from_stats(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor,
                                cov_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b) - 2 Tr((S_a^1/2 S_b S_a^1/2)^1/2).

    The squared 2-Wasserstein distance between N(mu_a, S_a) and N(mu_b, S_b).
    """
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(float(value), 0.0)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FD between Gaussians fitted to features a (n, F) and b (m, F)."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise DGMError("the Frechet distance needs at least 2 images on each side")
    return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def bootstrap_frechet_se(a: torch.Tensor, b: torch.Tensor, replicates: int, generator: torch.Generator) -> float:
    """Standard deviation of FD over bootstrap resamples of both feature sets (its standard error)."""
    values = []
    for _ in range(replicates):
        ia = torch.randint(a.shape[0], (a.shape[0],), generator=generator)
        ib = torch.randint(b.shape[0], (b.shape[0],), generator=generator)
        values.append(frechet_distance(a[ia], b[ib]))
    return float(torch.tensor(values, dtype=torch.float64).std()) if len(values) > 1 else float("nan")


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x.y / F + 1)^3 for rows of x (n, F) and y (m, F) -> (n, m)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2: mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)."""
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kernel_distance(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator,
                    num_blocks: int | None = None) -> tuple[float, float, int]:
    """KID: mean and standard error of MMD^2_u over disjoint random blocks of a and b; returns (kid, se, blocks).

    Blocks: min(10, n // 50) (at least 2) of n // blocks images each, n = min(len(a), len(b)).
    """
    n = min(a.shape[0], b.shape[0])
    blocks = num_blocks or min(MAX_BLOCKS, max(2, n // MIN_BLOCK))
    size = n // blocks
    if size < 2:
        raise DGMError(f"KID needs at least {2 * blocks} images on each side, got {n}")
    pa = torch.randperm(a.shape[0], generator=generator)[:blocks * size].view(blocks, size)
    pb = torch.randperm(b.shape[0], generator=generator)[:blocks * size].view(blocks, size)
    values = torch.tensor([mmd2_unbiased(a.double()[i], b.double()[j]) for i, j in zip(pa, pb)], dtype=torch.float64)
    return float(values.mean()), float(values.std() / math.sqrt(blocks)), blocks


def class_statistics(probs: torch.Tensor, reference_histogram: torch.Tensor | None = None) -> dict[str, Any]:
    """Histogram of arg-max classes (fractions), its entropy (nats), mean top probability, TV to the reference."""
    classes = probs.shape[1]
    hist = torch.bincount(probs.argmax(1), minlength=classes).double() / probs.shape[0]
    nonzero = hist[hist > 0]
    stats: dict[str, Any] = {"class_histogram": [round(float(h), 6) for h in hist],
                             "class_entropy": float(-(nonzero * nonzero.log()).sum()) + 0.0,  # no -0.0
                             "mean_confidence": float(probs.max(1).values.mean())}
    if reference_histogram is not None:
        stats["class_tv"] = float((hist - reference_histogram).abs().sum() / 2)
    return stats


# ---- images -> metrics -------------------------------------------------------------------------------
@dataclass
class FeatureReference:
    """Classifier features of a fixed set of real images (e.g. the test split), computed once."""

    classifier: FeatureClassifier
    levels: int
    features: torch.Tensor
    probs: torch.Tensor

    @classmethod
    def of(cls, classifier: FeatureClassifier, images: torch.Tensor, levels: int,
           device: torch.device | None = None) -> "FeatureReference":
        feats, probs = classifier.features_and_probs(images, levels, device=device)
        return cls(classifier, levels, feats, probs)

    @property
    def scale(self) -> float:
        """Root mean square of the real features: KID's kernel sees features / scale."""
        return float(self.features.pow(2).mean().sqrt().clamp(min=1e-12))

    @property
    def histogram(self) -> torch.Tensor:
        return torch.bincount(self.probs.argmax(1), minlength=self.probs.shape[1]).double() / self.probs.shape[0]

    def score(self, images: torch.Tensor, *, seed: int = SAMPLE_SEED, bootstrap: int = 20, kid: bool = True,
              device: torch.device | None = None) -> dict[str, Any]:
        """FD (with bootstrap se), KID (with se over blocks) and class statistics of ``images`` (data scale)."""
        feats, probs = self.classifier.features_and_probs(images, self.levels, device=device)
        generator = torch.Generator().manual_seed(seed)
        result: dict[str, Any] = {"n": int(images.shape[0]), "fd": frechet_distance(feats, self.features)}
        if bootstrap:
            result["fd_se"] = bootstrap_frechet_se(feats, self.features, bootstrap, generator)
        if kid:
            result["kid"], result["kid_se"], result["kid_blocks"] = kernel_distance(
                feats / self.scale, self.features / self.scale, generator)
        result.update(class_statistics(probs, self.histogram))
        return result


@torch.no_grad()
def model_samples(model: Any, n: int, seed: int = SAMPLE_SEED, batch_size: int = 1000) -> torch.Tensor:
    """``n`` samples x ~ p(x) of any model (``model.sample``) on the data scale, in eval mode, with a fixed seed."""
    if n < 1:
        raise DGMError(f"the number of samples must be at least 1, got {n}")
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            parts = [model.sample(min(batch_size, n - i)).cpu() for i in range(0, n, batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def _reference(dataset: Any, split: str, classifier: FeatureClassifier, device: torch.device | None,
               cache: dict | None) -> FeatureReference:
    key = (dataset.name, str(dataset.directory), split, str(classifier.path))
    if cache is not None and key in cache:
        return cache[key]
    ref = FeatureReference.of(classifier, dataset.split(split), dataset.spec.levels, device)
    if cache is not None:
        cache[key] = ref
    return ref


def _classifier(dataset: Any, classifier: FeatureClassifier | None, classifier_dir: str | None) -> FeatureClassifier:
    return classifier or get_classifier(dataset.name, classifier_dir, str(dataset.directory))


def model_sample_quality(model: Any, dataset: Any, n: int | None = None, split: str = "test", seed: int = SAMPLE_SEED,
                         classifier: FeatureClassifier | None = None, classifier_dir: str | None = None,
                         bootstrap: int = 20, device: torch.device | None = None,
                         cache: dict | None = None) -> dict[str, Any]:
    """Metrics of ``n`` samples of ``model`` (default: as many as the split has images) against ``split``."""
    classifier = _classifier(dataset, classifier, classifier_dir)
    ref = _reference(dataset, split, classifier, device, cache)
    n = n or ref.features.shape[0]
    return ref.score(model_samples(model, n, seed), seed=seed, bootstrap=bootstrap, device=device)


def floor_sample_quality(dataset: Any, n: int | None = None, split: str = "test", seed: int = SAMPLE_SEED,
                         classifier: FeatureClassifier | None = None, classifier_dir: str | None = None,
                         bootstrap: int = 20, device: torch.device | None = None,
                         cache: dict | None = None) -> dict[str, Any]:
    """The floor: the same metrics for ``n`` random real training images (same representation) against ``split``."""
    classifier = _classifier(dataset, classifier, classifier_dir)
    ref = _reference(dataset, split, classifier, device, cache)
    n = n or ref.features.shape[0]
    train = dataset.split("train")
    if n > train.shape[0]:
        raise DGMError(f"the floor needs n <= {train.shape[0]} training images of {dataset.name}, got n = {n}")
    index = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return ref.score(train[index], seed=seed, bootstrap=bootstrap, device=device)


def representation(levels: int) -> str:
    return "binary" if levels == 2 else ("8-bit" if levels == 256 else f"{levels} levels")


def run_sample_quality(run: Any, n: int | None = None, split: str = "test", seed: int = SAMPLE_SEED,
                       classifier_dir: str | None = None, bootstrap: int = 20, floor: bool = True,
                       write: bool = True, device: torch.device | None = None,
                       cache: dict | None = None) -> dict[str, Any]:
    """Sample quality of a trained run (a ``LoadedRun`` or its directory), with the floor of its data set.

    Returns (and with ``write`` stores as ``RUN_DIR/sample_quality_<split>.json``)::

        {"schema_version": 1, "run", "model", "dataset", "representation", "split", "checkpoint_epoch",
         "n_samples", "n_reference", "seed", "classifier": {...},
         "samples": {"fd", "fd_se", "kid", "kid_se", "kid_blocks", "class_histogram", "class_entropy",
                     "mean_confidence", "class_tv", "n"},
         "floor": {the same keys, for real training images}, "reference": {test-set class statistics},
         "provenance": {...}}
    """

    if not hasattr(run, "model"):
        run = load_run(run, device=device or "cpu")
    with RunLock(run.run_dir, "measuring sample quality") if write else nullcontext():  # one writer of the run's files
        dataset = run.dataset
        classifier = get_classifier(dataset.name, classifier_dir, str(dataset.directory))
        cache = {} if cache is None else cache
        ref = _reference(dataset, split, classifier, device, cache)
        n = n or ref.features.shape[0]
        result: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "run": str(run.run_dir), "model": run.config["model"],
            "dataset": dataset.name, "representation": representation(dataset.spec.levels), "split": split,
            "checkpoint_epoch": run.epoch, "n_samples": n, "n_reference": int(ref.features.shape[0]), "seed": seed,
            "classifier": classifier.summary(),
            "samples": model_sample_quality(run.model, dataset, n, split, seed, classifier, bootstrap=bootstrap,
                                            device=device, cache=cache),
        }
        if floor:
            result["floor"] = floor_sample_quality(dataset, n, split, seed, classifier, bootstrap=bootstrap,
                                                   device=device, cache=cache)
        result["reference"] = class_statistics(ref.probs)
        result["provenance"] = provenance(device)
        if write:
            write_json(Path(run.run_dir) / f"sample_quality_{split}.json", result)
            save_class_histograms(result, Path(run.run_dir) / f"class_histogram_{split}.png")
        return result


def save_class_histograms(result: dict[str, Any], path: Path) -> None:
    """Bar chart of the classifier's class histogram: samples, real training images (floor), test images."""

    label = run_label(result["model"], result["run"])
    bars = {"samples of the model": result["samples"]["class_histogram"],
            "real train (floor)": result.get("floor", {}).get("class_histogram"),
            f"real {result['split']}": result["reference"]["class_histogram"]}
    bars = {k: v for k, v in bars.items() if v is not None}
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    width = 0.8 / len(bars)
    for i, (name, values) in enumerate(bars.items()):
        ax.bar([c + (i - (len(bars) - 1) / 2) * width for c in range(len(values))], values, width, label=name)
    ax.set_xticks(range(len(result["samples"]["class_histogram"])))
    ax.set_xlabel("class read by the classifier")
    ax.set_ylabel("fraction of images")
    ax.set_title(f"{label}: class histogram of {result['n_samples']} samples on {result['dataset']} "
                 f"(epoch {result['checkpoint_epoch']})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ---- a table for people ----------------------------------------------------------------------------
TABLE_HEADER = ("| source | data set | n | FD | KID | class entropy (nats) | class TV to test |\n"
                "|---|---|---|---|---|---|---|")


def table_row(source: str, dataset: str, metrics: dict[str, Any]) -> str:
    """One markdown row: FD +- bootstrap se, KID +- block se, class entropy, class TV distance."""
    fd = f"{metrics['fd']:.3f}" + (f" ± {metrics['fd_se']:.3f}" if "fd_se" in metrics else "")
    kid = f"{metrics['kid']:.5f} ± {metrics['kid_se']:.5f}" if "kid" in metrics else "-"
    return (f"| {source} | {dataset} | {metrics['n']} | {fd} | {kid} | {metrics['class_entropy']:.4f} | "
            f"{metrics.get('class_tv', float('nan')):.4f} |")


#: the most samples scored at once (features of this many images are held in memory)
MAX_SAMPLES = 100_000


def main(argv: list[str] | None = None) -> int:

    parser = OneLineErrorParser(prog="python -m evaluation.sample_quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", type=Path,
                        help="run directories (each gets sample_quality_<split>.json)")
    parser.add_argument("--dataset", nargs="+", default=[], help="also (or only) print the floor of these data sets")
    parser.add_argument("--split", default="test", choices=["val", "test"],
                        help="the real images the samples are compared with (default: test)")
    parser.add_argument("-n", type=int, default=None, help="samples per model (default: the split's size)")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED, help=f"seed of the samples (default: {SAMPLE_SEED})")
    parser.add_argument("--bootstrap", type=int, default=20, help="bootstrap replicates for the FD standard error")
    parser.add_argument("--classifier-dir", default=None, help="cache folder of the feature classifiers")
    parser.add_argument("--data-dir", default=None, help="data directory for --dataset")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"],
                        help="best.pt (best validation objective) or checkpoint.pt (the last epoch) (default: best)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto uses a GPU when there is one (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if not args.run_dirs and not args.dataset:
        raise DGMError("give run directories and/or --dataset NAME (for the floor alone)")
    if args.n is not None and not 4 <= args.n <= MAX_SAMPLES:
        raise DGMError(f"-n must be in 4..{MAX_SAMPLES:,} (the feature statistics need 4; more than the test split "
                       f"hardly sharpens FD), got {args.n:,}")
    if args.bootstrap < 0:
        raise DGMError(f"--bootstrap must be >= 0 (0: no FD standard error), got {args.bootstrap}")
    if not 0 <= args.seed < 2 ** 32:
        raise DGMError(f"--seed must be in 0..{2 ** 32 - 1}, got {args.seed}")
    if args.classifier_dir is not None:
        check_output_dir(args.classifier_dir, "--classifier-dir")
    if args.bootstrap == 0:
        print("--bootstrap 0: the FD is reported without its standard error", flush=True)
    device = resolve_device(args.device)
    cache: dict = {}
    rows, floors = [], {}
    for run_dir in args.run_dirs:
        run = load_run(run_dir, which=args.checkpoint, device=device)
        result = run_sample_quality(run, args.n, args.split, args.seed, args.classifier_dir, args.bootstrap,
                                    floor=True, device=device, cache=cache)
        rows.append(table_row(f"{run.config['model']} ({run_dir})", result["dataset"], result["samples"]))
        floors.setdefault((result["dataset"], result["n_samples"]), result["floor"])
    for name in args.dataset:
        dataset = load_dataset(name, args.data_dir)
        key = (name, args.n or dataset.split(args.split).shape[0])
        if key not in floors:
            floors[key] = floor_sample_quality(dataset, args.n, args.split, args.seed, None, args.classifier_dir,
                                               args.bootstrap, device, cache)
    rows += [table_row("floor: real train images", name, metrics) for (name, _), metrics in floors.items()]
    print(TABLE_HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    run_cli(main)

