"""The comparison report's headline table and its pairing rules, on synthetic evaluations (no training):
k-hat above 0.7 is "not converged" and never ranked or paired; a density is shown but not ranked."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.compare import KHAT_LIMIT, RunEvaluation, exact_comparison, headline_table, paired_differences


def _entry(nll: float, khat: float | None = None) -> dict:
    entry = {"nll": nll, "se": 0.5, "bpd": nll / (64 * np.log(2)), "log_likelihood": -nll}
    if khat is not None:
        entry["khat"] = {"mean": khat, "median": khat, "max": khat, "frac_above_0.7": float(khat > 0.7)}
    return entry


def _evaluation(name: str, estimators: dict[str, dict[str, dict]], discrete: bool = True, n: int = 30,
                seed: int = 0) -> RunEvaluation:
    """A RunEvaluation of ``n`` examples whose per-example values average to each entry's NLL."""
    rng = np.random.default_rng(seed)
    rows = []
    for estimator, by_k in estimators.items():
        noise = rng.normal(0, 1, n)
        for k, entry in by_k.items():
            values = -entry["nll"] + noise - noise.mean()
            rows += [{"example_id": i, "estimator": estimator, "K": int(k), "log_likelihood": v}
                     for i, v in enumerate(values)]
    return RunEvaluation(Path("/runs") / name, name, name.split("_")[0], "digits", "test", n, estimators,
                         pd.DataFrame(rows), {}, {}, discrete)


def _runs() -> list[RunEvaluation]:
    return [
        # a VAE whose IS converged: its IS at the largest K is the headline
        _evaluation("vae", {"elbo": {"1": _entry(100.0), "1000": _entry(100.2)},
                            "importance_sampled": {"1": _entry(100.0), "1000": _entry(97.0, khat=0.3)}}),
        # a GAN whose IS is better than everything but not converged: passed over for its ELBO (a bound)
        _evaluation("gan", {"elbo": {"1000": _entry(560.0)},
                            "importance_sampled": {"1000": _entry(50.0, khat=11.8)}}, seed=1),
        # only naive MC, not converged: flagged and excluded
        _evaluation("prior_only", {"naive_monte_carlo": {"1000": _entry(20.0, khat=5.0)}}, seed=2),
        # an exact model
        _evaluation("pixelcnn", {"exact": {"1": _entry(140.0)}}, seed=3),
        # a density with an exact marginal: shown, not ranked
        _evaluation("ppca_centres", {"exact": {"1": _entry(90.0)},
                                     "elbo": {"10": _entry(91.0)},
                                     "importance_sampled": {"10": _entry(90.3, khat=0.5)},
                                     "naive_monte_carlo": {"10": _entry(200.0, khat=3.0)}}, discrete=False, seed=4),
    ]


def test_headline_flags_khat_above_limit_as_not_converged_and_does_not_rank_it():
    assert KHAT_LIMIT == 0.7
    table = headline_table(_runs()).set_index("run")
    assert table.loc["vae", "estimate"] == "importance_sampled K=1000" and table.loc["vae", "converged"] == "yes"
    # the GAN's IS (k-hat 11.8) is passed over: flagged, its ELBO shown (and ranked by), with the reason
    assert table.loc["gan", "estimate"] == "elbo K=1000" and table.loc["gan", "converged"] == "not converged"
    assert "importance_sampled K=1000 not converged (k-hat mean 11.80 > 0.7)" in table.loc["gan", "note"]
    # nothing converged: flagged, shown, not ranked
    assert table.loc["prior_only", "converged"] == "not converged" and table.loc["prior_only", "rank"] == ""
    assert "not ranked" in table.loc["prior_only", "note"]
    # the density is shown with its exact value but not ranked
    assert table.loc["ppca_centres", "estimate"] == "exact K=1" and table.loc["ppca_centres", "rank"] == ""
    # ranks by NLL among the converged estimates of discrete data only: vae 97 < pixelcnn 140 < gan 560
    ranked = table[table["rank"] != ""].sort_values("rank")
    assert list(ranked.index) == ["vae", "pixelcnn", "gan"] and list(ranked["rank"]) == ["1", "2", "3"]
    # the unconverged 20-nat "estimate" would have ranked first: it is listed after the ranked rows
    assert list(table.index)[-2:] == ["prior_only", "ppca_centres"] or list(table.index)[-2:] == ["ppca_centres",
                                                                                                  "prior_only"]


def test_paired_differences_use_converged_estimates_only():
    differences, skipped = paired_differences(_runs(), num_resamples=200)
    pairs = {(a, b) for a, b in zip(differences["A"], differences["B"])}
    assert pairs == {("vae", "gan"), ("vae", "pixelcnn"), ("gan", "pixelcnn")}
    gan = differences[(differences["A"] == "vae") & (differences["B"] == "gan")].iloc[0]
    assert gan["estimate B"] == "elbo K=1000"  # never the unconverged IS
    assert gan["NLL(A) - NLL(B)"] < 0
    assert any(s.startswith("prior_only: no converged estimate") for s in skipped)
    assert any(s.startswith("ppca_centres: a density") for s in skipped)
    assert len(skipped) == len(set(skipped))  # one line per run, not per pair


def test_exact_comparison_puts_every_estimator_beside_the_exact_value():
    table = exact_comparison(_runs())
    ppca = table[table["run"] == "ppca_centres"].iloc[0]
    assert ppca["K"] == 10 and ppca["exact NLL"] == 90.0
    assert ppca["elbo - exact"] == 1.0 and abs(ppca["importance_sampled - exact"] - 0.3) < 1e-12
    assert ppca["naive_monte_carlo - exact"] == 110.0
    pixelcnn = table[table["run"] == "pixelcnn"].iloc[0]
    assert "exact is its only estimator" in pixelcnn["note"]
