"""README figures on probabilistic PCA, where log p(x) is known exactly.

``python -m benchmarks.ppca_figures [--out docs/figures]`` writes

    estimators_vs_k.png      the gap log p(x) - estimate of naive MC, ELBO and IS (a diagonal guide) against
                             K (log axes); IS with the exact posterior as guide has gap 0 at every K
    naive_mc_vs_latent_dim.png   naive MC's error against the latent dimension L = 1..50 for several K

Runs in about a minute on one CPU thread; fixed seeds, so the figures are reproducible.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from evaluation.ground_truth import estimator_errors_vs_k, naive_error_by_dimension, spoil_diagonal_guide
from core.config import OneLineErrorParser
from core.plots import ESTIMATOR_STYLE
from models.ppca import PPCA
from matplotlib.figure import Figure


def figure_vs_k(path: Path, ks: list[int], data_dim: int = 30, latent_dim: int = 8) -> dict:
    """Gap log p(x) - estimate (log axis) against K; the exact-posterior guide's gap is 0 to float precision."""
    model = spoil_diagonal_guide(PPCA.random(data_dim=data_dim, latent_dim=latent_dim, weight_scale=0.7, seed=1),
                                 shift=0.3, log_scale=-0.2)
    torch.manual_seed(0)
    x = model.sample(200)
    errors = estimator_errors_vs_k(model, x, ks)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for label, points in errors.items():
        if "exact posterior" in label:
            worst = max(abs(m) + s for _, m, s in points)
            ax.plot([], [], " ", label=f"IS with the exact posterior as guide: |gap| < {max(worst, 1e-15):.0e} "
                                       "for every K")
            continue
        text, colour, marker = ESTIMATOR_STYLE[label]
        k, mean, se = zip(*points)
        ax.errorbar(k, [-m for m in mean], yerr=se, label=text, color=colour, marker=marker, ms=4, capsize=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("K (samples per example)")
    ax.set_ylabel("log p(x) - estimate  (nats, mean of 200 examples)")
    ax.set_title(f"PPCA (D = {data_dim}, L = {latent_dim}, diagonal guide): gap to the exact log p(x)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return errors


def figure_vs_dimension(path: Path, dims: list[int], ks: list[int]) -> dict:
    results = {k: naive_error_by_dimension(dims, num_samples=k) for k in ks}
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for k, by_dim in results.items():
        mean = [by_dim[d][0] for d in dims]
        se = [by_dim[d][1] for d in dims]
        ax.errorbar(dims, mean, yerr=se, marker="o", ms=4, capsize=2, label=f"K = {k}")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("latent dimension L")
    ax.set_ylabel("log p(x) - naive MC estimate  (nats)")
    ax.set_title("Naive Monte Carlo (z from the prior) on PPCA, D = 60", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.ppca_figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="folder for the figures (default: docs/figures)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    errors = figure_vs_k(args.out / "estimators_vs_k.png", [1, 3, 10, 30, 100, 300, 1000, 3000, 10000])
    for label, points in errors.items():
        print(label, " ".join(f"K={k}:{m:+.3f}±{s:.3f}" for k, m, s in points))
    dims = [1, 2, 3, 5, 10, 20, 30, 50]
    results = figure_vs_dimension(args.out / "naive_mc_vs_latent_dim.png", dims, [10, 100, 1000, 10000])
    for k, by_dim in results.items():
        print(f"naive MC K={k}", " ".join(f"L={d}:{m:.3f}±{s:.3f}" for d, (m, s) in by_dim.items()))
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
