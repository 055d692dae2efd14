"""``python -m evaluation.compare RUN_DIR... --out DIR [--split test]``: one report over evaluated runs.

Reads each run's ``config.json``, ``eval_<split>.json`` and ``eval_<split>_examples.csv`` (written by
``python -m evaluation.evaluate``) and writes into DIR:

    report.md         the headline table (one row per run: its best trustworthy estimate, NLL, bits/dim,
                      a "not converged" flag where k-hat says so, the rank), the estimator comparison on
                      runs with an exact likelihood, the sample grids next to real data, the table of every
                      estimate (model, data set, estimator, K, NLL nats, bits/dim, SE, k-hat summary),
                      paired differences between runs, the figures, and where every number came from
    summary.csv       the table of every estimate as data
    headline.csv      the headline table as data
    differences.csv   paired bootstrap intervals of NLL differences between runs on the same examples
    estimate_vs_k.png estimate against K (log axis), one panel per run
    khat.png          histogram of per-example Pareto k-hat (largest K of each IS-type estimator)
    elbo_is_gap.png   per-example gap IS - ELBO at the largest K where both were evaluated
    samples.png       64 samples of every run next to 64 real test images (where the checkpoints load)

Each run's headline estimate (the headline table, the differences) is its best-founded *trustworthy*
one, by the estimators' ``headline_rank`` in the registry: ``exact`` where evaluated, else
``importance_sampled`` at its largest K, else ``elbo``, else ``naive_monte_carlo`` -- passing over an
importance-weight average whose mean Pareto k-hat exceeds 0.7 (``KHAT_LIMIT``: not converged, the
estimate cannot be trusted; the GAN's and the flow's IS are typical). A run with no trustworthy estimate
is shown flagged "not converged" and is neither ranked nor compared; a run whose log p(x) is a density
rather than a probability of the discrete data (``discrete_likelihood`` false in its evaluation) is shown
but not ranked with, nor compared against, the others. The table lists estimators in registration order, the k-hat
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

from core.device import THREADS_HELP, set_threads
from core.config import OneLineErrorParser
from core.paths import check_output_dir
from evaluation.result_files import find_result
from core.errors import DGMError, run_cli
from core.run_dir import atomic_write_text, provenance, read_config
from data.specs import DATASETS
from evaluation import ESTIMATORS
from evaluation.diagnostics import bootstrap_difference
from evaluation.estimator_registry import headline_order
from core.plots import save_estimates_vs_k, save_gap_histograms, save_khat_histograms, save_sample_grids
from evaluation.sample_quality import TABLE_HEADER, model_samples, table_row
from inference.training.load_run import load_run

#: mean Pareto k-hat above which an importance-weight estimate is "not converged" (PSIS: k-hat > 0.7 unreliable)
KHAT_LIMIT = 0.7


def table_rank(name: str) -> int:
    """An estimator's place in the tables: registration order, names no longer registered last."""
    names = list(ESTIMATORS)
    return names.index(name) if name in names else len(names)


def converged(entry: dict[str, Any]) -> bool:
    """An estimate is trusted unless its k-hat summary says otherwise (mean k-hat above ``KHAT_LIMIT``)."""
    mean = (entry.get("khat") or {}).get("mean")
    return mean is None or not math.isfinite(mean) or mean <= KHAT_LIMIT


@dataclass(frozen=True)
class Headline:
    """A run's headline estimate: ``estimator`` at ``k`` (its summary ``entry``), whether it is converged, and
    the better-founded estimates passed over as not converged: (estimator, K, k-hat mean)."""

    estimator: str
    k: int
    entry: dict[str, Any]
    converged: bool
    passed_over: tuple[tuple[str, int, float], ...] = ()

    @property
    def flag(self) -> str:
        """"not converged" where k-hat rejected the shown estimate or a better-founded one, else "yes"."""
        return "yes" if self.converged and not self.passed_over else "not converged"


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
    #: False where the run's log p(x) is a density of continuous values, not a probability of the discrete data
    discrete: bool = True

    @property
    def dim(self) -> int:
        return DATASETS[self.dataset].dim if self.dataset in DATASETS else 0

    def headline_estimate(self) -> Headline | None:
        """The best-founded converged estimate (each estimator at its largest K, in ``headline_order``), else
        the best-founded one flagged not converged; None for a run without estimates."""
        passed: list[tuple[str, int, float]] = []
        first: Headline | None = None
        for name in headline_order():
            if not self.estimators.get(name):
                continue
            k = max(int(key) for key in self.estimators[name])
            entry = self.estimators[name][str(k)]
            if converged(entry):
                return Headline(name, k, entry, True, tuple(passed))
            passed.append((name, k, float(entry["khat"]["mean"])))
            first = first or Headline(name, k, entry, False)
        return None if first is None else Headline(first.estimator, first.k, first.entry, False, tuple(passed))

    def headline(self) -> tuple[str, int] | None:
        """(estimator, K) of :meth:`headline_estimate`: the best-founded trustworthy estimate where there is one."""
        head = self.headline_estimate()
        return None if head is None else (head.estimator, head.k)

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
                         examples, config, result.get("provenance", {}),
                         bool(result.get("discrete_likelihood", True)))


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


def headline_table(evaluations: list[RunEvaluation]) -> pd.DataFrame:
    """One row per run: its headline estimate (``RunEvaluation.headline_estimate``), NLL, SE, bits/dim, k-hat
    mean, a ``converged`` flag ("not converged" where k-hat rejected the shown estimate or a better-founded one,
    e.g. the flow's IS, whose ELBO is then shown; else "yes"), a note saying which and why, and its rank by NLL
    among the runs of its data set and split with a converged estimate of the discrete data (blank: not
    ranked; a run whose IS was passed over is ranked by the converged estimate it shows)."""
    rows = []
    for ev in evaluations:
        head = ev.headline_estimate()
        if head is None:
            continue
        notes = [f"{name} K={k} not converged (k-hat mean {khat:.2f} > {KHAT_LIMIT})"
                 for name, k, khat in head.passed_over]
        if head.converged and head.passed_over:
            notes.append(f"{head.estimator} shown" + (" (a bound: NLL at most this), ranked by it"
                                                      if head.estimator == "elbo" else ", ranked by it"))
        if not head.converged:
            notes.append("no converged estimate: not ranked")
        if not ev.discrete:
            notes.append("a density of continuous values, not a probability of the discrete data: not ranked")
        khat = (head.entry.get("khat") or {}).get("mean")
        rows.append({"rank": None, "run": ev.name, "model": ev.model, "dataset": ev.dataset, "split": ev.split,
                     "N": ev.n_examples, "estimate": f"{head.estimator} K={head.k}", "NLL (nats)": head.entry["nll"],
                     "SE": head.entry["se"], "bits/dim": head.entry["bpd"], "k-hat mean": khat,
                     "converged": head.flag, "note": "; ".join(notes),
                     "_ranked": head.converged and ev.discrete})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for _, group in frame[frame["_ranked"]].groupby(["dataset", "split"]):
        order = group["NLL (nats)"].rank(method="min").astype(int)
        frame.loc[order.index, "rank"] = order
    frame["_order"] = frame["rank"].fillna(len(frame) + 1)
    frame = frame.sort_values(["dataset", "split", "_order", "NLL (nats)"], kind="stable")
    frame["rank"] = frame["rank"].map(lambda r: "" if pd.isna(r) else str(int(r)))
    return frame.drop(columns=["_ranked", "_order"]).reset_index(drop=True)


def exact_comparison(evaluations: list[RunEvaluation]) -> pd.DataFrame:
    """For each run evaluated with ``exact``: per K, the NLL of naive MC, ELBO and IS beside the exact one (a
    reference, the same at every K) and each estimator's error against it (estimate - exact, nats)."""
    sampled = ("naive_monte_carlo", "elbo", "importance_sampled")
    rows = []
    for ev in evaluations:
        exact_by_k = ev.estimators.get("exact") or {}
        if not exact_by_k:
            continue
        truth = next(iter(exact_by_k.values()))["nll"]
        ks = sorted({int(k) for name in sampled for k in ev.estimators.get(name, {})})
        if not ks:
            rows.append({"run": ev.name, "model": ev.model, "K": "-", "exact NLL": truth,
                         "note": "no latent variables: exact is its only estimator"})
            continue
        for k in ks:
            row: dict[str, Any] = {"run": ev.name, "model": ev.model, "K": k, "exact NLL": truth}
            for name in sampled:
                entry = ev.estimators.get(name, {}).get(str(k))
                row[f"{name} NLL"] = entry["nll"] if entry else None
                row[f"{name} - exact"] = entry["nll"] - truth if entry else None
            khat = (ev.estimators.get("importance_sampled", {}).get(str(k), {}).get("khat") or {}).get("mean")
            row["IS k-hat mean"] = khat
            row["note"] = "IS not converged" if khat is not None and khat > KHAT_LIMIT else ""
            rows.append(row)
    return pd.DataFrame(rows)


def paired_differences(evaluations: list[RunEvaluation], num_resamples: int = 2000,
                       seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Paired bootstrap of NLL(A) - NLL(B) per example for every pair of runs on the same examples."""
    rows, skipped = [], []
    for a, b in itertools.combinations(evaluations, 2):
        full_a, full_b = a.headline_estimate(), b.headline_estimate()
        if full_a is None or full_b is None:
            continue
        unconverged = [ev for ev, head in ((a, full_a), (b, full_b)) if not head.converged]
        density = [ev for ev in (a, b) if not ev.discrete]
        if unconverged or (density and len(density) == 1):
            for ev in unconverged or density:  # one line per run, not per pair
                reason = (f"{ev.name}: no converged estimate (k-hat mean > {KHAT_LIMIT})" if unconverged else
                          f"{ev.name}: a density of continuous values, not compared with probabilities of the "
                          f"discrete data")
                if reason not in skipped:
                    skipped.append(reason)
            continue
        head_a, head_b = (full_a.estimator, full_a.k), (full_b.estimator, full_b.k)
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


def write_figures(evaluations: list[RunEvaluation], out: Path, title: str = "") -> list[tuple[str, str]]:
    """The figures of the estimates; returns (file name, caption) of those written. ``title``: the set of
    runs, in every figure's title."""

    written = []
    estimates = {}
    for ev in evaluations:
        series = {name: [(int(k), e["nll"], e["se"], (e.get("khat") or {}).get("mean")) for k, e in by_k.items()]
                  for name, by_k in ev.estimators.items()}
        estimates[f"{ev.name} ({ev.model}, {ev.dataset})"] = series
    save_estimates_vs_k(estimates, out / "estimate_vs_k.png", title=f"NLL estimate against K: {title}",
                        khat_limit=KHAT_LIMIT)
    written.append(("estimate_vs_k.png", "NLL estimate against K (log axis), one panel per run, the same K axis in "
                                         "every panel; bars: +-1 SE over examples; hollow markers: not converged "
                                         "(k-hat mean > 0.7); the exact likelihood, where there is one, is the "
                                         "dashed horizontal line"))
    khats = {}
    for ev in evaluations:
        series = {}
        if "khat" in ev.examples.columns:
            for name in (spec.name for spec in ESTIMATORS.specs() if spec.importance_weights):
                ks = [int(k) for k, e in ev.estimators.get(name, {}).items() if "khat" in e]
                if ks:
                    series[f"{name} K={max(ks)}"] = ev.per_example(name, max(ks), "khat").tolist()
        if series:
            khats[f"{ev.name} ({ev.model})"] = series
    if khats:
        save_khat_histograms(khats, out / "khat.png", title=f"Pareto k-hat: {title}")
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
                label = f"{ev.name} ({ev.model}, K={k})" if len(pairs) == 1 else \
                    f"{ev.name} ({ev.model}) {upper} - {lower} (K={k})"
                gaps[label] = gap.tolist()
    if gaps:
        save_gap_histograms(gaps, out / "elbo_is_gap.png", title=f"IS - ELBO per example: {title}")
        written.append(("elbo_is_gap.png", "per-example gap between the importance-sampled estimate and the "
                                           "ELBO at the same K (the same samples): how loose the bound is"))
    return written


#: samples drawn per run for the report's sample grids (a fixed seed: the same images every time)
GRID_SAMPLES = 64


def write_sample_grids(evaluations: list[RunEvaluation], out: Path, title: str = "") -> tuple[Path | None, list[str]]:
    """``samples.png``: ``GRID_SAMPLES`` samples of each run (its best checkpoint, seeded) next to as many real
    test images of the first run's data set; returns the path (None when no run could be loaded) and one
    line per run left out, with the reason."""
    panels: dict[str, tuple[Any, int]] = {}
    left_out = []
    for ev in evaluations:
        try:
            run = load_run(ev.run_dir)
        except DGMError as exc:
            left_out.append(f"{ev.name}: {exc}")
            continue
        levels = run.dataset.spec.levels
        if not panels:
            try:
                panels[f"real {ev.split} images ({ev.dataset})"] = (run.dataset.split(ev.split)[:GRID_SAMPLES], levels)
            except DGMError as exc:
                left_out.append(f"real images: {exc}")
        panels[f"{ev.name} ({ev.model}) samples"] = (model_samples(run.model, GRID_SAMPLES), levels)
    if not any("samples" in name for name in panels):
        return None, left_out
    path = out / "samples.png"
    save_sample_grids(panels, path, title=f"{GRID_SAMPLES} samples per model next to real data: {title}")
    return path, left_out


def write_report(evaluations: list[RunEvaluation], out: Path, num_resamples: int = 2000,
                 samples: bool = True) -> Path:
    """Write report.md, summary.csv, headline.csv, differences.csv and the figures into ``out``; return
    report.md's path. ``samples``: draw the sample grids (loads every run's checkpoint)."""
    out.mkdir(parents=True, exist_ok=True)
    unique_names(evaluations)
    title = _runs_title(evaluations)
    table = summary_table(evaluations)
    headline = headline_table(evaluations)
    exact = exact_comparison(evaluations)
    differences, skipped = paired_differences(evaluations, num_resamples)
    atomic_write_text(out / "summary.csv", table.to_csv(index=False))
    atomic_write_text(out / "headline.csv", headline.to_csv(index=False))
    atomic_write_text(out / "differences.csv", differences.to_csv(index=False))
    figures = write_figures(evaluations, out, title)
    grid, grid_left_out = write_sample_grids(evaluations, out, title) if samples else (None, [])
    made = provenance()
    lines = [f"# Log-likelihood comparison ({evaluations[0].split} split): {title}", "",
             "NLL = -log p(x) in nats per example (lower is better); bits/dim = NLL / (D ln 2) of the discrete "
             "data; SE: standard error of the mean over examples; k-hat: Pareto shape of the importance weights "
             "(PSIS), mean over examples and fraction above 0.7 (computed for K >= 100). ELBO and importance-"
             "sampled rows at the same K come from the same samples. naive Monte Carlo samples the prior.", "",
             "## Headline: one row per model", "",
             f"Each run's best-founded trustworthy estimate (exact, else importance sampled at its largest K, else "
             f"the ELBO, else naive Monte Carlo), passing over an importance-weight average whose mean k-hat "
             f"exceeds {KHAT_LIMIT} (**not converged**: such a number cannot be trusted, however many samples it "
             f"took). Rank: by NLL among the converged estimates of the discrete data; unranked rows are explained "
             f"in the note.", ""]
    lines.append(markdown_table(headline.drop(columns=["split"])) if len(headline) else "No estimates.")
    lines += ["", "## Estimators against an exact likelihood", ""]
    if len(exact):
        lines += ["On runs with an exact log-likelihood (PPCA's closed-form marginal; an autoregressive model's "
                  "exact likelihood), every other estimator's NLL at each K beside it, and its error (estimate - "
                  "exact, nats; positive: the estimate is above the true NLL, as a bound in expectation is).", "",
                  markdown_table(exact.dropna(axis=1, how="all")), ""]
    else:
        lines.append("No run was evaluated with the exact estimator.")
    lines += ["", "## Samples next to real data", ""]
    if grid is not None:
        caption = f"{GRID_SAMPLES} samples of each model (best checkpoint, seed 0) next to {GRID_SAMPLES} real images"
        lines += [f"![{caption}]({grid.name})", "", f"*{caption}.*", ""]
    else:
        lines.append("No run's checkpoint could be loaded: no samples drawn.")
    lines += [f"- no samples: {reason}" for reason in grid_left_out]
    lines += ["", "## Every estimate", "", markdown_table(table.drop(columns=["split"])), "",
              "## Differences between runs (paired bootstrap)", ""]
    if len(differences):
        lines += [f"Per-example NLL(A) - NLL(B) on the same examples, with each run's headline estimate (converged "
                  f"ones only), mean and 95% percentile interval from {num_resamples} paired bootstrap resamples; "
                  f"negative: A is better.", "", markdown_table(differences)]
    else:
        lines.append("No two runs were evaluated on the same examples with converged estimates." if len(evaluations) > 1
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


def _runs_title(evaluations: list[RunEvaluation]) -> str:
    """The runs' common folder (e.g. ``demo``) and their names, for titles."""
    parents = {ev.run_dir.resolve().parent.name for ev in evaluations}
    names = ", ".join(ev.name for ev in evaluations)
    return f"{parents.pop()} ({names})" if len(parents) == 1 else names


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
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.bootstrap < 100:
        raise DGMError(f"--bootstrap must be at least 100, got {args.bootstrap}")
    check_output_dir(args.out, "--out")
    path = compare(args.run_dirs, args.out, args.split, args.bootstrap, args.every, args.limit)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
