"""Sampling speed of the autoregressive models: naive (one full forward pass per pixel) against cached
(Ramachandran et al. 2017: each layer evaluated only where the next pixel needs it).

Both samplers draw the same ``n`` 28x28 images from the same pre-drawn Gumbel noise, so they do the
same job; the table gives seconds per batch of ``n`` images and the speed-up. Weights are the random
initialisation (the work does not depend on their values). By default the PixelCNN of
``python -m inference.train pixelcnn`` (12 residual blocks: 13 masked k x k convolutions, 26 1x1
convolutions) on one CPU thread.

``python -m benchmarks.arm_sampling [--models pixelcnn gated_pixelcnn causal_conv1d] [-n 64]
[--threads 1] [--device auto|cpu|cuda] [--cached-repeats 3] [--append]`` prints the table and, with
``--append``, adds one row per model to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics

import torch

import models  # noqa: F401  (fills the registry)
from core.config import OneLineErrorParser
from benchmarks.results_rows import append_rows, results_row
from benchmarks.timing import add_device_arguments, setup_device, timed
from data.specs import DATASETS
from models.arm.sampling import gumbel_noise, sample_cached, sample_naive
from models.registry import model_spec


def describe(name: str, model: torch.nn.Module) -> str:
    """E.g. "pixelcnn (12 residual blocks, 64 channels; 39 conv layers; default config), Bernoulli head"."""
    cfg = model.config
    depth = {"pixelcnn": f"{cfg.residual_blocks} residual blocks" if name == "pixelcnn" else "",
             "gated_pixelcnn": f"{getattr(cfg, 'layers', 0)} gated layers",
             "causal_conv1d": f"{getattr(cfg, 'layers', 0)} dilated layers"}[name]
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return f"{name} ({depth}, {cfg.channels} channels; {convs} conv layers; default config), Bernoulli head"


def main() -> None:
    parser = OneLineErrorParser(prog="python -m benchmarks.arm_sampling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["pixelcnn"],
                        choices=["pixelcnn", "gated_pixelcnn", "causal_conv1d"],
                        help="autoregressive models to time (default: pixelcnn)")
    parser.add_argument("-n", type=int, default=64, help="images per batch")
    parser.add_argument("--cached-repeats", type=int, default=3, help="cached timings (the median is reported)")
    parser.add_argument("--append", action="store_true", help="append one row per model to benchmarks/RESULTS.md")
    add_device_arguments(parser, threads=1)
    args = parser.parse_args()
    device = setup_device(args)
    spec = DATASETS["binarized_mnist"]
    rows = []
    print(f"{'model':>15s}  {'naive s':>9s}  {'cached s':>9s}  {'speed-up':>8s}  identical images")
    for name in args.models:
        registered = model_spec(name)
        torch.manual_seed(0)
        model = registered.build(registered.config_cls(), spec).to(device).eval()
        noise = gumbel_noise(args.n, spec.dim, spec.levels, device=device, generator=None)
        sample_cached(model, 2)  # warm-up (allocations, kernels)
        cached_times = []
        for _ in range(args.cached_repeats):
            seconds, cached = timed(lambda: sample_cached(model, args.n, gumbel=noise), device)
            cached_times.append(seconds)
        naive_seconds, naive = timed(lambda: sample_naive(model, args.n, gumbel=noise), device)
        cached_seconds = statistics.median(cached_times)
        same = int((naive == cached).flatten(1).all(1).sum())
        speedup = naive_seconds / cached_seconds
        print(f"{name:>15s}  {naive_seconds:9.1f}  {cached_seconds:9.2f}  {speedup:7.0f}x  {same}/{args.n}", flush=True)
        rows.append((name, model, naive_seconds, cached_seconds, speedup, same))
    rows = [results_row(device, f"28x28 binary (binarized_mnist shape), {args.n} images", describe(name, model),
                        "sampling time, same Gumbel noise for both",
                        f"naive {naive_s:.1f} s, cached {cached_s:.2f} s (median of {args.cached_repeats}): cached "
                        f"{speedup:.0f}x faster; {same}/{args.n} images identical")
            for name, model, naive_s, cached_s, speedup, same in rows]
    if args.append:
        append_rows(rows)


if __name__ == "__main__":
    main()
