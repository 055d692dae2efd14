"""The main job (``make demo``): train the models on the embedded data set and compare them.

``python -m demo --out runs/demo [--dataset digits] [--quick]`` trains each model into
``OUT/<model>``, evaluates it on the test split with every applicable estimator (naive Monte Carlo,
ELBO, importance sampled; exact where a model has it) at several K, and writes the comparison
report ``OUT/compare/report.md`` (table, paired bootstrap differences, figures). A few minutes on
2 CPU cores; ``--quick`` is the smoke-test size (2 epochs, K up to 100 on 100 test
images: seconds). Runs already in OUT are resumed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.config import OneLineErrorParser
from core.errors import DGMError, run_cli
from evaluation.compare import compare
from evaluation.evaluate import evaluate_run
from evaluation.sample_quality import run_sample_quality
from inference.train import main as train_main
from inference.training.load_run import load_run

#: test images evaluated and compared by ``--quick`` (the notebooks' and tests' small settings)
QUICK_LIMIT = 100

#: (run name, model, epochs, extra options) trained by the main job; each model family adds its entry.
#: PPCA (dequantized, so its numbers are of the discrete data too) is the linear baseline.
JOBS: list[tuple[str, str, int, list[str]]] = [
    ("vae", "vae", 80, ["--latent-dim", "8", "--hidden", "256", "256"]),
    ("vae_iaf", "vae", 80, ["--latent-dim", "8", "--hidden", "256", "256", "--posterior-flow", "iaf",
                            "--flow-length", "2"]),
    ("ppca", "ppca", 150, ["--latent-dim", "10", "--lr", "1e-2"]),
    ("flow", "flow", 100, ["--arch", "realnvp_mlp", "--num-layers", "6", "--hidden", "256", "256"]),
    ("pixelcnn", "pixelcnn", 60, ["--channels", "32", "--residual-blocks", "4", "--output-channels", "32"]),
    ("gan", "gan", 100, ["--arch", "dcgan", "--channels", "32"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for every model (default: each job's own)")
    parser.add_argument("--num-samples", type=int, nargs="+", default=[1, 10, 100, 1000], metavar="K")
    parser.add_argument("--quick", action="store_true", help="tiny settings for smoke tests")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise DGMError(f"--epochs must be at least 1, got {args.epochs}")
    ks = [1, 10, 100] if args.quick else args.num_samples
    args.out.mkdir(parents=True, exist_ok=True)
    run_dirs = []
    quality_cache: dict = {}
    for name, model, job_epochs, options in JOBS:
        epochs = 2 if args.quick else (args.epochs or job_epochs)
        run_dir = args.out / name
        resume = ["--resume"] if (run_dir / "checkpoint.pt").is_file() else []
        if resume and (run_dir / "config.json").is_file():
            print(f"{run_dir} exists: resuming it (delete it to start afresh)")
        try:
            train_main([model, "--dataset", args.dataset, "--epochs", str(epochs), "--out", str(run_dir),
                        *options, *resume])
            print(f"evaluating {run_dir} on the test split, K = {' '.join(map(str, ks))}", flush=True)
            run = load_run(run_dir)
            evaluate_run(run, "test", None, ks, limit=QUICK_LIMIT if args.quick else None)
            run_sample_quality(run, n=100 if args.quick else None, bootstrap=5 if args.quick else 20,
                               cache=quality_cache)
        except DGMError as exc:
            raise DGMError(f"{name}: {exc}") from None
        run_dirs.append(run_dir)
    report = compare(run_dirs, args.out / "compare", limit=QUICK_LIMIT if args.quick else None)
    print(f"runs in {args.out}; comparison report: {report}")
    return 0


if __name__ == "__main__":
    run_cli(main)
