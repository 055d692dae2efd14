"""Ours against plain PyTorch and peer libraries, side by side in one process (issue #18's table).

Rows (``--rows``; batch 128 unless stated):

- ``vae_step``: VAE 784-500-500-20 training step: our ``Trainer`` vs plain PyTorch vs pythae
- ``importance``: importance-sampled log p(x), K = 1000, 100 binarized-MNIST test images: ours
  (``evaluation.importance_sampled``) vs a plain-torch IWAE (same pass sizes, encoder once per chunk)
  vs pythae's ``get_nll``
- ``maf_step``: MAF 5 x (784-1024-1024) training step vs zuko, nflows, normflows
- ``realnvp_step``: RealNVP 8 couplings (1024-1024) training step vs zuko, nflows, normflows
- ``realnvp_density`` / ``realnvp_sampling``: its log-density of 1024 images / 1024 samples vs the same peers

Every pair uses the same architecture and our weights (parameter counts printed); before timing, each
contender's loss (or log-likelihood, or samples) must agree with ours on the same noise, to relative
1e-4 — ``benchmarks/peer_vae.py`` and ``benchmarks/peer_flow_models.py`` say how each pair is matched,
and why the flows' checks swap our log-scale map into the peer. A contender that disagrees is reported
FAILED and not timed, and the script exits with status 1. Peers are optional
(``requirements-bench.txt``); one that is not installed is named as skipped. Nothing is installed here.

Timing: interleaved blocks (``benchmarks.timing.interleaved``), per unit of work the median CPU time of
the process (``time.process_time``) and the median wall time; ratios ours / contender on CPU time (wall
in brackets). The networks are untrained (seed 0; the flows' weights perturbed so that the checks see
them); the work does not depend on the values. Training rows use synthetic images of the data set's
shape and levels, already on the device (no data loading is timed); the importance row uses the real
test images (``--data-dir``), or synthetic ones with ``--quick``.

``python -m benchmarks.peers [--rows ...] [--blocks 5] [--device auto|cpu|cuda] [--threads 1] [--data-dir DIR]
[--quick] [--append]``; ``--quick`` runs tiny sizes (8x8 images, small networks, one block: the test
suite's mode); ``--append`` adds one row per comparison to benchmarks/RESULTS.md (date, commit, hardware
with the load average, the exact command).
"""
from __future__ import annotations

import argparse
import gc
from dataclasses import dataclass
from types import ModuleType

import torch

from benchmarks.peer_flows import FLOW_PEERS, flow_evaluation, flow_step
from benchmarks.peer_imports import PEERS, available, version
from benchmarks.peer_vae import importance_sampling, vae_step
from benchmarks.results_rows import emit, print_table, results_row
from benchmarks.side_by_side import RTOL, Comparison, Timing, check, measure, ratio
from benchmarks.timing import add_device_arguments, setup_device
from core.config import OneLineErrorParser
from core.errors import DGMError, run_cli
from data.dataset import load_dataset
from data.specs import DATASETS
from inference.training.config import TrainConfig

ROWS = ["vae_step", "importance", "maf_step", "realnvp_step", "realnvp_density", "realnvp_sampling"]


@dataclass(frozen=True)
class Sizes:
    """Sizes of every row: the issue's (``FULL``) or the test suite's (``QUICK``)."""

    vae_dataset: str
    vae_hidden: tuple[int, ...]
    latent_dim: int
    batch_size: int
    vae_steps: int  # training steps per timed block
    is_images: int
    is_samples: int
    is_check_images: int  # images of the importance-sampling check (full K)
    flow_dataset: str
    maf_layers: int
    maf_hidden: tuple[int, ...]
    realnvp_layers: int
    realnvp_hidden: tuple[int, ...]
    flow_steps: int
    eval_batch: int  # images of the log-density and sampling rows


FULL = Sizes("binarized_mnist", (500, 500), 20, 128, 20, 100, 1000, 10,
             "mnist", 5, (1024, 1024), 8, (1024, 1024), 2, 1024)
QUICK = Sizes("binarized_digits", (16,), 2, 8, 2, 4, 16, 2, "digits", 2, (64, 64), 2, (16, 16), 1, 8)


def synthetic(n: int, dataset: str, device: torch.device, seed: int = 1) -> torch.Tensor:
    """n images of the data set's shape: Bernoulli(0.13) pixels for binary data, uniform levels otherwise."""
    spec = DATASETS[dataset]
    gen = torch.Generator().manual_seed(seed)
    if spec.levels == 2:
        return torch.bernoulli(torch.full((n, *spec.shape), 0.13), generator=gen).to(device)
    return torch.randint(0, spec.levels, (n, *spec.shape), generator=gen).float().to(device)


def test_images(sizes: Sizes, quick: bool, data_dir: str | None, device: torch.device) -> tuple[torch.Tensor, str]:
    """(the importance row's images, their description): binarized-MNIST test images, synthetic with --quick."""
    if quick:
        return synthetic(sizes.is_images, sizes.vae_dataset, device, seed=2), f"synthetic {sizes.vae_dataset}-shaped"
    x = load_dataset("binarized_mnist", data_dir).split("test")[:sizes.is_images].to(device)
    return x, f"binarized_mnist test, first {sizes.is_images} images"


def sizes_of(hidden: tuple[int, ...]) -> str:
    return "-".join(map(str, hidden))


def build(row: str, sizes: Sizes, peers: dict[str, ModuleType], device: torch.device, quick: bool,
          data_dir: str | None) -> Comparison:
    """The comparison of one row with its contenders (built, not yet checked)."""
    s = sizes
    config = TrainConfig(batch_size=s.batch_size, lr=1e-3)
    vae_spec, flow_spec = DATASETS[s.vae_dataset], DATASETS[s.flow_dataset]
    vae = f"VAE {vae_spec.dim}-{sizes_of(s.vae_hidden)}-{s.latent_dim}"
    vae_peers = {k: v for k, v in peers.items() if k == "pythae"}
    flow_peers = {k: v for k, v in peers.items() if k in FLOW_PEERS}
    synthetic_data = f"synthetic {s.flow_dataset}-shaped images"
    if row == "vae_step":
        x_all = synthetic(s.vae_steps * s.batch_size, s.vae_dataset, device)
        contenders = vae_step(vae_spec, s.vae_hidden, s.latent_dim, x_all, config, vae_peers, device)
        return Comparison(f"{vae} training step, batch {s.batch_size}", "step",
                          f"synthetic {s.vae_dataset}-shaped images", contenders)
    if row == "importance":
        x, described = test_images(s, quick, data_dir, device)
        contenders = importance_sampling(vae_spec, s.vae_hidden, s.latent_dim, x, x[:s.is_check_images],
                                         s.is_samples, vae_peers, device)
        return Comparison(f"{vae} importance-sampled log p(x), K = {s.is_samples}, {s.is_images} images",
                          f"estimate of {s.is_images} images", described, contenders)
    if row in ("maf_step", "realnvp_step"):
        maf = row == "maf_step"
        layers, hidden = (s.maf_layers, s.maf_hidden) if maf else (s.realnvp_layers, s.realnvp_hidden)
        x_all = synthetic(s.flow_steps * s.batch_size, s.flow_dataset, device)
        contenders, failed = flow_step(flow_spec, "maf" if maf else "realnvp_mlp", layers, hidden, x_all, config,
                                       flow_peers, device)
        title = (f"MAF {layers} x ({flow_spec.dim}-{sizes_of(hidden)})" if maf else
                 f"RealNVP {layers} couplings ({sizes_of(hidden)})") + f" training step, batch {s.batch_size}"
        return Comparison(title, "step", synthetic_data, contenders, failed)
    y = synthetic(s.eval_batch, s.flow_dataset, device) + torch.rand(s.eval_batch, *flow_spec.shape,
                                                                     generator=torch.Generator().manual_seed(3)).to(device)
    density, sampling, failed = flow_evaluation(flow_spec, s.realnvp_layers, s.realnvp_hidden, y, flow_peers, device)
    name = f"RealNVP {s.realnvp_layers} couplings ({sizes_of(s.realnvp_hidden)})"
    if row == "realnvp_density":
        return Comparison(f"{name} log_density, batch {s.eval_batch}", f"batch of {s.eval_batch}",
                          "synthetic dequantized images", density, failed)
    return Comparison(f"{name} sampling, batch {s.eval_batch}", f"batch of {s.eval_batch}", "-", sampling, failed)


def skipped_peers(row: str, missing: list[str]) -> list[str]:
    """The peers of this row that are not installed."""
    relevant = ("pythae",) if row in ("vae_step", "importance") else FLOW_PEERS
    return [f"{name} (not installed)" for name in missing if name in relevant]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def table_rows(comparison: Comparison, timings: dict[str, Timing]) -> list[list[object]]:
    """One printed line per contender: parameters, CPU and wall ms per unit, ratios, the check."""
    lines = []
    for c in comparison.contenders:
        t = timings.get(c.name)
        timed = [ms(t.cpu), f"{ms(t.cpu_range[0])}..{ms(t.cpu_range[1])}", ms(t.wall),
                 f"{ratio(timings, c.name):.3f}", f"{ratio(timings, c.name, 'wall'):.3f}"] if t else ["-"] * 5
        lines.append([comparison.title[:48], c.name, f"{c.parameters:,}", *timed, c.check])
    return lines


def result_text(comparison: Comparison, timings: dict[str, Timing]) -> str:
    """The RESULTS cell: ours' time, then each contender's with the ratio ours / it (CPU, and wall)."""
    parts = [f"ours {ms(timings['ours'].cpu)} ms CPU ({ms(timings['ours'].wall)} ms wall) per {comparison.unit}"]
    for c in comparison.contenders[1:]:
        if c.name in timings:
            parts.append(f"{c.name} {ms(timings[c.name].cpu)} ms: ours/{c.name} {ratio(timings, c.name):.3f} "
                         f"(wall {ratio(timings, c.name, 'wall'):.3f})")
        else:
            parts.append(f"{c.name} not timed: check {c.check}")
    parts += [f"skipped {s}" for s in comparison.skipped]
    return "; ".join(parts)


def estimator_text(comparison: Comparison, blocks: int, peers: dict[str, ModuleType]) -> str:
    versions = ", ".join(f"{n} {version(n)}" for n in peers if n in {c.name for c in comparison.contenders})
    params = ", ".join(f"{c.name} {c.parameters:,}" for c in comparison.contenders)
    return (f"CPU time of the process per {comparison.unit}, median of {blocks} interleaved blocks, ratio ours/peer; "
            f"parameters {params}; each checked against ours on the same weights and noise (rel. tol. {RTOL:g})"
            + (f"; peers {versions}" if versions else ""))


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.peers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS,
                        help=f"comparisons to run (default: all): {', '.join(ROWS)}")
    parser.add_argument("--blocks", type=int, default=5, help="interleaved timed blocks per row (--quick: 1)")
    parser.add_argument("--data-dir", default=None, help="data directory of the binarized-MNIST test images")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one block (the test suite)")
    parser.add_argument("--append", action="store_true", help="append one row per comparison to benchmarks/RESULTS.md")
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    if args.blocks < 1:
        raise DGMError("--blocks must be at least 1")
    device = setup_device(args)
    sizes, blocks = (QUICK, 1) if args.quick else (FULL, args.blocks)
    peers, missing = available(list(PEERS))
    print(f"measured on {device.type} ({torch.get_num_threads()} torch threads); peers: "
          + ", ".join(f"{n} {version(n)}" for n in peers) + (f"; not installed: {', '.join(missing)}" if missing else ""),
          flush=True)
    table, rows, failed = [], [], False
    for row in args.rows:
        comparison = build(row, sizes, peers, device, args.quick, args.data_dir)
        comparison.skipped += skipped_peers(row, missing)
        passed = check(comparison)
        for c in comparison.contenders:
            print(f"{row}: {c.name} ({c.parameters:,} parameters; {c.matched}): check {c.check}", flush=True)
        failed |= len(passed) < len(comparison.contenders)
        for s in comparison.skipped:
            print(f"{row}: skipped {s}", flush=True)
        timings = measure(passed, blocks, device)
        table += table_rows(comparison, timings)
        rows.append(results_row(device, comparison.dataset, comparison.title,
                                estimator_text(comparison, blocks, peers), result_text(comparison, timings)))
        del comparison, passed  # free this row's networks and optimiser states before the next
        gc.collect()
    print_table(["row", "contender", "parameters", "CPU ms/unit", "min..max", "wall ms", "ours/this CPU",
                 "ours/this wall", "check (same weights and noise)"], table)
    emit(rows, args.append)
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
