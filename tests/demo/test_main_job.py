"""The main job (``python -m demo``) in its quick mode: the report, the progress lines, the ETA."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from demo.main_job import JOBS, QUICK_LIMIT, Job, clock, eta
from tests.conftest import cli


def test_demo_quick_ends_with_the_comparison_report(tmp_path, capsys):
    from demo.main_job import main as demo_main

    code, out, err = cli(demo_main, ["--out", tmp_path / "demo", "--quick"], capsys)
    assert code == 0, err
    report = (tmp_path / "demo" / "compare" / "report.md").read_text()
    assert "| vae | vae | digits |" in report and "| ppca | ppca | digits |" in report
    assert "Differences between runs" in report and "| vae | ppca |" in report

    # progress: "model k of N: <name>" before each model, an ETA from the second on, no per-epoch rows
    announced = re.findall(r"^model (\d+) of (\d+): (\w+) \(", out, flags=re.M)
    assert [(int(k), int(n), name) for k, n, name in announced] == \
        [(i + 1, len(JOBS), job.name) for i, job in enumerate(JOBS)]
    assert len(re.findall(r"^model \d+ of \d+: .* so far, about \S+ left\)$", out, flags=re.M)) == len(JOBS) - 1
    assert not re.search(r"^epoch \d+  step", out, flags=re.M)
    assert out.count("trained epochs ") == len(JOBS)  # one summary line per model
    assert re.search(rf"^{len(JOBS)} models in \S+; runs in ", out, flags=re.M)

    # the headline table opens the report: one row per model, the flow's and the GAN's IS flagged
    assert report.index("## Headline") < report.index("## Estimators against an exact likelihood") \
        < report.index("## Samples next to real data") < report.index("## Every estimate")
    headline = pd.read_csv(tmp_path / "demo" / "compare" / "headline.csv", keep_default_na=False).set_index("run")
    assert sorted(headline.index) == sorted(job.name for job in JOBS)
    assert set(headline["N"]) == {QUICK_LIMIT}
    for name in headline.index:
        note, ranked = headline.loc[name, "note"], headline.loc[name, "rank"] != ""
        assert ranked == ("not ranked" not in note), name
    assert headline.loc["pixelcnn", "estimate"] == "exact K=1"
    # the flow's and the GAN's IS do not converge even at 2 epochs (k-hat mean > 0.7): flagged, the ELBO shown
    for name in ("flow", "gan"):
        assert headline.loc[name, "converged"] == "not converged", headline.loc[name].to_dict()
        assert headline.loc[name, "estimate"] == "elbo K=100"
        assert "importance_sampled K=100 not converged (k-hat mean" in headline.loc[name, "note"]
    assert headline.loc["vae", "converged"] == "yes" and headline.loc["pixelcnn", "converged"] == "yes"

    # PPCA's exact row: the bin-centres PPCA evaluated with exact, beside naive MC, ELBO and IS at each K
    assert headline.loc["ppca_centres", "estimate"] == "exact K=1"
    section = report[report.index("## Estimators against an exact likelihood"):report.index("## Samples next")]
    ppca_rows = [line for line in section.splitlines() if line.startswith("| ppca_centres | ppca |")]
    assert [line.split(" | ")[2] for line in ppca_rows] == ["1", "10", "100"]
    assert "| pixelcnn | pixelcnn | - |" in section
    assert "![" in report and "](samples.png)" in report and (tmp_path / "demo" / "compare" / "samples.png").is_file()
    # PPCA was fitted in closed form: one epoch, a normal run directory
    assert (tmp_path / "demo" / "ppca" / "best.pt").is_file()
    assert len((tmp_path / "demo" / "ppca" / "metrics.csv").read_text().splitlines()) == 2


def test_eta_scales_the_remaining_jobs_by_the_measured_pace():
    jobs = [Job("a", "vae", 1, seconds=10), Job("b", "vae", 1, seconds=20), Job("c", "vae", 1, seconds=30)]
    assert eta([], jobs) == 60
    assert eta([(jobs[0], 20.0)], jobs[1:]) == pytest.approx(100.0)  # twice as slow as expected
    assert clock(65) == "1m05s" and clock(42.4) == "42s"
