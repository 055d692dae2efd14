"""``python -m evaluation.compare RUN_DIR... --out DIR [--split test]``: one report over evaluated runs.

Reads each run's ``config.json``, ``eval_<split>.json`` and ``eval_<split>_examples.csv`` (written by
``python -m evaluation.evaluate``) and writes into DIR:

    report.md         the table (model, data set, estimator, K, NLL nats, bits/dim, SE, k-hat summary),
                      paired differences between runs, the figures, and where every number came from
    summary.csv       the same table as data
    differences.csv   paired bootstrap intervals of NLL differences between runs on the same examples
    estimate_vs_k.png estimate against K (log axis), one panel per run
    khat.png          histogram of per-example Pareto k-hat (largest K of each IS-type estimator)
    elbo_is_gap.png   per-example gap IS - ELBO at the largest K where both were evaluated

Each run's headline estimate (for the differences) is its best-founded one, by the estimators'
``headline_rank`` in the registry: ``exact`` where evaluated, else ``importance_sampled`` at its largest K,
else ``elbo``, else ``naive_monte_carlo``. The table lists estimators in registration order, the k-hat
figure those whose value is an importance-weight average, the gap figure each estimator against the one
of its pass it bounds (``gap_to``: IS against the ELBO).
Differences are paired over the examples both runs were evaluated on (same data set, split and
example ids), NLL(A) - NLL(B) per example, with a 95% percentile bootstrap interval.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from core.config import OneLineErrorParser
from core.paths import check_output_dir
from evaluation.result_files import find_result
from core.errors import DGMError, run_cli
from core.run_dir import atomic_write_text, provenance, read_config
from data.specs import DATASETS
from evaluation import ESTIMATORS
from evaluation.diagnostics import bootstrap_difference
from evaluation.estimator_registry import headline_order
from core.plots import save_estimates_vs_k, save_gap_histograms, save_khat_histograms
from evaluation.sample_quality import TABLE_HEADER, table_row


def table_rank(name: str) -> int:
    """An estimator's place in the tables: registration order, names no longer registered last."""
    names = list(ESTIMATORS)
    return names.index(name) if name in names else len(names)


@dataclass
class RunEvaluation:
    """One run's evaluation on one split, as read from its files."""

    run_dir: Path
    name: str
    model: str
    dataset: str
    split: str
    n_examples: int
    estimators: dict[str, dict[str, Any]]
    examples: pd.DataFrame
    config: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def dim(self) -> int:
        return DATASETS[self.dataset].dim if self.dataset in DATASETS else 0

    def headline(self) -> tuple[str, int] | None:
        """(estimator, K) of the best-founded estimate, see the module docstring."""
        for name in headline_order():
            if self.estimators.get(name):
                return name, max(int(k) for k in self.estimators[name])
        return None

    def per_example(self, estimator: str, k: int, column: str = "log_likelihood") -> pd.Series:
        """Per-example values indexed by example_id."""
        rows = self.examples[(self.examples["estimator"] == estimator) & (self.examples["K"] == k)]
        return rows.set_index("example_id")[column].sort_index()


def load_evaluation(run_dir: str | Path, split: str = "test", every: int | None = None,
                    limit: int | None = None) -> RunEvaluation:
    """Read a run's evaluation files (the whole split's, or the subset ``every``/``limit`` names; see
    ``evaluation.result_files``); one-line errors for a non-run or an unevaluated run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DGMError(f"{run_dir} is not a directory")
    config = read_config(run_dir)
    path, csv_path = find_result(run_dir, split, every, limit)
    hint = f"run `python -m evaluation.evaluate {run_dir} --split {split}` first"
    if not path.is_file() or not csv_path.is_file():
        raise DGMError(f"{run_dir} has no {path.name if not path.is_file() else csv_path.name}; {hint}")
    try:
        result = json.loads(path.read_text())
        examples = pd.read_csv(csv_path)
    except (json.JSONDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DGMError(f"{run_dir}: unreadable evaluation files ({type(exc).__name__}); {hint}") from None
    missing = {"example_id", "estimator", "K", "log_likelihood"} - set(examples.columns)
    if missing or not isinstance(result.get("estimators"), dict):
        raise DGMError(f"{run_dir}: evaluation files lack {', '.join(sorted(missing)) or 'estimators'}; {hint}")
    if not result["estimators"]:
        raise DGMError(f"{run_dir}: {path.name} holds no estimates; {hint}")
    return RunEvaluation(run_dir, run_dir.name, config["model"], config["dataset"], split,
                         int(result.get("n_examples", examples["example_id"].nunique())), result["estimators"],
                         examples, config, result.get("provenance", {}))


def unique_names(evaluations: list[RunEvaluation]) -> None:
    """Name runs by their folder, adding the parent where folder names collide."""
    counts: dict[str, int] = {}
    for ev in evaluations:
        counts[ev.name] = counts.get(ev.name, 0) + 1
    for ev in evaluations:
        if counts[ev.name] > 1:
            ev.name = f"{ev.run_dir.parent.name}/{ev.run_dir.name}"


def summary_table(evaluations: list[RunEvaluation]) -> pd.DataFrame:
    """One row per (run, estimator, K): NLL in nats, bits/dim, standard error, k-hat summary, seconds."""
    rows = []
    for ev in evaluations:
        for name, by_k in sorted(ev.estimators.items(), key=lambda item: table_rank(item[0])):
            for k, entry in sorted(by_k.items(), key=lambda item: int(item[0])):
                khat = entry.get("khat") or {}
                rows.append({"run": ev.name, "model": ev.model, "dataset": ev.dataset, "split": ev.split,
                             "N": ev.n_examples, "estimator": name, "K": int(k), "NLL (nats)": entry["nll"],
                             "SE": entry["se"], "bits/dim": entry["bpd"], "k-hat mean": khat.get("mean"),
                             "k-hat > 0.7": khat.get("frac_above_0.7"), "seconds": entry.get("seconds")})
    return pd.DataFrame(rows)


def paired_differences(evaluations: list[RunEvaluation], num_resamples: int = 2000,
                       seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Paired bootstrap of NLL(A) - NLL(B) per example for every pair of runs on the same examples."""
    rows, skipped = [], []
    for a, b in itertools.combinations(evaluations, 2):
        head_a, head_b = a.headline(), b.headline()
        if head_a is None or head_b is None:
            continue
        if (a.dataset, a.split) != (b.dataset, b.split):
            skipped.append(f"{a.name} vs {b.name}: different data ({a.dataset}/{a.split} vs {b.dataset}/{b.split})")
            continue
        la, lb = a.per_example(*head_a), b.per_example(*head_b)
        if not la.index.equals(lb.index):
            skipped.append(f"{a.name} vs {b.name}: evaluated on different examples ({len(la)} vs {len(lb)})")
            continue
        nll_a = -torch.tensor(la.to_numpy(), dtype=torch.float64)
        nll_b = -torch.tensor(lb.to_numpy(), dtype=torch.float64)
        if not (torch.isfinite(nll_a).all() and torch.isfinite(nll_b).all()):  # never a verdict from NaNs
            skipped.append(f"{a.name} vs {b.name}: non-finite per-example values in the evaluation files")
            continue
        mean, low, high = bootstrap_difference(nll_a, nll_b, num_resamples=num_resamples, seed=seed)
        rows.append({"A": a.name, "B": b.name, "estimate A": f"{head_a[0]} K={head_a[1]}",
                     "estimate B": f"{head_b[0]} K={head_b[1]}", "N": len(la), "NLL(A) - NLL(B)": mean,
                     "95% low": low, "95% high": high,
                     "better": a.name if high < 0 else (b.name if low > 0 else "neither (interval covers 0)")})
    return pd.DataFrame(rows), skipped


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A pandas DataFrame as a GitHub markdown table (numbers to ``digits`` decimals, blanks for missing)."""
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_figures(evaluations: list[RunEvaluation], out: Path) -> list[tuple[str, str]]:
    """The three figures; returns (file name, caption) of those written."""

    written = []
    estimates = {}
    for ev in evaluations:
        series = {name: [(int(k), e["nll"], e["se"]) for k, e in by_k.items()] for name, by_k in ev.estimators.items()}
        estimates[f"{ev.name} ({ev.model}, {ev.dataset})"] = series
    save_estimates_vs_k(estimates, out / "estimate_vs_k.png")
    written.append(("estimate_vs_k.png", "NLL estimate against K (log axis), one panel per run; bars: +-1 SE "
                                         "over examples"))
    khats = {}
    for ev in evaluations:
        series = {}
        if "khat" in ev.examples.columns:
            for name in (spec.name for spec in ESTIMATORS.specs() if spec.importance_weights):
                ks = [int(k) for k, e in ev.estimators.get(name, {}).items() if "khat" in e]
                if ks:
                    series[f"{name} K={max(ks)}"] = ev.per_example(name, max(ks), "khat").tolist()
        if series:
            khats[ev.name] = series
    if khats:
        save_khat_histograms(khats, out / "khat.png")
        written.append(("khat.png", "per-example Pareto k-hat at the largest K (PSIS, ArviZ); k-hat > 0.7 "
                                    "marks estimates that cannot be trusted"))
    gaps = {}
    pairs = [(spec.name, spec.gap_to) for spec in ESTIMATORS.specs() if spec.gap_to]
    for ev in evaluations:
        for upper, lower in pairs:
            common = set(ev.estimators.get(lower, {})) & set(ev.estimators.get(upper, {}))
            if common:
                k = max(int(c) for c in common)
                gap = ev.per_example(upper, k) - ev.per_example(lower, k)
                label = f"{ev.name} (K={k})" if len(pairs) == 1 else f"{ev.name} {upper} - {lower} (K={k})"
                gaps[label] = gap.tolist()
    if gaps:
        save_gap_histograms(gaps, out / "elbo_is_gap.png")
        written.append(("elbo_is_gap.png", "per-example gap between the importance-sampled estimate and the "
                                           "ELBO at the same K (the same samples): how loose the bound is"))
    return written


def write_report(evaluations: list[RunEvaluation], out: Path, num_resamples: int = 2000) -> Path:
    """Write report.md, summary.csv, differences.csv and the figures into ``out``; return report.md's path."""
    out.mkdir(parents=True, exist_ok=True)
    unique_names(evaluations)
    table = summary_table(evaluations)
    differences, skipped = paired_differences(evaluations, num_resamples)
    atomic_write_text(out / "summary.csv", table.to_csv(index=False))
    atomic_write_text(out / "differences.csv", differences.to_csv(index=False))
    figures = write_figures(evaluations, out)
    made = provenance()
    lines = [f"# Log-likelihood comparison ({evaluations[0].split} split)", "",
             "NLL = -log p(x) in nats per example (lower is better); bits/dim = NLL / (D ln 2) of the discrete "
             "data; SE: standard error of the mean over examples; k-hat: Pareto shape of the importance weights "
             "(PSIS), mean over examples and fraction above 0.7 (computed for K >= 100). ELBO and importance-"
             "sampled rows at the same K come from the same samples. naive Monte Carlo samples the prior.", "",
             markdown_table(table.drop(columns=["split"])), "", "## Differences between runs (paired bootstrap)", ""]
    if len(differences):
        lines += [f"Per-example NLL(A) - NLL(B) on the same examples, mean and 95% percentile interval from "
                  f"{num_resamples} paired bootstrap resamples; negative: A is better.", "",
                  markdown_table(differences)]
    else:
        lines.append("No two runs were evaluated on the same examples." if len(evaluations) > 1
                     else "One run: nothing to compare.")
    lines += [f"- not compared: {s}" for s in skipped]
    lines += sample_quality_section(evaluations)
    lines += ["", "## Figures", ""]
    for name, caption in figures:
        lines += [f"![{caption}]({name})", "", f"*{caption}.*", ""]
    lines += ["## Provenance", ""]
    for ev in evaluations:
        lines += [f"- **{ev.name}**: `{ev.run_dir}`; trained by `{ev.config.get('command', '?')}` "
                  f"(commit {ev.config.get('git_commit', '?')}); evaluated by `{ev.provenance.get('command', '?')}` "
                  f"on {ev.provenance.get('date', '?')} (commit {ev.provenance.get('git_commit', '?')}, "
                  f"{_hardware(ev.provenance.get('hardware', {}))})"]
    lines += ["", f"Report written by `{made['command']}` on {made['date']} (commit {made['git_commit']}).", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def sample_quality_section(evaluations: list[RunEvaluation]) -> list[str]:
    """Markdown lines: FD, KID and class statistics of each run's samples (``sample_quality_<split>.json``,
    written by ``evaluation.sample_quality``) with the floor of real training images per representation."""

    rows, floors = [], {}
    for ev in evaluations:
        path = ev.run_dir / f"sample_quality_{ev.split}.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        rows.append(table_row(f"{ev.name} samples", result["dataset"], result["samples"]))
        if "floor" in result:
            floors.setdefault((result["dataset"], result["representation"]), result["floor"])
    if not rows:
        return []
    floor_rows = [table_row(f"floor: real train images ({rep})", ds, metrics) for (ds, rep), metrics in floors.items()]
    return ["", "## Sample quality", "",
            "Fréchet distance (FD, ± bootstrap SE) and kernel distance (KID, ± block SE) between the model's samples "
            "and the test images in the project classifier's feature space, and the samples' class histogram "
            "(entropy; total variation to the test histogram). The floor row is real training images in the same "
            "representation: judge a model by its distance above it.", "", TABLE_HEADER, *rows, *floor_rows]


def _hardware(hw: dict[str, Any]) -> str:
    if not hw:
        return "hardware unknown"
    return f"{hw.get('cpu', '?')} x{hw.get('cpu_count', '?')}, {hw.get('torch_threads', '?')} threads, " \
           f"GPU {hw.get('gpu') or 'none'}"


def compare(run_dirs: list[str | Path], out: str | Path, split: str = "test", num_resamples: int = 2000,
            every: int | None = None, limit: int | None = None) -> Path:
    """Load every run's evaluation (of the subset ``every``/``limit`` when given) and write the report;
    returns the path of report.md."""
    if not run_dirs:
        raise DGMError("no run directories given")
    evaluations = [load_evaluation(r, split, every, limit) for r in run_dirs]
    return write_report(evaluations, Path(out), num_resamples)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="evaluated run directories")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.md, tables and figures")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--bootstrap", type=int, default=2000, help="paired bootstrap resamples (default: 2000)")
    parser.add_argument("--every", type=int, default=None, metavar="S",
                        help="compare the evaluations of every S-th example (default: the whole split's, or the "
                             "only subset evaluated)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="... of the first N examples")
    args = parser.parse_args(argv)
    if args.bootstrap < 100:
        raise DGMError(f"--bootstrap must be at least 100, got {args.bootstrap}")
    check_output_dir(args.out, "--out")
    path = compare(args.run_dirs, args.out, args.split, args.bootstrap, args.every, args.limit)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
