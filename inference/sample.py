"""``python -m inference.sample RUN_DIR -n 64 --out FILE.png [--mean] [--seed S] [--temperature T]``: a grid of samples."""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from core.config import OneLineErrorParser
from core.device import resolve_device
from core.errors import DGMError, run_cli
from inference.training.load_run import load_run
from core.plots import save_image_grid


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m inference.sample", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("-n", type=int, default=64, help="number of samples")
    parser.add_argument("--out", type=Path, default=None, help="PNG file (default: RUN_DIR/samples.png)")
    parser.add_argument("--mean", action="store_true", help="show E[x | z] instead of drawing x (decoder models)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature T of models that have one (flows: base N(0, T^2 I))")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    if args.n < 1:
        raise DGMError("-n must be at least 1")
    run = load_run(args.run_dir, which=args.checkpoint, device=resolve_device(args.device))
    torch.manual_seed(args.seed)
    extra = {}
    if args.temperature is not None:
        if "temperature" not in inspect.signature(run.model.sample).parameters:
            raise DGMError(f"--temperature: a {run.config['model']!r} model has no sampling temperature")
        extra["temperature"] = args.temperature
    images = run.model.sample(args.n, mean=args.mean, **extra)
    out = args.out or args.run_dir / "samples.png"
    save_image_grid(images, run.dataset.spec.levels, out, title=f"{run.config['model']} samples")
    print(f"wrote {args.n} samples to {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
