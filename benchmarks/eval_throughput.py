"""Evaluation throughput: importance samples per second at large K, chunked (the MLP VAE on binarized MNIST),
and the fraction of the device's peak arithmetic it reaches.

``python -m benchmarks.eval_throughput RUN_DIR [--num-samples 5000] [--limit 100] [--repeats 3]
[--threads 1] [--device auto|cpu|cuda] [--budgets 20 22 24] [--append]``

Draws K samples per example for the first ``--limit`` test images of the run's data set through
the project's estimators (``importance_sampled``: guide pass; ``naive_monte_carlo``: prior pass),
``--repeats`` times per setting of ``evaluation.estimators.ELEMENT_BUDGET`` (2^b elements per pass;
settings interleaved within each repeat, so that load from other users hits them alike),
and prints the median samples per second (N * K / seconds), the peak resident memory, and the time
that rate implies for all 10,000 test images (an extrapolation, labelled as such). The run directory
is only read. ``--append`` adds the markdown row it prints to benchmarks/RESULTS.md.

Arithmetic (models with ``encoder`` and ``decoder`` networks, e.g. the VAEs; counted by
:func:`benchmarks.flops.network_flops`, a multiply-add = 2 FLOPs) for N examples and K samples:

    importance_sampled, elbo:  F = N F_enc + N K (F_dec + c_out P + c_z L)
    naive_monte_carlo:         F = N K (F_dec + c_out P + c_z L)

F_enc, F_dec: one encoder / decoder pass for one example (Linear: 2 i o + o; Conv2d: 2 C_out H' W'
C_in k^2 + bias); P: decoder outputs per example (D for Bernoulli pixels, D x levels for categorical);
c_out = 6 FLOPs per output for the log-probability (logits -> log-sigmoid or log-softmax and the
sum), c_z = 12 per latent dimension (reparameterisation and the two Gaussian log-densities). The
encoder is counted once per example, the work an ideal implementation needs; ours recomputes it once
per pass of samples (passes of ELEMENT_BUDGET / (n D) samples), so the achieved rate is, if anything,
understated. Peak: the median rate of a large float32 matmul on the same device (float64 printed
beside it: the networks run in float32, only the log-weights are accumulated in float64).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch

from benchmarks.flops import network_flops, peak_gflops
from benchmarks.results_rows import emit, print_table, results_row
from benchmarks.timing import add_device_arguments, setup_device
from core.config import OneLineErrorParser
from core.errors import run_cli
from inference.training.load_run import load_run
import evaluation.estimators as estimators

C_OUT = 6  # FLOPs per decoder output for the log-probability (see the module docstring)
C_Z = 12  # FLOPs per latent dimension: z = mu + sigma eps, log q(z|x), log p(z)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def flops_per_example_and_sample(model, x: torch.Tensor) -> tuple[int, int] | None:
    """(F_enc, F_dec + C_OUT P + C_Z L) for one example, or None for a model without encoder/decoder networks."""
    if not (hasattr(model, "encoder") and hasattr(model, "decoder") and hasattr(model, "latent_dim")):
        return None
    like = next(model.parameters())
    example = x[:1].to(like)
    z = torch.zeros(1, model.latent_dim, dtype=like.dtype, device=like.device)
    with torch.no_grad():
        outputs = model.decoder(z)[0].numel()
    return network_flops(model.encoder, example), network_flops(model.decoder, z) + C_OUT * outputs + \
        C_Z * model.latent_dim


def total_flops(per: tuple[int, int], estimator: str, n: int, k: int) -> int:
    """F of the module docstring: the encoder once per example (not for the prior pass), the rest per sample."""
    f_enc, f_sample = per
    return (0 if estimator == "naive_monte_carlo" else n * f_enc) + n * k * f_sample


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
    parser = OneLineErrorParser(prog="python -m benchmarks.eval_throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory written by inference.train")
    parser.add_argument("--num-samples", type=int, default=5000, metavar="K",
                        help="samples K per example (default: 5000)")
    parser.add_argument("--limit", type=int, default=100, metavar="N", help="test images evaluated (default: 100)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions, the median is reported (default: 3)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[20], metavar="B",
                        help="log2 of ELEMENT_BUDGET values to try (default: 20, the library default)")
    parser.add_argument("--estimators", nargs="+", default=["importance_sampled", "naive_monte_carlo"],
                        help="estimators to time (default: importance_sampled naive_monte_carlo)")
    parser.add_argument("--peak-n", type=int, default=None, metavar="N",
                        help="size of the n x n matmul that measures the peak (default 2048 on CPU, 8192 on GPU)")
    parser.add_argument("--append", action="store_true", help="append the result row to benchmarks/RESULTS.md")
    add_device_arguments(parser, threads=1)
    args = parser.parse_args(argv)
    device = setup_device(args)
    run = load_run(args.run_dir, device=device)
    x = run.dataset.split("test")[:args.limit].to(device)
    total = run.dataset.split("test").shape[0]
    n, k = x.shape[0], args.num_samples
    per = flops_per_example_and_sample(run.model, x)
    peak32 = peak_gflops(device, torch.float32, args.peak_n)
    peak64 = peak_gflops(device, torch.float64, args.peak_n)
    print(f"{run.config['model']} {run.config['model_options'].get('hidden')} on {run.config['dataset']}; "
          f"K = {k}, N = {n}; measured on {device.type} ({torch.get_num_threads()} torch threads"
          f"{', GPU ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''})")
    print(f"peak (matmul): {peak32:,.1f} GFLOP/s float32, {peak64:,.1f} GFLOP/s float64")
    if per is not None:
        print(f"FLOPs: encoder {per[0]:,} per example; decoder + log-probs {per[1]:,} per sample "
              f"(C_OUT = {C_OUT} per decoder output, C_Z = {C_Z} per latent dimension)")
    print("peak RSS is of the whole process so far; 10k-image times extrapolate the median rate")
    settings = [(name, b) for name in args.estimators for b in args.budgets]
    rates: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    for repeat in range(args.repeats):  # interleaved, so that load from others hits every setting alike
        for name, b in settings:
            rates[(name, b)].append(measure_once(run, x, k, b, name, repeat, device))
    table, best = [], {}
    for name, b in settings:
        median = statistics.median(rates[(name, b)])
        low, high = min(rates[(name, b)]), max(rates[(name, b)])
        full = total * k / median
        gflops = median / (n * k) * total_flops(per, name, n, k) / 1e9 if per is not None else float("nan")
        table.append([name, f"2^{b}", f"{median:,.0f}", f"{low:,.0f}..{high:,.0f}", f"{gflops:,.2f}",
                      f"{gflops / peak32:.1%}", f"{peak_rss_mib():.0f}M", f"{full / 60:.1f} min"])
        if name not in best or median > best[name][2]:
            best[name] = (name, b, median, low, high, full, gflops)
    print_table(["estimator", "budget", "samples/s (median)", "min..max", "GFLOP/s", "of fp32 peak", "peak RSS",
                 "10k images (extrapolated)"], table)
    result = "; ".join(
        f"{name}: {median:,.0f} samples/s (min {low:,.0f}, max {high:,.0f} over {args.repeats} repeats; budget "
        f"2^{b}; all {total:,} test images would take ~{full / 60:.0f} min)"
        + (f", {gflops:.2f} GFLOP/s = {gflops / peak32:.1%} of the measured float32 matmul peak" if per else "")
        for name, b, median, low, high, full, gflops in best.values())
    if per is not None:
        result += (f". FLOPs: F = N F_enc + N K F_sample (naive MC: N K F_sample), F_enc = {per[0]:,}, F_sample = "
                   f"{per[1]:,} (decoder + {C_OUT} per output + {C_Z} per latent dim); peak = median n x n matmul: "
                   f"{peak32:,.1f} GFLOP/s float32, {peak64:,.1f} float64")
    row = results_row(device, f"{run.config['dataset']}, first {n} test images",
                      f"{run.config['model']} {run.config['model_options'].get('hidden')} (run of "
                      f"{run.config.get('command', '?')})", f"throughput at K={k}", result)
    return emit([row], args.append)


if __name__ == "__main__":
    run_cli(main)
