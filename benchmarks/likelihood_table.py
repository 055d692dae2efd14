"""One table of log-likelihoods across model families, read from what the evaluation commands wrote.

``python -m benchmarks.likelihood_table RUN_DIR [RUN_DIR ...] [--label NAME ...]`` reads, in each run
directory, every ``eval_<split>*.json`` (``evaluation.evaluate``: naive MC, ELBO, IS, exact, AIS),
``gan_likelihood*.json`` (``evaluation.gan_likelihood``: AIS at the sigma chosen on validation, and the
BDMC gap) and ``bdmc*.json`` (``evaluation.bdmc``; the star admits copies kept under other names), and prints one markdown row per number:

    model | examples | estimator (K) | NLL (nats) | bits/dim | seconds

NLL = -mean log p(x) over the examples with its standard error; bits/dim = NLL / (D ln 2) of the
discrete data (conventions). Nothing is recomputed: the table is exactly the files' numbers, so it
can sit beside the commands that produced them. The BDMC gap is upper minus lower bound on data
simulated from the model (nats, and bits/dim).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Iterator

from core.config import OneLineErrorParser
from core.errors import DGMError, run_cli
from core.run_dir import read_json

HEADER = ("| model | examples | estimator (K) | NLL (nats) | bits/dim | seconds |\n"
          "|---|---|---|---|---|---|")


def subset_label(result: dict[str, Any]) -> str:
    """'all 10000', 'first 50', 'every 5th (2000)' of the split the file describes."""
    n, every, limit = result.get("n_examples"), result.get("every", 1) or 1, result.get("limit")
    split = result.get("split", "test")
    if every > 1:
        return f"{split}, every {every}th ({n})"
    return f"{split}, first {n}" if limit else f"{split}, all {n}"


def row(model: str, examples: str, estimator: str, nll: float, se: float, bpd: float, seconds: float) -> str:
    bpd_se = bpd * se / nll if nll else float("nan")  # bits/dim is NLL times a constant
    return (f"| {model} | {examples} | {estimator} | {nll:.2f} ± {se:.2f} | {bpd:.4f} ± {bpd_se:.4f} | "
            f"{seconds:.0f} |")


def eval_rows(model: str, result: dict[str, Any]) -> Iterator[str]:
    """Rows of one ``eval_<split>.json``: every estimator and K in it."""
    for name, by_k in result.get("estimators", {}).items():
        for k, entry in sorted(by_k.items(), key=lambda item: int(item[0])):
            extra = ""
            if name == "ais" and "steps" in entry:
                extra = f", T={entry['steps']} {entry.get('schedule', '')}".rstrip()
            yield row(model, subset_label(result), f"{name} ({k}{extra})", entry["nll"], entry["se"], entry["bpd"],
                      entry["seconds"])


def gap_text(gap: dict[str, Any]) -> str:
    return f"{gap['mean']:.2f} ± {gap['se']:.2f} nats ({gap['bpd']:.4f} bits/dim)"


def gan_rows(model: str, result: dict[str, Any]) -> Iterator[str]:
    """The test AIS row of ``gan_likelihood.json`` (sigma chosen on validation) and its BDMC gap."""
    test = result["test"]
    options = result.get("options", {})
    label = f"ais ({result['chains']}, T={options.get('num_steps', '?')}, sigma={result['best_sigma']:g})"
    yield row(model, f"test, first {test['n']}" if "n" in test else "test", label, test["nll"], test["se"],
              test["bpd"], test["seconds"])
    if result.get("bdmc"):
        bdmc = result["bdmc"]
        yield f"| {model} | {bdmc['n']} simulated | BDMC gap at sigma={result['best_sigma']:g} | " \
              f"{gap_text(bdmc['gap'])} | | {bdmc['seconds']:.0f} |"


def bdmc_rows(model: str, result: dict[str, Any]) -> Iterator[str]:
    yield f"| {model} | {result['n']} simulated | BDMC gap (upper − lower) | {gap_text(result['gap'])} | | " \
          f"{result.get('seconds', math.nan):.0f} |"


def run_rows(run_dir: Path, label: str) -> list[str]:
    """Every row of one run directory, in a fixed order: evaluations, GAN likelihood, BDMC."""
    if not run_dir.is_dir():
        raise DGMError(f"{run_dir} is not a run directory")
    rows: list[str] = []
    for pattern, reader in (("eval_*.json", eval_rows), ("gan_likelihood*.json", gan_rows), ("bdmc*.json", bdmc_rows)):
        for path in sorted(run_dir.glob(pattern)):
            try:
                rows.extend(reader(label, read_json(path)))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise DGMError(f"{path} is not an evaluation result of this project ({type(exc).__name__}: "
                               f"{exc}); delete it or evaluate the run again") from None
    if not rows:
        raise DGMError(f"{run_dir} holds no evaluation results (eval_*.json, gan_likelihood.json, bdmc.json)")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.likelihood_table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--label", nargs="+", default=None, help="a name per run (default: the directory name)")
    args = parser.parse_args(argv)
    labels = args.label or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise DGMError(f"--label gives {len(labels)} names for {len(args.runs)} runs")
    print(HEADER)
    for run, label in zip(args.runs, labels):
        print("\n".join(run_rows(run, label)))
    return 0


if __name__ == "__main__":
    run_cli(main)
