"""Evaluation throughput: importance samples per second at large K, chunked (the MLP VAE on binarized MNIST).

``python -m benchmarks.eval_throughput RUN_DIR [--num-samples 5000] [--limit 100] [--repeats 3]
[--threads 1] [--device cpu|cuda] [--budgets 20 22 24] [--append]``

Draws K samples per example for the first ``--limit`` test images of the run's data set through
the project's estimators (``importance_sampled``: guide pass; ``naive_monte_carlo``: prior pass),
``--repeats`` times per setting of ``evaluation.estimators.ELEMENT_BUDGET`` (2^b elements per pass;
settings interleaved within each repeat, so that load from other users hits them alike),
and prints the median samples per second (N * K / seconds), the peak resident memory, and the time
that rate implies for all 10,000 test images (an extrapolation, labelled as such). The run directory
is only read. ``--append`` adds the markdown row it prints to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import time
from pathlib import Path

import torch

from core.errors import DGMError, run_cli
from core.load_run import load_run
from core.run_dir import command_line, cpu_model, git_commit
import evaluation.estimators as estimators

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_once(run, x: torch.Tensor, num_samples: int, budget_log2: int, estimator: str, seed: int,
                 device: torch.device) -> float:
    """Samples per second of one call of ``estimator`` at K = ``num_samples`` with ELEMENT_BUDGET = 2^b."""
    estimators.ELEMENT_BUDGET = 1 << budget_log2
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    est = estimators.ESTIMATORS[estimator](run.model.model, run.model.guide, x, num_samples)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert torch.isfinite(est).all()
    return x.shape[0] * num_samples / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--num-samples", type=int, default=5000, metavar="K")
    parser.add_argument("--limit", type=int, default=100, metavar="N")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--budgets", type=int, nargs="+", default=[20], metavar="B",
                        help="log2 of ELEMENT_BUDGET values to try (default: 20, the library default)")
    parser.add_argument("--estimators", nargs="+", default=["importance_sampled", "naive_monte_carlo"])
    parser.add_argument("--append", action="store_true", help="append the result row to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise DGMError("--device cuda: no GPU is available")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    run = load_run(args.run_dir, device=device)
    x = run.dataset.split("test")[:args.limit].to(device)
    total = run.dataset.split("test").shape[0]
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    hardware = f"{cpu_model()}, {args.threads} thread(s)" + (f", GPU {gpu}" if gpu else ", no GPU")
    print(f"{run.config['model']} {run.config['model_options'].get('hidden')} on {run.config['dataset']}; "
          f"K = {args.num_samples}, N = {x.shape[0]}; {hardware}")
    print(f"peak RSS is of the whole process so far; 10k-image times extrapolate the median rate")
    print(f"{'estimator':>20s} {'budget':>7s} {'samples/s (median)':>19s} {'min..max':>19s} {'peak RSS':>9s} "
          f"{'10k images (extrapolated)':>26s}")
    settings = [(name, b) for name in args.estimators for b in args.budgets]
    rates: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    for repeat in range(args.repeats):  # interleaved, so that load from others hits every setting alike
        for name, b in settings:
            rates[(name, b)].append(measure_once(run, x, args.num_samples, b, name, repeat, device))
    rows = []
    for name, b in settings:
        median = statistics.median(rates[(name, b)])
        full = total * args.num_samples / median
        low, high = min(rates[(name, b)]), max(rates[(name, b)])
        print(f"{name:>20s} {'2^' + str(b):>7s} {median:19,.0f} {low:9,.0f}..{high:<9,.0f} "
              f"{peak_rss_mib():8.0f}M {full / 60:21.1f} min", flush=True)
        rows.append((name, b, median, low, high, full))
    best = {}
    for name, b, median, low, high, full in rows:
        if name not in best or median > best[name][2]:
            best[name] = (name, b, median, low, high, full)
    result = "; ".join(f"{name}: {median:,.0f} samples/s (min {low:,.0f}, max {high:,.0f} over {args.repeats} "
                       f"repeats; budget 2^{b}; all {total:,} test images would take ~{full / 60:.0f} min)"
                       for name, b, median, low, high, full in best.values())
    row = (f"| {dt.date.today().isoformat()} | {git_commit()[:7]}{'-dirty' if git_commit().endswith('-dirty') else ''} "
           f"| {hardware}, torch {torch.__version__} | `{command_line()}` | {run.config['dataset']}, first "
           f"{x.shape[0]} test images | {run.config['model']} {run.config['model_options'].get('hidden')} "
           f"(run of `{run.config.get('command', '?')}`) | throughput at K={args.num_samples} | {result} |")
    print(row)
    if args.append:
        with RESULTS.open("a") as handle:
            handle.write(row + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
