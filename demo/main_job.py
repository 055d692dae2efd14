"""The main job (``make demo``): train the models on the embedded data set and compare them.

``python -m demo --out runs/demo [--dataset digits] [--quick]`` trains each model of ``JOBS`` into
``OUT/<run>``, evaluates it on the test split with every applicable estimator (naive Monte Carlo,
ELBO, importance sampled; exact where a model has it: the PixelCNN, and PPCA of the bin centres, whose
marginal is closed form) at K = 1, 10, 100, 1000, scores its samples (FD, KID, classes), and writes the
comparison report ``OUT/compare/report.md``: the headline table (one row per model, unconverged estimates
flagged and not ranked), the estimators against the exact likelihoods, the sample grids next to real
data, every estimate, paired bootstrap differences, figures (``evaluation.compare``).

About two minutes on 2 uncontended CPU cores (``docs/main_job.md`` has the measurements); ``--quick`` is
the smoke-test size (2 epochs, K up to 100 on the first 100 test images: seconds). PPCA is fitted in
closed form (maximum likelihood, Tipping & Bishop 1999), one epoch. Each model is announced as
"model k of N" with the time so far and an estimate of the time left; training prints one line per
model (a bar over the epochs on a terminal), not one per epoch. Runs already in OUT are resumed.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.device import THREADS_HELP, set_threads
from core.config import OneLineErrorParser
from core.errors import DGMError, run_cli
from evaluation.classifier import get_classifier, has_classifier
from evaluation.compare import compare, converged
from evaluation.estimator_registry import headline_order
from evaluation.evaluate import evaluate_run
from evaluation.sample_quality import run_sample_quality
from inference.train import main as train_main
from inference.training.load_run import load_run

#: test images evaluated and compared by ``--quick`` (the notebooks' and tests' small settings)
QUICK_LIMIT = 100
#: numbers of samples per example of the full job's evaluation
NUM_SAMPLES = [1, 10, 100, 1000]


@dataclass(frozen=True)
class Job:
    """One model of the main job: its run name, model family, epochs, options, and about how many seconds it
    takes in all (training, evaluation, sample quality) on 2 uncontended cores -- the ETA's prior, rescaled by
    the times measured as the job goes."""

    name: str
    model: str
    epochs: int
    options: list[str] = field(default_factory=list)
    seconds: float = 20.0

    @property
    def closed_form(self) -> bool:
        return "closed_form" in self.options


#: the models trained by the main job; each model family adds its entry. Both PPCAs are fitted in closed form:
#: ``ppca`` (dequantized, so its numbers are of the discrete data) is the linear baseline; ``ppca_centres``
#: (a density of the bin centres, the mean-field guide of a randomly rotated W: an approximate posterior) has a
#: closed-form marginal, so the sampling estimators are measured against the exact value on this data.
JOBS: list[Job] = [
    Job("vae", "vae", 80, ["--latent-dim", "8", "--hidden", "256", "256"], 20),
    Job("vae_iaf", "vae", 80, ["--latent-dim", "8", "--hidden", "256", "256", "--posterior-flow", "iaf",
                               "--flow-length", "2"], 22),
    Job("ppca", "ppca", 1, ["--latent-dim", "10", "--fit", "closed_form"], 8),
    Job("ppca_centres", "ppca", 1, ["--latent-dim", "10", "--fit", "closed_form", "--images", "centres",
                                    "--guide", "diagonal", "--rotation", "random"], 8),
    Job("flow", "flow", 100, ["--arch", "realnvp_mlp", "--num-layers", "6", "--hidden", "256", "256"], 32),
    Job("pixelcnn", "pixelcnn", 60, ["--channels", "32", "--residual-blocks", "4", "--output-channels", "32"], 25),
    Job("gan", "gan", 100, ["--arch", "dcgan", "--channels", "32"], 25),
]


def clock(seconds: float) -> str:
    """``1m05s`` / ``42s``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def eta(done: list[tuple[Job, float]], remaining: list[Job]) -> float:
    """Seconds left: the remaining jobs' expected seconds, scaled by measured / expected of the jobs done."""
    expected_done = sum(job.seconds for job, _ in done)
    ratio = sum(t for _, t in done) / expected_done if done and expected_done > 0 else 1.0
    return ratio * sum(job.seconds for job in remaining)


def summary_line(name: str, result: dict, seconds: float) -> str:
    """One line per evaluated model: its best-founded converged estimate (as ``evaluation.compare`` chooses it)."""
    estimates = result.get("estimators", {})
    for estimator in (e for e in headline_order() if estimates.get(e)):
        k = max(estimates[estimator], key=int)
        entry = estimates[estimator][k]
        if converged(entry):
            khat = f", k-hat mean {entry['khat']['mean']:.2f}" if entry.get("khat") else ""
            return (f"{name}: {estimator} K={k}: NLL {entry['nll']:.2f} ± {entry['se']:.2f} nats "
                    f"({entry['bpd']:.3f} bits/dim{khat}); evaluated in {seconds:.0f}s")
    return f"{name}: no converged estimate (k-hat mean > 0.7 at every K); evaluated in {seconds:.0f}s"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="folder of the runs (one per model) and of compare/report.md; runs already there are "
                             "resumed, not retrained (default: runs/demo)")
    parser.add_argument("--dataset", default="digits",
                        help="data set every model is trained on (default: digits, embedded; binarized variants "
                             "and MNIST need their files)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for every model (default: each job's own; "
                        "the closed-form fits take one)")
    parser.add_argument("--num-samples", type=int, nargs="+", default=NUM_SAMPLES, metavar="K",
                        help=f"samples per example K of the estimators (default: {' '.join(map(str, NUM_SAMPLES))})")
    parser.add_argument("--quick", action="store_true", help="tiny settings for smoke tests")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)  # chosen once, for every model's training and evaluation alike
    if args.epochs is not None and args.epochs < 1:
        raise DGMError(f"--epochs must be at least 1, got {args.epochs}")
    ks = [1, 10, 100] if args.quick else args.num_samples
    limit = QUICK_LIMIT if args.quick else None
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    if not has_classifier(args.dataset):  # announced here, not hidden inside the first model's sample quality
        get_classifier(args.dataset)
    run_dirs: list[Path] = []
    done: list[tuple[Job, float]] = []
    quality_cache: dict = {}
    for i, job in enumerate(JOBS):
        epochs = 1 if job.closed_form else (2 if args.quick else (args.epochs or job.epochs))
        how = "closed-form fit" if job.closed_form else f"{epochs} epochs"
        left = f", about {clock(eta(done, JOBS[i:]))} left" if done else ""
        print(f"model {i + 1} of {len(JOBS)}: {job.name} ({job.model}, {how}; {clock(time.perf_counter() - began)} "
              f"so far{left})", flush=True)
        start = time.perf_counter()
        run_dir = args.out / job.name
        resume = ["--resume"] if (run_dir / "checkpoint.pt").is_file() else []
        if resume and (run_dir / "config.json").is_file():
            print(f"{run_dir} exists: resuming it (delete it to start afresh)", flush=True)
        try:
            train_main([job.model, "--dataset", args.dataset, "--epochs", str(epochs), "--out", str(run_dir),
                        "--progress", "summary", "--threads", str(threads), *job.options, *resume])
            evaluated = time.perf_counter()
            run = load_run(run_dir)
            result = evaluate_run(run, "test", None, ks, limit=limit, log=None)
            print(summary_line(job.name, result, time.perf_counter() - evaluated), flush=True)
            run_sample_quality(run, n=100 if args.quick else None, bootstrap=5 if args.quick else 20,
                               cache=quality_cache)
        except DGMError as exc:
            raise DGMError(f"{job.name}: {exc}") from None
        run_dirs.append(run_dir)
        done.append((job, time.perf_counter() - start))
    print(f"comparing the {len(run_dirs)} runs ...", flush=True)
    report = compare(run_dirs, args.out / "compare", limit=limit)
    print(f"{len(JOBS)} models in {clock(time.perf_counter() - began)}; runs in {args.out}; comparison report: "
          f"{report}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
