"""Sampling speed of the autoregressive models: naive (one full forward pass per pixel) against cached
(Ramachandran et al. 2017: each layer evaluated only where the next pixel needs it).

Both samplers draw the same ``n`` 28x28 images from the same pre-drawn Gumbel noise, so they do the
same job; the table gives seconds per batch of ``n`` images and the speed-up. Weights are the random
initialisation (the work does not depend on their values). By default the PixelCNN of
``python -m inference.train pixelcnn`` (12 residual blocks: 13 masked k x k convolutions, 26 1x1
convolutions) on one CPU thread.

``python -m benchmarks.arm_sampling [--models pixelcnn gated_pixelcnn causal_conv1d] [-n 64]
[--threads 1] [--device cpu] [--cached-repeats 3] [--append]`` prints the table and, with
``--append``, adds one row per model to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import models  # noqa: F401  (fills the registry)
from core.run_dir import cpu_model, git_commit
from data.specs import DATASETS
from models.arm.sampling import gumbel_noise, sample_cached, sample_naive
from models.registry import model_spec


def timed(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def describe(name: str, model: torch.nn.Module) -> str:
    """E.g. "pixelcnn (12 residual blocks, 64 channels; 39 conv layers; default config), Bernoulli head"."""
    cfg = model.config
    depth = {"pixelcnn": f"{cfg.residual_blocks} residual blocks" if name == "pixelcnn" else "",
             "gated_pixelcnn": f"{getattr(cfg, 'layers', 0)} gated layers",
             "causal_conv1d": f"{getattr(cfg, 'layers', 0)} dilated layers"}[name]
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return f"{name} ({depth}, {cfg.channels} channels; {convs} conv layers; default config), Bernoulli head"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["pixelcnn"],
                        choices=["pixelcnn", "gated_pixelcnn", "causal_conv1d"])
    parser.add_argument("-n", type=int, default=64, help="images per batch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cached-repeats", type=int, default=3, help="cached timings (the median is reported)")
    parser.add_argument("--append", action="store_true", help="append one row per model to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
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
    if args.append:
        hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            f"{cpu_model()}, {args.threads} thread(s), torch {torch.__version__.split('+')[0]}"
        command = (f"python -m benchmarks.arm_sampling --models {' '.join(args.models)} -n {args.n} "
                   f"--threads {args.threads} --device {args.device} --cached-repeats {args.cached_repeats} --append")
        text = ""
        for name, model, naive_s, cached_s, speedup, same in rows:
            text += (f"| {time.strftime('%Y-%m-%d')} | {git_commit()[:7]} | {hardware} | `{command}` | 28x28 binary "
                     f"(binarized_mnist shape), {args.n} images | {describe(name, model)} | sampling time, same "
                     f"Gumbel noise for both | naive {naive_s:.1f} s, cached {cached_s:.2f} s (median of "
                     f"{args.cached_repeats}): cached {speedup:.0f}x faster; {same}/{args.n} images identical |\n")
        with (Path(__file__).parent / "RESULTS.md").open("a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
