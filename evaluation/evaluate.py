"""``python -m evaluation.evaluate RUN_DIR [--split test] [--estimators ...] [--num-samples K ...] [--limit N]``

Writes ``eval_<split>.json`` (summaries per estimator and K) and ``eval_<split>_examples.csv``
(per-example log-likelihoods) into the run directory, merging with earlier evaluations.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from core.config import OneLineErrorParser
from core.device import resolve_device
from core.errors import DGMError, run_cli
from core.load_run import LoadedRun, load_run
from core.run_dir import SCHEMA_VERSION, atomic_write_text, provenance, write_json
from evaluation.diagnostics import pareto_khat, standard_error
from evaluation.estimators import ESTIMATORS
from evaluation.units import bits_per_dim

KHAT_MIN_K = 100


def default_estimators(run: LoadedRun) -> list[str]:
    """Latent-variable models: naive MC, ELBO and IS; exact models: exact."""
    return ["naive_monte_carlo", "elbo", "importance_sampled"] if run.model.has_latents else ["exact"]


def summarise(estimates: torch.Tensor, log_weights: torch.Tensor | None, dim: int, seconds: float,
              num_samples: int) -> dict[str, Any]:
    """One ``eval_<split>.json`` entry: mean log-likelihood, NLL, its standard error, bits/dim, k-hat."""
    mean = float(estimates.mean())
    entry: dict[str, Any] = {"log_likelihood": mean, "nll": -mean, "se": standard_error(estimates),
                             "bpd": bits_per_dim(-mean, dim), "seconds": seconds}
    if log_weights is not None and num_samples >= KHAT_MIN_K:
        khat = pareto_khat(log_weights)
        entry["khat"] = {"mean": float(np.mean(khat)), "frac_above_0.7": float(np.mean(khat > 0.7))}
    return entry


def evaluate_run(run: LoadedRun, split: str = "test", estimators: Sequence[str] | None = None,
                 num_samples: Sequence[int] = (1,), limit: int | None = None, chunk_size: int | None = None,
                 seed: int = 0, device: torch.device | None = None) -> dict[str, Any]:
    """Evaluate ``run`` on ``split`` with each estimator and K; write and return ``eval_<split>.json``."""
    names = list(estimators or default_estimators(run))
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise DGMError(f"unknown estimator {unknown[0]!r}; choose from {', '.join(ESTIMATORS)}")
    if any(k < 1 for k in num_samples):
        raise DGMError(f"--num-samples must be at least 1, got {min(num_samples)}")
    x = run.dataset.split(split)
    if limit is not None:
        if limit < 1:
            raise DGMError(f"--limit must be at least 1, got {limit}")
        x = x[:limit]
    if x.shape[0] == 0:
        raise DGMError(f"the {split} split is empty")
    device = device or torch.device("cpu")
    run.model.to(device)
    x = x.to(device)
    model = run.model
    dim = run.dataset.spec.dim
    path = run.run_dir / f"eval_{split}.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    if result.get("n_examples") not in (None, x.shape[0]):
        result = {}  # a different subset: start afresh rather than mix
    result.update({"schema_version": SCHEMA_VERSION, "run": str(run.run_dir), "split": split,
                   "n_examples": int(x.shape[0]), "checkpoint_epoch": run.epoch,
                   "provenance": provenance(device)})
    result.setdefault("estimators", {})
    rows: list[tuple[int, str, int, float]] = []
    for name in names:
        for k in (num_samples if name != "exact" else [1]):
            torch.manual_seed(seed)
            start = time.perf_counter()
            est, lw = ESTIMATORS[name](model.model, model.guide, x, num_samples=k, chunk_size=chunk_size,
                                       return_log_weights=True)
            seconds = time.perf_counter() - start
            result["estimators"].setdefault(name, {})[str(k)] = summarise(est, lw if name != "exact" else None,
                                                                         dim, seconds, k)
            rows += [(i, name, k, float(v)) for i, v in enumerate(est.tolist())]
            print(f"{name:>20s}  K={k:<5d}  NLL {-float(est.mean()):10.3f} nats  "
                  f"({bits_per_dim(-float(est.mean()), dim):.4f} bits/dim)  {seconds:.1f}s", flush=True)
    write_json(path, result)
    _write_examples(run.run_dir / f"eval_{split}_examples.csv", rows)
    return result


def _write_examples(path: Path, rows: list[tuple[int, str, int, float]]) -> None:
    """Merge per-example rows into the CSV, replacing those of the same (estimator, K)."""
    replaced = {(name, k) for _, name, k, _ in rows}
    kept: list[tuple[int, str, int, float]] = []
    if path.is_file():
        with path.open(newline="") as handle:
            for r in csv.DictReader(handle):
                if (r["estimator"], int(r["K"])) not in replaced:
                    kept.append((int(r["example_id"]), r["estimator"], int(r["K"]), float(r["log_likelihood"])))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["example_id", "estimator", "K", "log_likelihood"])
    writer.writerows((i, n, k, repr(v)) for i, n, k, v in kept + rows)
    atomic_write_text(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run directory written by inference.train")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--estimators", nargs="+", default=None, help=f"any of {', '.join(ESTIMATORS)} "
                        "(default: naive_monte_carlo elbo importance_sampled, or exact for exact models)")
    parser.add_argument("--num-samples", type=int, nargs="+", default=[1, 10, 100, 1000], metavar="K")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="first N examples of the split")
    parser.add_argument("--chunk-size", type=int, default=None, help="examples per chunk (default: automatic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    run = load_run(args.run_dir, which=args.checkpoint, device=device)
    evaluate_run(run, args.split, args.estimators, args.num_samples, args.limit, args.chunk_size, args.seed, device)
    return 0


if __name__ == "__main__":
    run_cli(main)
