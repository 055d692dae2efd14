"""Lossless compression measured: our files' bits/dim next to the model's NLL and general-purpose compressors.

``python -m benchmarks.compression RUN_DIR [RUN_DIR ...] [--every S] [--limit N] [--num-samples K] [--append]``

For each run (an autoregressive model or a VAE; others are refused with their reason), on the same test
images ``split[::every][:limit]``:

1. compress them with ``evaluation.compression`` into ``--out DIR/<run>.dgmz`` and decode the file again
   (checking every image bit for bit);
2. the model's NLL on the same images: the ``exact`` estimator for ARMs; for VAEs -ELBO with one draw
   (``elbo``, K = 1), -ELBO as the mean of K draws and the importance-sampled bound at K (one pass);
3. gzip, bz2, lzma and PNG on the same images (``evaluation.compression.baselines`` says how each is
   counted).

Prints one RESULTS row per number (``--append`` adds them to ``benchmarks/RESULTS.md``). Bits/dim are
bits / (N D) of the discrete data; the file's size includes its header and checksums, the payload does
not; for VAEs the net rate is the payload minus the chain's initial bits.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from benchmarks.results_rows import emit, print_table, results_row
from core.config import OneLineErrorParser
from core.device import set_threads
from core.errors import run_cli
from inference.training.load_run import LoadedRun, load_run
from evaluation.compression.arm_coding import ARMCodeStats
from evaluation.compression.baselines import baseline_sizes
from evaluation.compression.codecs import CoderOptions, coder_name
from evaluation.compression.latent_buckets import DEFAULT_LATENT_BITS
from evaluation.compression.lossless import round_trip, split_images
from evaluation.diagnostics import standard_error
from evaluation.evaluate import evaluate_model
from core.units import bits_per_dim

BASELINE_NOTES = {
    "gzip": "gzip -9, one stream of raw uint8 pixels", "bz2": "bz2 -9, one stream of raw uint8 pixels",
    "lzma": "xz preset 9e, one stream of raw uint8 pixels",
    "gzip_packed": "gzip -9, pixels packed 8 to a byte", "bz2_packed": "bz2 -9, pixels packed 8 to a byte",
    "lzma_packed": "xz preset 9e, pixels packed 8 to a byte",
    "png_files": "PNG (Pillow, optimize), one file per image, sizes summed",
    "png_mosaic": "PNG (Pillow, optimize), all images in one (N*28) x 28 image",
}


def run_label(run: LoadedRun) -> str:
    """The model as a RESULTS cell: its name and head, the checkpoint, and the command that trained it."""
    return (f"{run.config['model']} ({run.model.head.name} head), "
            f"epoch {run.epoch} of best.pt, trained by `{run.config.get('command', '?')}`")


def subset_label(run: LoadedRun, count: int, every: int, limit: int | None) -> str:
    picked = f"every {every}th test image" if every > 1 else "first test images"
    return f"{run.config['dataset']}, {picked} ({count} images)"


def measure(run: LoadedRun, out: Path, every: int, limit: int | None, options: CoderOptions,
            num_samples: int) -> dict[str, Any]:
    """Everything one run's rows report, on the same images (see the module docstring)."""
    device = torch.device("cpu")
    coder = coder_name(run.model, run.config["model"])
    x = split_images(run, "test", every, limit)
    n, dim = x.shape[0], run.model.spec.dim
    path = out / f"{run.run_dir.name}.dgmz"
    result, decode_seconds = round_trip(run, x, path, options, {"split": "test", "every": every, "limit": limit},
                                        device)
    stats = result.stats
    measured: dict[str, Any] = {"coder": coder, "n": n, "dim": dim, "result": result, "path": path,
                                "encode_rate": n / result.seconds, "decode_rate": n / decode_seconds}
    if isinstance(stats, ARMCodeStats):
        summaries, _ = evaluate_model(run.model, x, ["exact"], [1], dim, log=None)
        measured["nll"] = {"exact": summaries["exact"]["1"]}
    else:
        summaries, _ = evaluate_model(run.model, x, ["elbo", "importance_sampled"], [1, num_samples], dim,
                                      log=None)
        measured["nll"] = {"elbo (1)": summaries["elbo"]["1"], f"elbo (mean of {num_samples})":
                           summaries["elbo"][str(num_samples)],
                           f"importance_sampled ({num_samples})": summaries["importance_sampled"][str(num_samples)]}
        net_nats = stats.net_bits * math.log(2.0)
        measured["net"] = {"bits": 8 * result.payload_bytes - stats.initial_bits, "initial_bits": stats.initial_bits,
                           "se_nats": standard_error(torch.as_tensor(net_nats))}
    measured["baselines"] = baseline_sizes(x, run.model.spec.levels)
    return measured


def rows_for(run: LoadedRun, m: dict[str, Any], every: int, limit: int | None, options: CoderOptions,
             with_baselines: bool = True) -> list[str]:
    """RESULTS rows of one run: our file, the model's NLL on the same images, and (unless another run on the
    same images wrote them already) the baselines."""
    n, dim, result = m["n"], m["dim"], m["result"]
    per_dim = 1.0 / (n * dim)
    data = subset_label(run, n, every, limit)
    model = run_label(run)
    device = torch.device("cpu")
    reference = m["nll"]["exact"]["bpd"] if "exact" in m["nll"] else next(iter(m["nll"].values()))["bpd"]
    timing = f"encode {m['encode_rate']:.1f} images/s, decode {m['decode_rate']:.1f} images/s, decoded bit-exact"
    coder = (f"ANS (arm-ans, batch {options.batch_size})" if m["coder"] == "arm-ans" else
             f"bits-back ANS (vae-bits-back, {result.header['coder']['lanes']} lane(s), "
             f"2^{options.latent_bits} buckets a latent)")
    file_bpd = 8 * result.file_bytes * per_dim
    payload_bpd = 8 * result.payload_bytes * per_dim
    rows = [results_row(device, data, model, f"lossless file: {coder}, header included",
                        f"**{file_bpd:.4f} bits/dim** ({result.file_bytes} bytes; payload {payload_bpd:.4f} "
                        f"bits/dim, header and hashes {result.header_bytes} bytes; {timing})")]
    if "net" in m:
        net = m["net"]
        net_bpd = net["bits"] * per_dim
        se_bpd = bits_per_dim(net["se_nats"], dim)
        elbo_bpd = m["nll"][next(k for k in m["nll"] if k.startswith("elbo (mean"))]["bpd"]
        rows.append(results_row(device, data, model, "lossless file: bits-back net rate (payload minus initial bits)",
                                f"**{net_bpd:.4f} ± {se_bpd:.4f} bits/dim** ({100 * (net_bpd / elbo_bpd - 1):+.2f}% "
                                f"of -ELBO); initial bits {net['initial_bits']} ({net['initial_bits'] / n:.1f} "
                                f"an image over this chain)"))
    else:
        rows.append(results_row(device, data, model, "lossless file: payload vs exact NLL",
                                f"{payload_bpd:.4f} bits/dim = NLL {100 * (payload_bpd / reference - 1):+.3f}%"))
    for name, entry in m["nll"].items():
        rows.append(results_row(device, data, model, name, f"NLL {entry['nll']:.2f} ± {entry['se']:.2f} nats = "
                                f"{entry['bpd']:.4f} bits/dim"))
    for name, size in (m["baselines"].items() if with_baselines else ()):
        rows.append(results_row(device, data, "(no model)", BASELINE_NOTES[name],
                                f"{8 * size * per_dim:.4f} bits/dim ({size} bytes)"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.compression", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories (autoregressive models or VAEs)")
    parser.add_argument("--every", type=int, default=10, help="every S-th test image (default: 10)")
    parser.add_argument("--limit", type=int, default=None, help="at most N images (after --every)")
    parser.add_argument("--num-samples", type=int, default=1000,
                        help="VAEs: K of the -ELBO mean and the importance-sampled bound (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=CoderOptions.batch_size,
                        help=f"images coded per network pass (default: {CoderOptions.batch_size})")
    parser.add_argument("--lanes", type=int, default=CoderOptions.lanes,
                        help=f"interleaved ANS coder lanes (default: {CoderOptions.lanes})")
    parser.add_argument("--latent-bits", type=int, default=DEFAULT_LATENT_BITS,
                        help=f"VAEs: bits of each discretised latent in bits-back coding (default: {DEFAULT_LATENT_BITS})")
    parser.add_argument("--out", default="runs/compression", help="where the compressed files go")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch (default: 1)")
    parser.add_argument("--append", action="store_true", help="append the rows to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    options = CoderOptions(args.batch_size, args.lanes, args.latent_bits).validate()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, table, baselines_written = [], [], set()
    for run_dir in args.runs:
        run = load_run(run_dir)
        torch.manual_seed(0)
        m = measure(run, out, args.every, args.limit, options, args.num_samples)
        images = (run.config["dataset"], m["n"])  # same data set, --every and --limit: the same images
        rows += rows_for(run, m, args.every, args.limit, options, images not in baselines_written)
        baselines_written.add(images)
        per_dim = 8.0 / (m["n"] * m["dim"])
        best = min(m["baselines"].items(), key=lambda item: item[1])
        table.append([run.run_dir.name, m["n"], f"{m['result'].file_bytes * per_dim:.4f}",
                      f"{(m['net']['bits'] / 8 if 'net' in m else m['result'].payload_bytes) * per_dim:.4f}",
                      " / ".join(f"{e['bpd']:.4f}" for e in m["nll"].values()), f"{best[0]} {best[1] * per_dim:.4f}"])
    print_table(["run", "images", "file bits/dim", "payload or net", "model NLL bits/dim", "best baseline"], table)
    return emit(rows, args.append)


if __name__ == "__main__":
    run_cli(main)
