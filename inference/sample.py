"""``python -m inference.sample RUN_DIR -n 64 --out FILE.png [--mean] [--seed S] [--temperature T]``: a grid of samples."""
from __future__ import annotations

from core.errors import quiet_interrupts

if __name__ == "__main__":
    quiet_interrupts()  # Ctrl-C during the heavy imports below: one line, not a traceback


import inspect
import math
from contextlib import nullcontext
from pathlib import Path

import torch

from core.config import OneLineErrorParser
from core.device import THREADS_HELP, resolve_device, set_threads
from core.errors import DGMError, run_cli
from core.paths import check_output_file, display_path
from core.run_lock import RunLock
from inference.training.load_run import load_run
from core.plots import run_label, save_image_grid


#: the most images in one grid: beyond this a PNG grid is unreadable (and the draw is only memory)
MAX_SAMPLES = 10_000


def output_path(out: Path | None, run_dir: Path) -> Path:
    """The PNG to write: ``--out`` (a directory gets ``samples.png`` inside it), or ``RUN_DIR/samples.png``;
    checked before any work (suffix, a writable folder)."""
    if out is None:
        return run_dir / "samples.png"
    return check_output_file(out / "samples.png" if out.is_dir() else out, "--out", ".png")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m inference.sample", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="a run directory written by inference.train")
    parser.add_argument("-n", type=int, default=64, help=f"number of samples, 1..{MAX_SAMPLES} (default: 64)")
    parser.add_argument("--out", type=Path, default=None,
                        help="PNG file, or a directory to write samples.png into (default: RUN_DIR/samples.png)")
    parser.add_argument("--mean", action="store_true", help="show E[x | z] instead of drawing x (decoder models)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature T of models that have one (flows: base N(0, T^2 I))")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default: 0)")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"],
                        help="best.pt (best validation objective) or checkpoint.pt (the last epoch) (default: best)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto uses a GPU when there is one (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if not 1 <= args.n <= MAX_SAMPLES:
        raise DGMError(f"-n must be in 1..{MAX_SAMPLES}, got {args.n}")
    if not 0 <= args.seed < 2 ** 32:
        raise DGMError(f"--seed must be in 0..{2 ** 32 - 1}, got {args.seed}")
    if args.temperature is not None and not (math.isfinite(args.temperature) and args.temperature > 0):
        raise DGMError(f"--temperature must be a positive finite number, got {args.temperature}")
    out = output_path(args.out, args.run_dir)
    run = load_run(args.run_dir, which=args.checkpoint, device=resolve_device(args.device))
    extra = {}
    if args.temperature is not None:
        if "temperature" not in inspect.signature(run.model.sample).parameters:
            raise DGMError(f"--temperature: a {run.config['model']!r} model has no sampling temperature")
        extra["temperature"] = args.temperature
    inside = out.resolve().is_relative_to(args.run_dir.resolve())
    with RunLock(args.run_dir, "sampling") if inside else nullcontext():  # a file of the run: one writer
        torch.manual_seed(args.seed)
        images = run.model.sample(args.n, mean=args.mean, **extra)
        shown = getattr(run.model, "mean_label", "means") if args.mean else "samples"
        temperature = f" at temperature {args.temperature:g}" if args.temperature is not None else ""
        save_image_grid(images, run.dataset.spec.levels, out,
                        title=f"{run_label(run.config['model'], args.run_dir)}: {args.n} {shown}{temperature} "
                              f"({args.checkpoint} checkpoint, epoch {run.epoch}, seed {args.seed})")
    print(f"wrote {args.n} {shown} to {display_path(out)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
