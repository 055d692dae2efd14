"""The main job (``make demo``): train the models on the embedded data set and compare them.

``python -m evaluation.demo --out runs/demo [--dataset digits] [--quick]`` trains each model into
``OUT/<model>``, evaluates it on the test split with every applicable estimator, and writes the
comparison report into ``OUT/compare``. A few minutes on 2 CPU cores; ``--quick`` is the smoke-test size.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.config import OneLineErrorParser
from core.errors import DGMError, run_cli

#: (run name, model, extra options) trained by the main job; each model family adds its entry.
JOBS: list[tuple[str, str, list[str]]] = [
    ("vae", "vae", ["--latent-dim", "8", "--hidden", "256", "256"]),
]


def main(argv: list[str] | None = None) -> int:
    from evaluation.evaluate import evaluate_run
    from core.load_run import load_run
    from inference.train import main as train_main

    parser = OneLineErrorParser(prog="python -m evaluation.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--num-samples", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--quick", action="store_true", help="tiny settings for smoke tests")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    ks = [1, 10] if args.quick else args.num_samples
    args.out.mkdir(parents=True, exist_ok=True)
    for name, model, options in JOBS:
        run_dir = args.out / name
        resume = ["--resume"] if (run_dir / "checkpoint.pt").is_file() else []
        if resume and (run_dir / "config.json").is_file():
            print(f"{run_dir} exists: resuming it (delete it to start afresh)")
        try:
            train_main([model, "--dataset", args.dataset, "--epochs", str(epochs), "--out", str(run_dir),
                        *options, *resume])
        except DGMError as exc:
            raise DGMError(f"{name}: {exc}") from None
        evaluate_run(load_run(run_dir), "test", None, ks)
    print(f"runs in {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
