"""The flow-VAE study: the plain VAE and each flow posterior and prior, same networks and budget, test NLL.

``python -m benchmarks.vae_flows --out runs/vae_flows [--epochs 5] [--limit 500] [--every 20]
[--num-samples 5000] [--only NAME ...] [--threads 1] [--gap-limit 0] [--dry-run]``

For every configuration of ``CONFIGS`` (Burda et al.'s one-stochastic-layer MLP, ``--preset burda``,
on static binarized MNIST) it runs, as subprocesses with ``--threads`` torch threads:

    python -m inference.train vae --preset burda --dataset binarized_mnist --epochs E ... --out OUT/NAME
    python -m evaluation.evaluate OUT/NAME --estimators elbo importance_sampled --num-samples K
        --every S --limit N --threads T

(the ELBO and the IS estimate at the same K come from the same samples, so their per-example gap is
paired), then ``python -m evaluation.compare`` over all runs into OUT/compare, and, with
``--gap-limit N > 0``, ``python -m evaluation.amortization_gap`` over all runs into OUT/gap. A
configuration whose run directory already holds its evaluation is skipped (the study can be
interrupted and started again). Every command and its wall time is appended to OUT/commands.txt, and
the summary printed at the end lists test NLL (IS-K) and ELBO per configuration with standard errors.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from core.config import OneLineErrorParser
from core.errors import DGMError, run_cli
from evaluation.diagnostics import bootstrap_difference
from evaluation.result_files import result_paths

#: name -> the options that differ from the plain VAE (everything else is shared)
CONFIGS: dict[str, list[str]] = {
    "vae": [],
    "planar": ["--posterior-flow", "planar"],
    "iaf": ["--posterior-flow", "iaf"],
    "householder": ["--posterior-flow", "householder"],
    "sylvester_orthogonal": ["--posterior-flow", "sylvester_orthogonal"],
    "sylvester_householder": ["--posterior-flow", "sylvester_householder"],
    "sylvester_triangular": ["--posterior-flow", "sylvester_triangular"],
    "realnvp_posterior": ["--posterior-flow", "realnvp"],
    "realnvp_prior": ["--prior-flow", "realnvp"],
    "maf_prior": ["--prior-flow", "maf"],
}


def run(command: list[str], log: Path, threads: int, dry_run: bool) -> float:
    """Run ``command`` with ``threads`` torch threads; append it and its wall time to ``log``."""
    text = " ".join(command)
    print(f"$ {text}", flush=True)
    if dry_run:
        return 0.0
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "DGM_OFFLINE": "1"}
    start = time.perf_counter()
    try:
        subprocess.run(command, check=True, env=env)
    except subprocess.CalledProcessError as exc:
        raise DGMError(f"exit code {exc.returncode} from: {text}") from None
    seconds = time.perf_counter() - start
    with log.open("a") as handle:
        handle.write(f"OMP_NUM_THREADS={threads} {text}   # {seconds:.0f} s\n")
    return seconds


def evaluated(run_dir: Path, k: int, n: int, every: int) -> bool:
    path, _ = result_paths(run_dir, "test", every, n)
    if not path.is_file():
        return False
    result = json.loads(path.read_text())
    return result.get("n_examples") == n and str(k) in result.get("estimators", {}).get("importance_sampled", {})


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.vae_flows", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the run directories and reports")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of each configuration (default: 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default: 128)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of Adam (default: 0.001)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    parser.add_argument("--num-samples", type=int, default=5000, help="K of the IS estimate (and its ELBO)")
    parser.add_argument("--limit", type=int, default=500, help="test images evaluated (after --every)")
    parser.add_argument("--every", type=int, default=20, help="every S-th test image (spread over the split)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch (default: 1)")
    parser.add_argument("--only", nargs="+", default=None, choices=sorted(CONFIGS), help="a subset of CONFIGS")
    parser.add_argument("--gap-limit", type=int, default=0, help="test images for the amortisation gap (0: skip)")
    parser.add_argument("--gap-steps", type=int, default=300, help="optimisation steps per local posterior")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    if min(args.epochs, args.num_samples, args.limit, args.every, args.threads) < 1:
        raise DGMError("--epochs, --num-samples, --limit, --every and --threads must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "commands.txt"
    py = sys.executable
    names = args.only or list(CONFIGS)
    for name in names:
        run_dir = args.out / name
        if evaluated(run_dir, args.num_samples, args.limit, args.every):
            print(f"{name}: already evaluated, skipped", flush=True)
            continue
        if not (run_dir / "best.pt").is_file():
            run([py, "-m", "inference.train", "vae", "--preset", "burda", "--dataset", "binarized_mnist",
                 "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                 "--seed", str(args.seed), "--device", "cpu", *CONFIGS[name], "--out", str(run_dir)],
                log, args.threads, args.dry_run)
        run([py, "-m", "evaluation.evaluate", str(run_dir), "--estimators", "elbo", "importance_sampled",
             "--num-samples", str(args.num_samples), "--every", str(args.every), "--limit", str(args.limit),
             "--threads", str(args.threads), "--device", "cpu"], log, args.threads, args.dry_run)
    run_dirs = [str(args.out / name) for name in names]
    run([py, "-m", "evaluation.compare", *run_dirs, "--out", str(args.out / "compare")], log, args.threads,
        args.dry_run)
    if args.gap_limit > 0:
        run([py, "-m", "evaluation.amortization_gap", *run_dirs, "--limit", str(args.gap_limit),
             "--every", str(max(1, 10000 // args.gap_limit)), "--steps", str(args.gap_steps),
             "--num-samples", str(args.num_samples), "--threads", str(args.threads), "--out", str(args.out / "gap")],
            log, args.threads, args.dry_run)
    if not args.dry_run:
        print_summary(args.out, names, args.num_samples, args.every, args.limit)
    return 0


def print_summary(out: Path, names: list[str], k: int, every: int, limit: int) -> None:
    """Test NLL (IS-K), the ELBO of the same samples, and their per-example gap IS - ELBO with a 95% paired
    bootstrap interval, per configuration."""
    import pandas as pd
    import torch


    print(f"\n| configuration | IS K={k} NLL | ELBO K={k} NLL (same samples) | IS - ELBO [95% CI] | epochs | "
          "train seconds |")
    print("|---|---|---|---|---|---|")
    for name in names:
        summary, per_example = result_paths(out / name, "test", every, limit)
        result = json.loads(summary.read_text())["estimators"]
        is_k, elbo_k = result["importance_sampled"][str(k)], result["elbo"][str(k)]
        examples = pd.read_csv(per_example)
        per = {est: examples[(examples["estimator"] == est) & (examples["K"] == k)].set_index("example_id")
               ["log_likelihood"].sort_index() for est in ("importance_sampled", "elbo")}
        gap, low, high = bootstrap_difference(torch.tensor(per["importance_sampled"].to_numpy()),
                                              torch.tensor(per["elbo"].to_numpy()))
        metrics = (out / name / "metrics.csv").read_text().strip().splitlines()
        header = metrics[0].split(",")
        rows = [dict(zip(header, line.split(","))) for line in metrics[1:]]
        seconds = sum(float(r["seconds"]) for r in rows)
        print(f"| {name} | {is_k['nll']:.2f} ± {is_k['se']:.2f} | {elbo_k['nll']:.2f} ± {elbo_k['se']:.2f} | "
              f"{gap:.2f} [{low:.2f}, {high:.2f}] | {len(rows)} | {seconds:.0f} |")


if __name__ == "__main__":
    run_cli(main)
