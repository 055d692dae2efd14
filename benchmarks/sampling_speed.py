"""Sampling speed of every model family: images per second at batch 64 on the MNIST shape (28 x 28).

The lecture's fast/slow column: a latent-variable model (VAE, PPCA, GAN) or a flow draws an image
with one network pass (noise -> decoder / generator / inverse flow); an autoregressive model needs
D = 784 sequential steps, one per pixel: the naive sampler runs the whole network at every step
(D passes of O(D) work), the cached sampler (Ramachandran et al. 2017) only the part the next pixel
needs (D steps of O(1) work), but both stay sequential.

Every model is built through the public API (``models.registry`` with its default config, random
initialisation, or ``inference.training.load_run`` for ``--run RUN_DIR``) and sampled with ``model.sample(n)``,
what users get; the ARMs' ``sample`` is the cached sampler, and the naive one is
``models.arm.sampling.sample_naive``. The work does not depend on the weights' values (a trained
flow or GAN does the same arithmetic as a random one). Data: 8-bit MNIST (256 levels) for every
family that models it; the VAEs on binarized MNIST (Bernoulli decoder: the configuration of the
project's VAE results; their default 8-bit decoder is a 256-way categorical per pixel).

Timing: ``--warmup`` untimed calls, then the median seconds of ``--repeats`` calls, synchronised
on a GPU. The naive ARM sampler takes minutes on a CPU (the default PixelCNN: ~500 s for 64 binary
images on one thread, see RESULTS.md), so by default its time is the median time of
``--naive-pixels`` of its per-pixel steps (one full forward pass, the conditional, the draw: the
loop body of ``sample_naive``, each step the same work) times D, labelled "extrapolated";
``--naive-full`` runs ``sample_naive`` itself.

``python -m benchmarks.sampling_speed [-n 64] [--only NAME ...] [--run RUN_DIR ...] [--repeats 3]
[--warmup 1] [--naive-pixels 8] [--naive-full] [--device auto] [--threads 1] [--append]``
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.results_rows import emit, print_table, results_row
from benchmarks.timing import add_device_arguments, setup_device, timed
from core.errors import DGMError, run_cli
import models  # noqa: F401  (fills the registry)
from core.config import OneLineErrorParser, build_config
from data.specs import DATASETS
from models.registry import model_spec
from models.arm.sampling import _draw
from models.arm.sampling import sample_naive
from inference.training.load_run import load_run


@dataclass(frozen=True)
class Entry:
    """One row of the table: a registered model with options, the data set it models, the sampler."""

    name: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    sampler: str = "sample"  # "sample" (model.sample) or "naive" (sample_naive)


ENTRIES = [
    Entry("vae_mlp", "vae", {}, "binarized_mnist"),
    Entry("vae_iaf", "vae", {"posterior_flow": "iaf"}, "binarized_mnist"),
    Entry("ppca", "ppca"),
    Entry("flow_realnvp_mlp", "flow", {"arch": "realnvp_mlp"}),
    Entry("flow_realnvp_multiscale", "flow", {"arch": "realnvp"}),
    Entry("flow_glow", "flow", {"arch": "glow"}),
    Entry("pixelcnn_naive", "pixelcnn", {}, sampler="naive"),
    Entry("pixelcnn_cached", "pixelcnn"),
    Entry("gated_pixelcnn_naive", "gated_pixelcnn", {}, sampler="naive"),
    Entry("gated_pixelcnn_cached", "gated_pixelcnn"),
    Entry("gan_mlp", "gan", {"arch": "mlp"}),
    Entry("gan_dcgan", "gan", {"arch": "dcgan"}),
]
ARMS = ("pixelcnn", "gated_pixelcnn", "causal_conv1d")


def build(entry: Entry, device: torch.device) -> torch.nn.Module:
    """The entry's model from the registry with its default config plus ``options``, random init (seed 0)."""

    spec = model_spec(entry.model)
    torch.manual_seed(0)
    return spec.build(build_config(spec.config_cls, dict(entry.options)), DATASETS[entry.dataset]).to(device).eval()


def speed_class(entry: Entry, dim: int) -> str:
    """The fast/slow column."""
    if entry.model not in ARMS:
        return "fast: 1 network pass"
    if entry.sampler == "naive":
        return f"slow: D = {dim} sequential full passes"
    return f"slow: D = {dim} sequential steps (cached, O(1) each)"


def naive_step(model: Any, images: torch.Tensor, pixel: int) -> None:
    """One step of ``sample_naive``: a full forward pass, the pixel's conditional, a Gumbel-max draw."""

    width = model.spec.shape[2]
    r, c = divmod(pixel, width)
    log_probs = model.level_log_probs(model(images, None)[:, :, r, c])
    images[:, 0, r, c] = _draw(log_probs, None).to(images.dtype)


def sampler_fn(entry: Entry, model: Any, n: int, naive_full: bool, naive_pixels: int) -> tuple[Callable[[], Any], int]:
    """(a call to time, the factor its time is multiplied by to give the time of n images)."""
    if entry.sampler != "naive":
        return (lambda: model.sample(n)), 1

    if naive_full:
        return (lambda: sample_naive(model, n)), 1
    dim = model.spec.dim
    images = next(model.parameters()).new_zeros(n, *model.spec.shape)
    # pixels spread over the image: the work per step does not depend on which pixel, the draws land anywhere
    pixels = [int(p) for p in torch.linspace(0, dim - 1, naive_pixels).round()]

    @torch.no_grad()
    def some_steps() -> None:
        for p in pixels:
            naive_step(model, images, p)

    return some_steps, dim / naive_pixels  # type: ignore[return-value]


def check_images(out: torch.Tensor, n: int, model: Any) -> None:
    """A sanity check on what was timed: n images of the data shape, finite, on the data scale."""
    shape = (n, *model.spec.shape)
    if tuple(out.shape) != shape:
        raise DGMError(f"sample returned shape {tuple(out.shape)}, expected {shape}")
    if not torch.isfinite(out).all() or out.min() < 0 or out.max() > model.spec.levels - 1:
        raise DGMError(f"samples outside the data scale 0..{model.spec.levels - 1}")


@dataclass
class Measurement:
    entry: Entry
    model: Any
    seconds: list[float]
    factor: float
    source: str

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) * self.factor


def measure(entry: Entry, model: Any, n: int, device: torch.device, repeats: int, warmup: int, naive_full: bool,
            naive_pixels: int, source: str) -> Measurement:
    fn, factor = sampler_fn(entry, model, n, naive_full, naive_pixels)
    if factor == 1:
        check_images(fn(), n, model)  # also the first warm-up call
    for _ in range(warmup - (factor == 1)):
        fn()
    seconds = [timed(fn, device)[0] for _ in range(repeats)]
    return Measurement(entry, model, seconds, factor, source)


def entries_from_runs(runs: list[Path], device: torch.device) -> list[tuple[Entry, Any, str]]:
    """Trained models from run directories (``best.pt``); ARMs get both samplers."""

    out = []
    for run_dir in runs:
        run = load_run(run_dir, device=device)
        name = run.config["model"]
        arch = run.config["model_options"].get("arch")
        label = f"{name}{'_' + arch if arch else ''} ({run_dir})"
        samplers = ["naive", "sample"] if name in ARMS else ["sample"]
        for sampler in samplers:
            entry = Entry(label + (" naive" if sampler == "naive" else ""), name, {}, run.config["dataset"], sampler)
            out.append((entry, run.model.eval(), f"run {run_dir}, best.pt epoch {run.epoch}"))
    return out


def rate(images_per_second: float) -> str:
    """Images per second with three significant digits below 100 (the naive ARM samplers: ~0.1/s)."""
    return f"{images_per_second:,.1f}" if images_per_second >= 100 else f"{images_per_second:.3g}"


def describe(model: Any) -> str:
    return f"{sum(p.numel() for p in model.parameters()):,} parameters"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.sampling_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=64, help="images per batch")
    parser.add_argument("--only", nargs="+", choices=[e.name for e in ENTRIES], metavar="NAME",
                        help=f"entries to measure (default: all): {', '.join(e.name for e in ENTRIES)}")
    parser.add_argument("--run", type=Path, action="append", default=[], metavar="RUN_DIR",
                        help="measure a trained run instead of the random-init entries (repeat)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per entry (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per entry (default: 1)")
    parser.add_argument("--naive-pixels", type=int, default=8, help="steps timed for the naive ARM sampler")
    parser.add_argument("--naive-full", action="store_true", help="run the naive ARM sampler over all pixels")
    parser.add_argument("--append", action="store_true", help="append one row per entry to benchmarks/RESULTS.md")
    add_device_arguments(parser, threads=1)
    args = parser.parse_args(argv)
    if min(args.n, args.repeats, args.warmup, args.naive_pixels) < 1:
        raise DGMError("-n, --repeats, --warmup and --naive-pixels must be at least 1")
    device = setup_device(args)
    print(f"sampling {args.n} images per call; measured on {device.type} ({torch.get_num_threads()} torch threads"
          f"{', GPU ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''})", flush=True)
    if args.run:
        todo = entries_from_runs(args.run, device)
    else:
        chosen = [e for e in ENTRIES if not args.only or e.name in args.only]
        todo = [(e, build(e, device), "random init, default config") for e in chosen]
    results = []
    for entry, model, source in todo:
        m = measure(entry, model, args.n, device, args.repeats, args.warmup, args.naive_full, args.naive_pixels, source)
        results.append(m)
        print(f"  {entry.name}: {m.median:.3f} s per {args.n} images", flush=True)
    table, rows = [], []
    for m in results:
        e, spec = m.entry, m.model.spec
        extrapolated = m.factor != 1
        how = (f"median of {args.repeats} after {args.warmup} warm-up" if not extrapolated else
               f"extrapolated: median of {args.repeats} x {args.naive_pixels} naive steps, times D/{args.naive_pixels}")
        data = f"{e.dataset} ({spec.levels} levels)"
        table.append([e.name, data, speed_class(e, spec.dim), rate(args.n / m.median), f"{m.median:.4f}",
                      "yes" if extrapolated else "no", describe(m.model)])
        sampler = ("sample_naive (models.arm.sampling)" if e.sampler == "naive" else "model.sample (cached)"
                   if e.model in ARMS else "model.sample")
        rows.append(results_row(
            device, f"{data}, 28x28, batch {args.n}",
            f"{e.name}: {e.model} {e.options or ''} ({describe(m.model)}; {m.source})",
            f"sampling speed, {sampler}; {speed_class(e, spec.dim)}",
            f"{rate(args.n / m.median)} images/s ({m.median:.3f} s per batch of {args.n}; {how})"))
    print_table(["model", "data", "fast/slow", "images/s", f"s per {args.n}", "extrapolated", "size"], table)
    return emit(rows, args.append)


if __name__ == "__main__":
    run_cli(main)
