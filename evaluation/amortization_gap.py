"""``python -m evaluation.amortization_gap RUN_DIR... --out DIR [--limit 200] [--every 50] [--steps 300]``

The inference gap of a VAE split as Cremer, Li & Duvenaud (2018) do, per test example x:

    log p(x) - ELBO[q_phi(.|x)]  =  (log p(x) - ELBO[q*_x])  +  (ELBO[q*_x] - ELBO[q_phi(.|x)])
         inference gap                approximation gap            amortisation gap

q_phi(z | x) is the trained encoder's posterior; q*_x is the best member of the same variational
family for this x alone, found by optimising a separate set of local parameters per test image: the
encoder's raw outputs h (mu, sigma and, with a flow posterior, the flow's context), initialised at
h_phi(x), with the decoder, the prior and the flow's networks fixed. The family is therefore "what
the encoder could output": the whole family for Gaussian, planar, Householder and Sylvester
posteriors up to their linear heads, and the context-indexed family for IAF and RealNVP posteriors.

Estimates, each per example (nats, float64), from K samples (``--num-samples``):

    ELBO[q]  = (1/K) sum_k log p(x, z_k) / q(z_k | x),   z_k ~ q        (q = q_phi and q = q*_x)
    IS[q]    = log (1/K) sum_k p(x, z_k) / q(z_k | x)                   (the same samples)
    log p(x) ~ log (exp IS[q_phi] + exp IS[q*_x]) / 2                   (the mean of two unbiased
               estimates of p(x): a stochastic lower bound with 2K samples)

and the gaps' means over examples with 95% paired bootstrap intervals; also IS[q_phi] - ELBO[q_phi],
how loose the amortised ELBO is at that K. The local optimisation maximises the S-sample ELBO
(``--train-samples``) with Adam for ``--steps`` steps, all examples at once (their ELBOs are
independent). Writes ``amortization_gap_<split>.json`` into each run directory and, into ``--out``,
``report.md``, ``gaps.csv`` (per example) and ``gaps.png`` (the mean gaps with their intervals).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Callable

import pyro
import torch

from core.config import OneLineErrorParser
from core.paths import check_output_dir
from core.device import THREADS_HELP, set_threads
from core.errors import DGMError, run_cli
from inference.training.load_run import LoadedRun, load_run
from core.run_dir import atomic_write_text, provenance, write_json
from evaluation.diagnostics import bootstrap_difference
from evaluation.estimators import log_mean_exp, log_weight_chunks
from inference.objectives.importance import log_weights
from matplotlib.figure import Figure

GAPS = ("inference_gap", "approximation_gap", "amortization_gap", "is_minus_elbo")


def local_guide(model: Any, h: torch.Tensor) -> Callable[[torch.Tensor], None]:
    """A guide whose q(z | x_n) has the raw encoder outputs h_n (N, P) instead of the encoder's."""

    def guide(x: torch.Tensor) -> None:
        if x.shape[0] != h.shape[0]:
            raise ValueError("a local guide scores exactly the examples it was optimised for")
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", model.posterior(h))

    return guide


def optimise_local(model: Any, x: torch.Tensor, steps: int, lr: float, samples: int,
                   log: Callable[[str], None] | None = None) -> torch.Tensor:
    """Raw encoder outputs h*_n (N, P) maximising each example's S-sample ELBO, from h_phi(x_n).

    Adam on -sum_n ELBO_S(x_n; h_n); the model's own parameters are held fixed (no gradients)."""
    with torch.no_grad():
        h = model.encoder_outputs(x).clone()
    h.requires_grad_(True)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        optimiser = torch.optim.Adam([h], lr=lr)
        guide = local_guide(model, h)
        for step in range(steps):
            optimiser.zero_grad()
            elbo = log_weights(model.model, guide, x, samples).mean(0)   # (N,)
            (-elbo.sum()).backward()
            optimiser.step()
            if log is not None and (step + 1) % max(1, steps // 4) == 0:
                log(f"    local step {step + 1}/{steps}: mean {samples}-sample ELBO {float(elbo.detach().mean()):.2f}")
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return h.detach()


def _estimates(model: Any, guide: Callable, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ELBO, IS) per example, float64, from the same K samples of ``guide``."""
    (_, lw), = list(log_weight_chunks(model.model, guide, x, k, chunk_size=x.shape[0]))
    return lw.mean(-1), log_mean_exp(lw)


def amortization_gap(model: Any, x: torch.Tensor, *, steps: int = 300, lr: float = 1e-2, train_samples: int = 10,
                     num_samples: int = 5000, chunk: int = 100, seed: int = 0,
                     log: Callable[[str], None] | None = print) -> dict[str, torch.Tensor]:
    """Per-example ELBO / IS of the amortised and the locally optimised posterior, log p(x) and the gaps.

    Returns float64 tensors (N,): ``elbo_amortized``, ``is_amortized``, ``elbo_local``, ``is_local``,
    ``log_px`` and the four ``GAPS`` (see the module docstring). Examples go in chunks of ``chunk``."""
    for name, value in (("steps", steps), ("train samples", train_samples), ("num samples", num_samples),
                        ("chunk", chunk)):
        if value < 1:
            raise DGMError(f"the number of {name} must be at least 1, got {value}")
    if not lr > 0:
        raise DGMError(f"the learning rate must be positive, got {lr}")
    if not hasattr(model, "encoder_outputs") or not hasattr(model, "posterior"):
        raise DGMError(f"the amortisation gap needs an amortised posterior (a VAE); {type(model).__name__} has none")
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("elbo_amortized", "is_amortized", "elbo_local", "is_local")}
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        torch.manual_seed(seed * 1_000_003 + start)
        h_local = optimise_local(model, xc, steps, lr, train_samples, log)
        with torch.no_grad():
            torch.manual_seed(seed * 1_000_003 + start + 1)
            elbo_a, is_a = _estimates(model, model.guide, xc, num_samples)
            torch.manual_seed(seed * 1_000_003 + start + 2)
            elbo_l, is_l = _estimates(model, local_guide(model, h_local), xc, num_samples)
        for key, value in zip(out, (elbo_a, is_a, elbo_l, is_l)):
            out[key].append(value)
        if log is not None:
            log(f"  examples {start}..{start + xc.shape[0] - 1}: ELBO amortised {float(elbo_a.mean()):.2f}, "
                f"local {float(elbo_l.mean()):.2f}; IS-{num_samples} {float(is_a.mean()):.2f} / {float(is_l.mean()):.2f}")
    result = {k: torch.cat(v) for k, v in out.items()}
    log_px = torch.logaddexp(result["is_amortized"], result["is_local"]) - math.log(2.0)
    result["log_px"] = log_px
    result["inference_gap"] = log_px - result["elbo_amortized"]
    result["approximation_gap"] = log_px - result["elbo_local"]
    result["amortization_gap"] = result["elbo_local"] - result["elbo_amortized"]
    result["is_minus_elbo"] = result["is_amortized"] - result["elbo_amortized"]
    return result


def summarise(result: dict[str, torch.Tensor], num_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Means with standard errors, and each gap's mean with a 95% paired bootstrap interval."""
    summary: dict[str, Any] = {}
    for key in ("elbo_amortized", "is_amortized", "elbo_local", "is_local", "log_px"):
        v = result[key]
        summary[key] = {"mean": float(v.mean()), "se": float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else 0.0}
    pairs = {"inference_gap": ("log_px", "elbo_amortized"), "approximation_gap": ("log_px", "elbo_local"),
             "amortization_gap": ("elbo_local", "elbo_amortized"), "is_minus_elbo": ("is_amortized", "elbo_amortized")}
    for gap, (a, b) in pairs.items():
        mean, low, high = bootstrap_difference(result[a], result[b], num_resamples=num_resamples, seed=seed)
        summary[gap] = {"mean": mean, "low": low, "high": high}
    return summary


def evaluate_run_gap(run: LoadedRun, split: str, limit: int, every: int, **options: Any) -> tuple[dict, dict, list[int]]:
    """Run :func:`amortization_gap` on ``split[::every][:limit]`` of ``run``; write its JSON into the run."""
    if run.config["model"] != "vae":
        raise DGMError(f"{run.run_dir}: the amortisation gap needs a 'vae' run, got {run.config['model']!r}")
    if limit < 1 or every < 1:
        raise DGMError(f"--limit and --every must be at least 1, got {limit} and {every}")
    data = run.dataset.split(split)
    ids = torch.arange(data.shape[0])[::every][:limit]
    x = data[ids]
    start = time.perf_counter()
    result = amortization_gap(run.model, x, **options)
    summary = summarise(result)
    seconds = time.perf_counter() - start
    options = {k: v for k, v in options.items() if k != "log"}
    write_json(run.run_dir / f"amortization_gap_{split}.json",
               {"schema_version": 1, "run": str(run.run_dir), "split": split, "n_examples": int(x.shape[0]),
                "every": every, "limit": limit, "checkpoint_epoch": run.epoch, "options": options,
                "seconds": seconds, "summary": summary, "provenance": provenance()})
    return result, summary, ids.tolist()


def _gap_figure(rows: list[tuple[str, dict]], path: Path, split: str) -> None:
    """Bars of the mean gaps per run (named by its directory), with their 95% paired bootstrap intervals."""

    names = [name for name, _ in rows]
    fig = Figure(figsize=(max(6.0, 1.1 * len(names)), 4.0))
    ax = fig.subplots()
    width = 0.27
    for j, (gap, label) in enumerate((("approximation_gap", "approximation"), ("amortization_gap", "amortisation"),
                                      ("is_minus_elbo", "IS - ELBO (q_phi)"))):
        means = [s[gap]["mean"] for _, s in rows]
        err = [[s[gap]["mean"] - s[gap]["low"] for _, s in rows], [s[gap]["high"] - s[gap]["mean"] for _, s in rows]]
        ax.bar([i + (j - 1) * width for i in range(len(names))], means, width, yerr=err, capsize=3, label=label)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("nats per example")
    ax.set_title(f"gaps per run on the {split} split (95% paired bootstrap intervals)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.amortization_gap", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="VAE run directories")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.md, gaps.csv and gaps.png")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"],
                        help="the data split whose images are analysed (default: test)")
    parser.add_argument("--limit", type=int, default=200, help="examples (after --every; default 200)")
    parser.add_argument("--every", type=int, default=50, help="every S-th example of the split (default 50)")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps of the local optimisation")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate of the local optimisation")
    parser.add_argument("--train-samples", type=int, default=10, help="samples S of the ELBO being optimised")
    parser.add_argument("--num-samples", type=int, default=5000, help="samples K of the final ELBO and IS estimates")
    parser.add_argument("--chunk", type=int, default=100, help="examples optimised and scored together")
    parser.add_argument("--seed", type=int, default=0, help="seed of the optimisation and the estimates (default: 0)")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    check_output_dir(args.out, "--out")  # before minutes of optimisation, not after
    for name in ("steps", "train_samples", "num_samples", "chunk"):  # --limit and --every: evaluate_run_gap
        if getattr(args, name) < 1:
            raise DGMError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise DGMError(f"--lr must be a positive finite number, got {args.lr}")
    rows, csv_lines = [], ["run,example_id," + ",".join(("elbo_amortized", "is_amortized", "elbo_local", "is_local",
                                                         "log_px") + GAPS)]
    for run_dir in args.run_dirs:
        run = load_run(run_dir)
        name = Path(run_dir).name
        print(f"{name}:", flush=True)
        result, summary, ids = evaluate_run_gap(
            run, args.split, args.limit, args.every, steps=args.steps, lr=args.lr, train_samples=args.train_samples,
            num_samples=args.num_samples, chunk=args.chunk, seed=args.seed,
            log=lambda s: print(s, flush=True))
        rows.append((name, summary))
        keys = ("elbo_amortized", "is_amortized", "elbo_local", "is_local", "log_px") + GAPS
        for i, example in enumerate(ids):
            csv_lines.append(f"{name},{example}," + ",".join(repr(float(result[k][i])) for k in keys))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "gaps.csv", "\n".join(csv_lines) + "\n")
    _gap_figure(rows, args.out / "gaps.png", args.split)
    made = provenance()
    lines = [f"# Amortisation and approximation gaps ({args.split} split)", "",
             f"{args.limit} examples (every {args.every}th), local posteriors: {args.steps} Adam steps (lr {args.lr}) "
             f"on the {args.train_samples}-sample ELBO from the encoder's output; final estimates with K = "
             f"{args.num_samples}. Nats per example; log p(x) = mean of the two IS estimates of p(x); gaps: mean "
             "[95% paired bootstrap interval].", "",
             "| run | ELBO q_phi | ELBO q* | IS q_phi | log p(x) | inference gap | approximation gap | "
             "amortisation gap | IS - ELBO (q_phi) |", "|---|---|---|---|---|---|---|---|---|"]

    def gap(s: dict, key: str) -> str:
        return f"{s[key]['mean']:.2f} [{s[key]['low']:.2f}, {s[key]['high']:.2f}]"

    for name, s in rows:
        lines.append(f"| {name} | {s['elbo_amortized']['mean']:.2f} ± {s['elbo_amortized']['se']:.2f} | "
                     f"{s['elbo_local']['mean']:.2f} ± {s['elbo_local']['se']:.2f} | "
                     f"{s['is_amortized']['mean']:.2f} ± {s['is_amortized']['se']:.2f} | "
                     f"{s['log_px']['mean']:.2f} ± {s['log_px']['se']:.2f} | {gap(s, 'inference_gap')} | "
                     f"{gap(s, 'approximation_gap')} | {gap(s, 'amortization_gap')} | {gap(s, 'is_minus_elbo')} |")
    lines += ["", "![gaps per posterior](gaps.png)", "",
              f"Written by `{made['command']}` on {made['date']} (commit {made['git_commit']}).", ""]
    atomic_write_text(args.out / "report.md", "\n".join(lines))
    print(f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
