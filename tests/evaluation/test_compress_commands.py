"""``python -m evaluation.compress`` and ``python -m evaluation.decompress``: files decoded in a fresh process,
and a one-line error for a flipped byte, a truncated file, the wrong run, an unsupported model, another
device, and decoded images that do not match their checksum."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluation.compression.lossless as lossless
from core.errors import DGMError, run_cli
from inference.training.load_run import load_run
from evaluation.compress import main as compress_main
from evaluation.compression.container import read_file, to_bytes
from evaluation.compression.lecture_column import compression_entry
from evaluation.compression.lossless import decompress_images
from evaluation.decompress import main as decompress_main
from tests.conftest import ROOT, cli
from tests.evaluation.compression.compression_testing import train_run

TINY_ARM = ("pixelcnn", "--channels", "8", "--residual-blocks", "1", "--output-channels", "8")
TINY_VAE = ("vae", "--hidden", "16", "--latent-dim", "3")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny runs trained for one epoch on binarized digits: a PixelCNN, two VAEs that differ only in their
    seed, and a PPCA (no coder)."""
    root = tmp_path_factory.mktemp("compress_runs")
    data = ("--dataset", "binarized_digits", "--epochs", "1")
    return {"arm": train_run(root / "arm", *TINY_ARM, *data),
            "vae": train_run(root / "vae", *TINY_VAE, *data),
            "vae_seed1": train_run(root / "vae_seed1", *TINY_VAE, *data, "--seed", "1"),
            "ppca": train_run(root / "ppca", "ppca", "--latent-dim", "2", *data)}


@pytest.fixture(scope="module")
def files(runs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first 30 test images compressed with each coder (the VAE with 2 lanes)."""
    root = tmp_path_factory.mktemp("compressed")
    out = {}
    for key, extra in (("arm", ["--batch-size", "7"]), ("vae", ["--lanes", "2"])):
        out[key] = root / f"{key}.dgmz"
        with pytest.raises(SystemExit) as info:
            run_cli(compress_main, [str(runs[key]), "--split", "test", "--limit", "30", "--out", str(out[key]), *extra])
        assert info.value.code == 0
    return out


def _fresh_decompress(file: Path, run: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m evaluation.decompress`` in a new interpreter (nothing shared with this process)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "evaluation.decompress", str(file), "--run", str(run),
                           "--out", str(out), *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("key", ["arm", "vae"])
def test_a_file_decodes_bit_exactly_in_a_fresh_process(runs, files, key, tmp_path):
    result = _fresh_decompress(files[key], runs[key], tmp_path / "out", "--png")
    assert result.returncode == 0, result.stderr
    assert "SHA-256 verified" in result.stdout
    images = np.load(tmp_path / "out" / "images.npy")
    expected = load_run(runs[key]).dataset.split("test")[:30].numpy().astype(np.uint8)
    assert images.dtype == np.uint8 and np.array_equal(images, expected)
    assert len(list((tmp_path / "out" / "png").glob("*.png"))) == 30


def test_the_header_describes_the_file(runs, files):
    header = read_file(files["vae"]).header
    assert header["coder"] == {"name": "vae-bits-back", "lanes": 2, "latent_bits": 12, "initial_words": 4}
    assert header["data"]["shape"] == [1, 8, 8] and header["data"]["count"] == 30
    assert header["data"]["source"] == {"split": "test", "every": 1, "limit": 30}
    assert len(header["model"]["identity"]) == 64 and header["computed_on"]["device"] == "cpu"
    assert read_file(files["arm"]).header["coder"] == {"name": "arm-ans", "batch_size": 7}


def _one_line_error(capsys, argv) -> str:
    code, _, err = cli(decompress_main, argv, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_flipped_byte_is_a_one_line_error(runs, files, tmp_path, capsys):
    data = bytearray(files["arm"].read_bytes())
    for position in (len(data) // 2, len(data) - 40, 20):  # in the payload, near its end, in the header
        damaged = tmp_path / f"flipped{position}.dgmz"
        copy = bytearray(data)
        copy[position] ^= 0x01
        damaged.write_bytes(bytes(copy))
        err = _one_line_error(capsys, [damaged, "--run", runs["arm"], "--out", tmp_path / f"o{position}"])
        assert "corrupt" in err or "truncated" in err


def test_a_truncated_file_is_a_one_line_error(runs, files, tmp_path, capsys):
    cut = tmp_path / "cut.dgmz"
    cut.write_bytes(files["vae"].read_bytes()[:-10])
    assert "truncated" in _one_line_error(capsys, [cut, "--run", runs["vae"], "--out", tmp_path / "o"])
    assert not (tmp_path / "o").exists()


def test_the_wrong_run_is_refused_by_its_hash(runs, files, tmp_path, capsys):
    """Same model and options, another seed: other weights, another identity."""
    err = _one_line_error(capsys, [files["vae"], "--run", runs["vae_seed1"], "--out", tmp_path / "o"])
    assert "written by another model" in err and "decode with the run that wrote it" in err
    err = _one_line_error(capsys, [files["vae"], "--run", runs["arm"], "--out", tmp_path / "o2"])
    assert "written by another model" in err


def test_an_unsupported_model_is_a_one_line_error(runs, tmp_path, capsys):
    code, _, err = cli(compress_main, [runs["ppca"], "--out", tmp_path / "p.dgmz"], capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot compress with a 'ppca' model" in err
    assert not (tmp_path / "p.dgmz").exists()


def test_bad_options_and_outputs_are_one_line_errors(runs, files, tmp_path, capsys):
    code, _, err = cli(compress_main, [runs["vae"], "--lanes", "0", "--out", tmp_path / "x.dgmz"], capsys)
    assert code == 2 and "--lanes" in err and err.count("\n") == 1
    code, _, err = cli(compress_main, [runs["vae"], "--latent-bits", "30", "--out", tmp_path / "x.dgmz"], capsys)
    assert code == 2 and "--latent-bits" in err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert "not an empty directory" in _one_line_error(capsys, [files["arm"], "--run", runs["arm"], "--out", occupied])
    not_ours = tmp_path / "not_ours.dgmz"
    not_ours.write_bytes(b"hello world, not a compressed file")
    assert "no DGMZ magic" in _one_line_error(capsys, [not_ours, "--run", runs["arm"], "--out", tmp_path / "o"])


def test_another_device_kind_is_refused(runs, files, monkeypatch):
    monkeypatch.setattr(lossless, "device_label", lambda device: "cuda:Some GPU")
    with pytest.raises(DGMError, match="encoded on cpu.*same kind of device"):
        decompress_images(read_file(files["arm"]), load_run(runs["arm"]), torch.device("cpu"))


@pytest.mark.parametrize("key", ["arm", "vae"])
def test_a_float_mismatch_never_decodes_a_wrong_image_silently(runs, files, key, monkeypatch):
    """A model whose weights differ slightly (as another machine's arithmetic might) with the identity check
    bypassed: decoding ends in a one-line error (checksum, left-over data, or a stack not back at its seed)."""
    run = load_run(runs[key])
    with torch.no_grad():
        for parameter in run.model.parameters():
            parameter.mul_(1 + 1e-3)
    monkeypatch.setattr(lossless, "check_identity", lambda compressed, run, name: None)
    with pytest.raises(DGMError, match="SHA-256|more data than its images|initial bits"):
        decompress_images(read_file(files[key]), run, torch.device("cpu"))


def test_the_lecture_column_measures_or_says_why_not(runs, tmp_path):
    """``compression_entry``: a measured, bit-exact rate for the PixelCNN and the VAE, "no" with the reason for PPCA."""
    arm = compression_entry(load_run(runs["arm"]), tmp_path, limit=20)
    assert arm["compression"] == "yes" and arm["rate"] == "payload (ANS)" and arm["images"] == 20
    bits = 20 * 64  # images x dimensions: per-dim rates -> bits; the ANS state costs at most ~3 words
    assert abs(arm["rate bits/dim"] - arm["model code length bits/dim"]) * bits <= 96
    assert arm["file bits/dim"] > arm["rate bits/dim"]
    vae = compression_entry(load_run(runs["vae"]), tmp_path, limit=20)
    assert vae["compression"] == "yes" and vae["rate"] == "bits-back net rate"
    assert abs(vae["rate bits/dim"] - vae["model code length bits/dim"]) * bits <= 96
    assert compression_entry(load_run(runs["ppca"]), tmp_path)["compression"].startswith("no: PPCA on images is a "
                                                                                         "density of dequantized")


def test_a_file_encoded_on_a_gpu_is_refused_on_another_kind_of_device(runs, files, tmp_path, capsys):
    """A (rewritten, validly hashed) header saying the file was encoded on a GPU: one line, never a wrong decode."""
    compressed = read_file(files["arm"])
    header = dict(compressed.header, computed_on=dict(compressed.header["computed_on"], device="cuda:Other GPU"))
    moved = tmp_path / "gpu.dgmz"
    moved.write_bytes(to_bytes(header, compressed.streams))
    err = _one_line_error(capsys, [moved, "--run", runs["arm"], "--out", tmp_path / "o"])
    assert "no GPU" in err or "same kind of device" in err
