"""``python -m evaluation.compress RUN_DIR --split test [--limit N] [--every S] --out FILE``

Losslessly compresses images of a split with the run's model: ANS pixel by pixel for autoregressive models
(rate = the exact NLL), bits-back ANS for VAEs (net rate = -ELBO; the one-off initial bits reported apart).
See ``evaluation/compression/`` and the README's "Lossless compression". Prints the file's size in bytes
and bits/dim next to the model's ideal code length for the same images, and images/s.

Decode with ``python -m evaluation.decompress FILE --run RUN_DIR --out DIR``.
"""
from __future__ import annotations

import argparse
import math

from core.paths import check_output_file
from core.config import OneLineErrorParser
from core.device import resolve_device, set_threads
from core.errors import run_cli
from inference.training.load_run import load_run
from evaluation.compression.arm_coding import ARMCodeStats
from evaluation.compression.codecs import CoderOptions, coder_name
from evaluation.compression.latent_buckets import DEFAULT_LATENT_BITS
from evaluation.compression.lossless import CompressionResult, compress_images, split_images


def summary(result: CompressionResult, dim: int) -> str:
    """One paragraph: file, payload and header size; the rate against the model's ideal code length."""
    n = result.count
    per_dim = 8.0 / (n * dim)  # bytes -> bits/dim
    lines = [f"{n} images, {result.file_bytes} bytes = {result.file_bytes * per_dim:.4f} bits/dim "
             f"(payload {result.payload_bytes} bytes = {result.payload_bytes * per_dim:.4f} bits/dim, "
             f"header and hash {result.header_bytes} bytes); {n / max(result.seconds, 1e-9):.1f} images/s"]
    stats = result.stats
    if isinstance(stats, ARMCodeStats):
        lines.append(f"exact NLL of the coded conditionals: {stats.ideal_bits.sum() / (n * dim):.4f} bits/dim "
                     f"({stats.nll_nats.mean():.2f} nats an image)")
    else:
        net = 8 * result.payload_bytes - stats.initial_bits
        lines.append(f"bits-back net rate {net / (n * dim):.4f} bits/dim ({net / n * math.log(2):.2f} nats an image) "
                     f"after {stats.initial_bits} initial bits; ideal net code length of the coded buckets "
                     f"{stats.ideal_net_bits.sum() / (n * dim):.4f} bits/dim")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.compress", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run directory written by inference.train")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"],
                        help="the data split whose images are compressed (default: test)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="first N images (after --every)")
    parser.add_argument("--every", type=int, default=1, metavar="S", help="every S-th image of the split")
    parser.add_argument("--out", required=True, help="the compressed file to write")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"],
                        help="best.pt (best validation objective) or checkpoint.pt (the last epoch) (default: best)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"],
                        help="where the networks run; decoding must use the same kind (default: cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, recorded in the file and reused by the decoder (default: 1)")
    parser.add_argument("--batch-size", type=int, default=CoderOptions.batch_size,
                        help=f"autoregressive models: images per network pass (default: {CoderOptions.batch_size})")
    parser.add_argument("--lanes", type=int, default=CoderOptions.lanes,
                        help="VAEs: independent bits-back chains coded side by side, each paying the initial bits "
                             f"once (default: {CoderOptions.lanes})")
    parser.add_argument("--latent-bits", type=int, default=DEFAULT_LATENT_BITS,
                        help="VAEs: 2^b equal-prior-mass buckets per latent dimension "
                             f"(default: {DEFAULT_LATENT_BITS})")
    args = parser.parse_args(argv)
    check_output_file(args.out, "--out")  # before minutes of coding, not after
    set_threads(args.threads)
    device = resolve_device(args.device)
    options = CoderOptions(batch_size=args.batch_size, lanes=args.lanes, latent_bits=args.latent_bits).validate()
    run = load_run(args.run_dir, which=args.checkpoint, device=device)
    coder_name(run.model, run.config["model"])  # an unsupported model is refused before any data is read
    x = split_images(run, args.split, args.every, args.limit)
    source = {"split": args.split, "every": args.every, "limit": args.limit}
    result = compress_images(run, x, args.out, options, source, device, args.checkpoint)
    print(f"wrote {args.out}: {summary(result, run.model.spec.dim)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
