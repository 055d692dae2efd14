"""``python -m evaluation.evaluate`` and ``python -m evaluation.compare`` on tiny trained runs: the files of
the conventions, properties that hold per example, merging, pairing, and the report (the demo's quick mode:
``tests/demo/test_main_job.py``)."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.errors import run_cli
from evaluation.compare import main as compare_main
from evaluation.evaluate import main as evaluate_main
from evaluation.result_files import result_paths
from inference.train import main as train_main
from tests.conftest import cli

KS = ["1", "10", "100"]
LIMIT = 40  # the fixture evaluates the first 40 test images: files eval_test_limit40.json / _examples.csv


def _train(out: Path, *options: str) -> Path:
    with pytest.raises(SystemExit) as info:
        run_cli(train_main, [*options, "--dataset", "binarized_digits", "--epochs", "1", "--out", str(out)])
    assert info.value.code == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny VAE and a PPCA on binarized digits, both evaluated on the first 40 test images at K = 1, 10, 100."""
    root = tmp_path_factory.mktemp("eval_runs")
    out = {"vae": _train(root / "vae", "vae", "--hidden", "16", "--latent-dim", "2"),
           "ppca": _train(root / "ppca", "ppca", "--latent-dim", "2", "--lr", "1e-2")}
    for run in out.values():
        with pytest.raises(SystemExit) as info:
            run_cli(evaluate_main, [str(run), "--num-samples", *KS, "--limit", "40"])
        assert info.value.code == 0
    return out


def _result(run: Path, every: int = 1, limit: int | None = LIMIT) -> dict:
    """The evaluation of a subset (the fixture's: the first 40 test images), ``evaluation.result_files``."""
    return json.loads(result_paths(run, "test", every, limit)[0].read_text())


def _rows(run: Path, every: int = 1, limit: int | None = LIMIT) -> list[dict[str, str]]:
    return list(csv.DictReader(result_paths(run, "test", every, limit)[1].open()))


def test_eval_json_follows_the_conventions(runs):
    result = _result(runs["vae"])
    assert result["schema_version"] == 1 and result["split"] == "test" and result["n_examples"] == 40
    assert set(result["estimators"]) == {"naive_monte_carlo", "elbo", "importance_sampled"}
    for name, by_k in result["estimators"].items():
        assert list(by_k) == KS
        for k, entry in by_k.items():
            assert entry["nll"] == pytest.approx(-entry["log_likelihood"])
            assert entry["bpd"] == pytest.approx(entry["nll"] / (64 * math.log(2)))
            assert entry["se"] > 0 and entry["seconds"] >= 0
            assert ("khat" in entry) == (int(k) >= 100 and name != "elbo")
    assert 0 <= result["estimators"]["importance_sampled"]["100"]["khat"]["frac_above_0.7"] <= 1
    ppca = _result(runs["ppca"])
    assert "exact" not in ppca["estimators"]  # dequantized images: no closed form
    assert ppca["discrete_likelihood"] is True and result["discrete_likelihood"] is True
    # the trainer's evaluation of the whole split is kept beside the subset's
    assert json.loads((runs["vae"] / "eval_test.json").read_text())["n_examples"] == 250


def test_examples_csv_and_per_example_properties(runs):
    rows = _rows(runs["vae"])
    assert list(rows[0]) == ["example_id", "estimator", "K", "log_likelihood", "khat", "ess"]
    frame = pd.DataFrame(rows).astype({"example_id": int, "K": int, "log_likelihood": float})
    assert len(frame) == 3 * len(KS) * 40
    wide = frame.pivot_table(index=["example_id", "K"], columns="estimator", values="log_likelihood")
    # ELBO and IS at one K share their samples: log-mean-exp >= mean (Jensen) per example, equal at K = 1
    assert (wide["importance_sampled"] >= wide["elbo"] - 1e-9).all()
    k1 = wide.xs(1, level="K")
    assert (k1["importance_sampled"] - k1["elbo"]).abs().max() < 1e-12
    khat = frame[(frame.K == 100) & (frame.estimator == "importance_sampled")]["khat"].astype(float)
    ess = frame[(frame.K == 100) & (frame.estimator == "importance_sampled")]["ess"].astype(float)
    assert khat.notna().all() and ((ess >= 1 - 1e-9) & (ess <= 100 + 1e-9)).all()


@pytest.mark.parametrize("k", [10, 100])
def test_is_beats_the_elbo_of_the_same_pass_by_several_standard_errors(runs, k):
    """The written files, not just the estimators: IS - ELBO per example at K >= 10 is > 0 by Z = 4 standard
    errors (an ELBO reported as a log-mean-exp, or IS as a mean, makes it 0 or negative)."""
    frame = pd.DataFrame(_rows(runs["vae"])).astype({"example_id": int, "K": int, "log_likelihood": float})
    wide = frame[frame.K == k].pivot_table(index="example_id", columns="estimator", values="log_likelihood")
    gap = wide["importance_sampled"] - wide["elbo"]
    assert gap.mean() > 4 * gap.std(ddof=1) / math.sqrt(len(gap)), gap.describe()


def test_evaluations_merge_and_restart_on_other_examples(runs, tmp_path, capsys):
    run = tmp_path / "vae"
    shutil.copytree(runs["vae"], run)
    code, out, err = cli(evaluate_main, [run, "--num-samples", "3", "--limit", "40", "--estimators", "elbo"], capsys)
    assert code == 0, err
    result = _result(run)
    assert list(result["estimators"]["elbo"]) == KS + ["3"]  # merged
    assert len(_rows(run)) == 3 * len(KS) * 40 + 40
    whole = _result(run, limit=None)  # the trainer's evaluation of the whole split is untouched
    assert list(whole["estimators"]) == ["elbo"] and whole["n_examples"] > 40
    code, out, err = cli(evaluate_main, [run, "--num-samples", "2", "--every", "25", "--estimators", "elbo"], capsys)
    assert code == 0, err
    result = _result(run, every=25, limit=None)
    assert result["n_examples"] == 10 and list(result["estimators"]) == ["elbo"]  # another subset: its own files
    assert "evaluated 10 test examples (every 25th)" in out and "eval_test_every25.json" in out  # says how many and where it wrote
    assert [int(r["example_id"]) for r in _rows(run, every=25, limit=None)] == list(range(0, 250, 25))
    assert list(_result(run)["estimators"]["elbo"]) == KS + ["3"]  # the first 40 images' results are kept
    assert _result(run, limit=None) == whole


def test_compare_writes_report_tables_and_figures(runs, tmp_path, capsys):
    code, out, err = cli(compare_main, [runs["vae"], runs["ppca"], "--limit", "40", "--out", tmp_path / "cmp"],
                         capsys)
    assert code == 0, err
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "| run | model | dataset | N | estimator | K | NLL (nats) | SE | bits/dim | k-hat mean |" in report
    assert report.index("## Headline") < report.index("## Estimators against an exact likelihood") \
        < report.index("## Samples next to real data") < report.index("## Every estimate")
    for name in ("estimate_vs_k.png", "khat.png", "elbo_is_gap.png", "samples.png", "summary.csv", "headline.csv",
                 "differences.csv"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert f"]({name})" in report
    summary = pd.read_csv(tmp_path / "cmp" / "summary.csv")
    assert len(summary) == 2 * 3 * len(KS)
    differences = pd.read_csv(tmp_path / "cmp" / "differences.csv")
    assert len(differences) == 1
    row = differences.iloc[0]
    # each run's headline: IS at K = 100 where its k-hat mean is at most 0.7 (converged), else the ELBO at K = 100
    estimators = {r: _result(runs[r])["estimators"] for r in runs}
    chosen = {r: "importance_sampled" if est["importance_sampled"]["100"]["khat"]["mean"] <= 0.7 else "elbo"
              for r, est in estimators.items()}
    assert (row["estimate A"], row["estimate B"]) == (f"{chosen['vae']} K=100", f"{chosen['ppca']} K=100")
    assert row["95% low"] <= row["NLL(A) - NLL(B)"] <= row["95% high"]
    # the paired mean is the difference of the two runs' mean NLLs on the same 40 examples
    nll = {r: estimators[r][chosen[r]]["100"]["nll"] for r in runs}
    assert row["NLL(A) - NLL(B)"] == pytest.approx(nll["vae"] - nll["ppca"], abs=1e-9)
    headline = pd.read_csv(tmp_path / "cmp" / "headline.csv", keep_default_na=False).set_index("run")
    assert list(headline.loc[["vae", "ppca"], "estimate"]) == [f"{chosen['vae']} K=100", f"{chosen['ppca']} K=100"]


def test_compare_refuses_to_pair_runs_on_other_examples(runs, tmp_path, capsys):
    """Each run's only evaluation (the trainer's whole-split files removed): 40 examples against 30."""
    other, ppca = tmp_path / "vae_other", tmp_path / "ppca"
    shutil.copytree(runs["vae"], other)
    shutil.copytree(runs["ppca"], ppca)
    for run in (other, ppca):
        for path in result_paths(run, "test"):
            path.unlink()
    for path in result_paths(other, "test", 1, 40):
        path.unlink()
    code, _, err = cli(evaluate_main, [other, "--num-samples", "100", "--limit", "30"], capsys)
    assert code == 0, err
    code, _, err = cli(compare_main, [ppca, other, "--out", tmp_path / "cmp"], capsys)
    assert code == 0, err
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "not compared: ppca vs vae_other: evaluated on different examples (40 vs 30)" in report


def test_compare_refuses_an_unevaluated_run(runs, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(runs["vae"], bare)
    for f in bare.glob("eval_*"):
        f.unlink()
    code, _, err = cli(compare_main, [bare, "--out", tmp_path / "cmp"], capsys)
    assert code == 2 and err.count("\n") == 1 and "has no eval_test.json" in err and "evaluation.evaluate" in err


class GlobalMeanStory:
    """A story whose latent mu is shared by all examples (x_n ~ N(mu, 1/4), mu ~ N(0, 1)), with its exact guide."""

    max_plate_nesting = 1
    has_latents = True
    spec = None

    def model(self, x):
        import pyro
        import pyro.distributions as dist

        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu.unsqueeze(-1).expand(mu.shape + (2,)), 0.5).to_event(1), obs=x)

    def guide(self, x):
        import pyro
        import pyro.distributions as dist

        precision = 1 + x.numel() / 0.25
        pyro.sample("mu", dist.Normal(x.sum() / 0.25 / precision, precision ** -0.5))

    def sample(self, n, *, mean=False):
        raise NotImplementedError

    def check_data(self, x):
        pass

    def to(self, device):
        return self


def test_joint_mode_measures_the_split_as_one_example_and_says_so(tmp_path):
    """--joint: one estimate of log p(x_1..N) of the whole split, its meaning and the unit's bits/dim in the
    JSON; per example, the same story is refused by name."""
    from types import SimpleNamespace

    import torch

    from core.errors import DGMError
    from evaluation.evaluate import evaluate_run

    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5 + 1.0
    run = SimpleNamespace(model=GlobalMeanStory(), run_dir=tmp_path, epoch=1, config={"dataset": "toy", "model": "toy"},
                          dataset=SimpleNamespace(spec=SimpleNamespace(dim=2), split=lambda name: x))
    with pytest.raises(DGMError, match="latent site 'mu' is not inside pyro.plate.*joint=True"):
        evaluate_run(run, "test", ["importance_sampled"], [4])
    result = evaluate_run(run, "test", ["elbo", "importance_sampled"], [4], joint=True)
    assert result["joint"] is True and "joint log p(x_1..N)" in result["estimate_of"] and result["n_examples"] == 10
    entry = result["estimators"]["importance_sampled"]["4"]
    cov = 0.25 * torch.eye(20, dtype=torch.float64) + torch.ones(20, 20, dtype=torch.float64)
    truth = float(torch.distributions.MultivariateNormal(torch.zeros(20, dtype=torch.float64), cov).log_prob(x.reshape(-1)))
    assert entry["log_likelihood"] == pytest.approx(truth, abs=1e-9) and entry["se"] == 0.0
    assert entry["bpd"] == pytest.approx(-truth / (20 * math.log(2)))  # the unit has N D = 20 dimensions
    rows = list(csv.DictReader(result_paths(tmp_path, "test", joint=True)[1].open()))
    assert [(r["example_id"], r["estimator"]) for r in rows] == [("0", "elbo"), ("0", "importance_sampled")]
    with pytest.raises(DGMError, match="ais has no joint mode"):
        evaluate_run(run, "test", ["ais"], [4], joint=True)


def test_compare_gives_no_verdict_from_non_finite_per_example_values(runs, tmp_path, capsys):
    """A NaN in a per-example file (a damaged or hand-edited evaluation) is reported as not compared, never
    as "neither (interval covers 0)"."""
    broken = tmp_path / "vae_nan"
    shutil.copytree(runs["vae"], broken)
    per_example = result_paths(broken, "test", 1, LIMIT)[1]
    frame = pd.read_csv(per_example)
    frame.loc[(frame.estimator == "importance_sampled") & (frame.K == 100) & (frame.example_id == 3),
              "log_likelihood"] = float("nan")
    frame.to_csv(per_example, index=False)
    code, _, err = cli(compare_main, [runs["ppca"], broken, "--limit", "40", "--out", tmp_path / "cmp"], capsys)
    assert code == 0, err
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "ppca vs vae_nan: non-finite per-example values" in report
    assert "vae_nan" not in (tmp_path / "cmp" / "differences.csv").read_text()  # no difference row for the pair
