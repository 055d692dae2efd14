"""``python -m evaluation.decompress FILE --run RUN_DIR --out DIR [--png]``

Decodes a file written by ``evaluation.compress`` with the run that wrote it, checked by the model's
identity hash before any work and by the SHA-256 of the decoded images after it. Writes
``DIR/images.npy`` (uint8, (N, C, H, W), the data's integer levels) and, with ``--png``, one PNG an image
(``DIR/png/00000.png`` ..., grey levels stretched to 0..255 for viewing). ``DIR`` must be empty or new.
Runs on the kind of device and with the torch thread count recorded in the file unless told otherwise.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image  # Pillow, installed with torchvision

from core.config import OneLineErrorParser
from core.device import resolve_device, set_threads
from core.errors import DGMError, run_cli
from inference.training.load_run import load_run
from core.run_dir import atomic_write_bytes
from evaluation.compression.container import read_file
from evaluation.compression.lossless import decompress_images


def write_images(images: torch.Tensor, levels: int, out: Path, png: bool) -> None:
    """``out/images.npy`` (uint8 levels) and, if asked, ``out/png/NNNNN.png`` (levels stretched to 0..255)."""
    array = images.round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(out / "images.npy", buffer.getvalue())
    if png:
        scale = 255 // (levels - 1)
        for i, image in enumerate(array):
            buffer = io.BytesIO()
            Image.fromarray((image[0] * scale).astype(np.uint8)).save(buffer, format="PNG")
            atomic_write_bytes(out / "png" / f"{i:05d}.png", buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.decompress", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="a file written by evaluation.compress")
    parser.add_argument("--run", required=True, help="the run directory whose model wrote the file")
    parser.add_argument("--out", required=True, help="a new or empty directory for the decoded images")
    parser.add_argument("--png", action="store_true", help="also write one PNG an image")
    parser.add_argument("--device", default="file", choices=["file", "cpu", "cuda"],
                        help="where the networks run (default: the kind of device recorded in the file)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the number recorded in the file)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DGMError(f"--out {out} exists and is not an empty directory (nothing is overwritten)")
    compressed = read_file(args.file)
    computed = compressed.header.get("computed_on", {})
    set_threads(args.threads if args.threads is not None else int(computed.get("threads", 1)))
    wanted = "cpu" if computed.get("device", "cpu") == "cpu" else "cuda"
    if args.device == "file" and wanted == "cuda" and not torch.cuda.is_available():
        raise DGMError(f"{args.file} was encoded on {computed.get('device')}; this machine has no GPU, and its "
                       "probabilities must be recomputed on the same kind of device")
    device = resolve_device(wanted if args.device == "file" else args.device)
    run = load_run(args.run, which=compressed.header.get("model", {}).get("checkpoint", "best"), device=device)
    images, seconds = decompress_images(compressed, run, device, args.file)
    out.mkdir(parents=True, exist_ok=True)
    write_images(images, run.model.spec.levels, out, args.png)
    n = images.shape[0]
    print(f"decoded {n} images from {args.file} into {out / 'images.npy'}: SHA-256 verified, "
          f"{n / max(seconds, 1e-9):.1f} images/s")
    return 0


if __name__ == "__main__":
    run_cli(main)
