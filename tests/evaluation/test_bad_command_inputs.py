"""The evaluation commands on bad input: a one-line error (exit 2) naming the problem, refused before any
work, or a correct result; never a traceback. One row per case (issue #17's table of 209 is the guide; the
training and sampling commands have theirs in tests/inference/test_bad_inputs.py). And a second writer of a
run directory is refused by every command that writes into it, naming the holder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from benchmarks.likelihood_table import main as table_main
from evaluation.amortization_gap import main as gap_main
from evaluation.bdmc import main as bdmc_main
from evaluation.compare import main as compare_main
from evaluation.compress import main as compress_main
from evaluation.decompress import main as decompress_main
from evaluation.evaluate import main as evaluate_main
from evaluation.gan_likelihood import main as gan_main
from evaluation.sample_quality import main as quality_main
from inference.sample import main as sample_main
from tests.conftest import assert_one_line, cli, lock_holder, train_tiny_vae

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_vae(tmp_path_factory.mktemp("bad_eval") / "vae")


def _damage(name: str, text: str | bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return damage


def _config_model_int(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    config["model"] = 3
    (run / "config.json").write_text(json.dumps(config))


# (label, command, options after the run directory, damage done to a copy of the run first, message fragment)
CASES = [
    ("chunk size negative", evaluate_main, ["--chunk-size", "-4"], None, "--chunk-size) must be a positive integer"),
    ("every 0", evaluate_main, ["--every", "0"], None, "--every must be at least 1"),
    ("limit 0", evaluate_main, ["--limit", "0"], None, "--limit must be at least 1"),
    ("K 0", evaluate_main, ["--num-samples", "0"], None, "--num-samples must be at least 1"),
    ("K too large to allocate", evaluate_main, ["--num-samples", "10000000000", "--limit", "2"], None,
     "out of memory (one allocation of"),
    ("threads 0", evaluate_main, ["--threads", "0"], None, "--threads must be at least 1"),
    ("seed -1", evaluate_main, ["--seed", "-1", "--limit", "2"], None, "--seed must be an integer in 0..4294967295"),
    ("seed 2**32", evaluate_main, ["--seed", str(2 ** 32), "--limit", "2"], None, "--seed must be an integer in"),
    ("unknown split", evaluate_main, ["--split", "bogus"], None, "invalid choice: 'bogus'"),
    ("unknown estimator", evaluate_main, ["--estimators", "magic"], None, "invalid choice: 'magic'"),
    ("exact without closed form", evaluate_main, ["--estimators", "exact", "--limit", "2"], None,
     "the exact estimator needs a model without latent sample sites"),
    ("damaged result JSON", evaluate_main, ["--num-samples", "2"], _damage("eval_test.json", "{not json"),
     "eval_test.json is not valid JSON"),
    ("result JSON of the wrong shape", evaluate_main, ["--num-samples", "2"], _damage("eval_test.json", "[1, 2]"),
     "a JSON object is expected, got list"),
    ("damaged per-example CSV", evaluate_main, ["--num-samples", "2"],
     _damage("eval_test_examples.csv", "a,b\n1,2\n"), "eval_test_examples.csv is damaged"),
    ("config.json of the wrong shape", evaluate_main, ["--limit", "2"], _damage("config.json", "[1]"),
     "config.json is not a run's config"),
    ("config.json with a wrong type", evaluate_main, ["--limit", "2"], _config_model_int,
     "'model' should be a str, got int"),
    ("no best.pt", evaluate_main, ["--limit", "2"], lambda run: (run / "best.pt").unlink(), "has no best.pt"),
    ("garbage best.pt", evaluate_main, ["--limit", "2"], _damage("best.pt", b"garbage"),
     "is unreadable (truncated or not a checkpoint)"),
    ("compare: too few resamples", compare_main, ["--out", "{tmp}/cmp", "--bootstrap", "5"], None,
     "--bootstrap must be at least 100"),
    ("compare: --out is a file", compare_main, ["--out", "{run}/config.json"], None, "is a file, not a folder"),
    ("bdmc: n 0", bdmc_main, ["-n", "0"], None, "-n must be at least 1"),
    ("bdmc: chains 0", bdmc_main, ["--chains", "0"], None, "must be a positive integer, got 0"),
    ("bdmc: more templates than examples", bdmc_main, ["-n", "100000"], None, "exceeds the 250 examples"),
    ("bdmc: no annealing steps", bdmc_main, ["--ais-steps", "0"], None, "at least 1 annealing step"),
    ("gan_likelihood of a VAE", gan_main, [], None, "gan_likelihood is for GAN runs"),
    ("sample_quality: n 3", quality_main, ["-n", "3"], None, "-n must be in 4..100,000"),
    ("sample_quality: bootstrap -3", quality_main, ["--bootstrap", "-3"], None, "--bootstrap must be >= 0"),
    ("sample_quality: seed -1", quality_main, ["--seed", "-1"], None, "--seed must be in 0..4294967295"),
    ("sample_quality: threads 0", quality_main, ["--threads", "0"], None, "--threads must be at least 1"),
    ("sample_quality: --classifier-dir a file", quality_main, ["--classifier-dir", "{run}/config.json"], None,
     "is a file, not a folder"),
    ("amortization_gap: --out a file", gap_main, ["--out", "{run}/config.json"], None, "is a file, not a folder"),
    ("compress: --out a folder", compress_main, ["--limit", "2", "--out", "{tmp}"], None,
     "is a folder; give a file name"),
    ("compress: limit 0", compress_main, ["--limit", "0", "--out", "{tmp}/x.dgmz"], None, "--limit must be at least 1"),
    ("decompress: no such file", decompress_main, None, None, "no compressed file at"),
    ("sample: threads 0", sample_main, ["--threads", "0"], None, "--threads must be at least 1"),
    ("likelihood_table: damaged JSON", table_main, [], _damage("eval_test.json", "{not json"),
     "eval_test.json is not valid JSON"),
]


@pytest.mark.parametrize("label, main, options, damage, fragment", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_before_any_work(trained, tmp_path, capsys, label, main, options, damage, fragment):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    if damage is not None:
        damage(run)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    if options is None:  # decompress takes the file first and the run as an option
        argv = [tmp_path / "missing.dgmz", "--run", run, "--out", tmp_path / "decoded"]
    else:
        argv = [run, *(str(o).format(run=run, tmp=tmp_path) for o in options)]
    assert_one_line(cli(main, argv, capsys), fragment)
    after = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert after == before, "a refused command changed the run directory"


WRITERS = [
    ("evaluate", evaluate_main, ["--limit", "2", "--num-samples", "2"]),
    ("bdmc", bdmc_main, ["-n", "2", "--chains", "2", "--ais-steps", "2"]),
    ("sample", sample_main, ["-n", "4"]),
]


@pytest.mark.parametrize("name, main, options", WRITERS, ids=[w[0] for w in WRITERS])
def test_a_command_writing_into_a_run_another_process_holds_is_refused(trained, tmp_path, capsys, name, main,
                                                                      options):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = sorted(p.name for p in run.iterdir())
    proc = lock_holder(run)
    try:
        result = cli(main, [run, *options], capsys)
    finally:
        proc.kill()
        proc.wait()
    assert_one_line(result, f"in use by process {proc.pid}")
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".lock")) == \
        [b for b in before if not b.startswith(".lock")]
    code, _, err = cli(main, [run, *options], capsys)  # the dead holder's lock is recovered
    assert code == 0, err


def test_sample_quality_says_when_the_fd_has_no_standard_error(tmp_path, capsys):
    code, out, err = cli(quality_main, [tmp_path / "missing", "--bootstrap", "0"], capsys)
    assert "--bootstrap 0: the FD is reported without its standard error" in out
    assert code == 2 and err.count("\n") == 1  # and the missing run is still one line
