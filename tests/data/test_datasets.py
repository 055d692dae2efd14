"""The data layer: named data sets, splits, parsing, verification and offline errors."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import DGMError
from data import DATASETS, Dataset, load_dataset
from data.binarized_mnist import parse_amat
from data.dataset import binarize
from data.files import data_dir
from data.idx_mnist import parse_idx


@pytest.mark.parametrize("name", ["digits", "binarized_digits"])
def test_embedded_digits_splits(name: str) -> None:
    ds = load_dataset(name)
    sizes = [ds.split(s).shape[0] for s in ("train", "val", "test")]
    assert sizes == [1297, 250, 250] == list(DATASETS[name].splits)
    x = torch.cat([ds.split(s) for s in ("train", "val", "test")])
    assert x.shape[1:] == (1, 8, 8)
    assert set(x.unique().tolist()) <= set(range(DATASETS[name].levels))
    # the splits partition the 1797 images: no image index is used twice
    from sklearn.datasets import load_digits

    assert x.shape[0] == len(load_digits().images)


def test_binarized_digits_threshold() -> None:
    grey, binary = load_dataset("digits").split("val"), load_dataset("binarized_digits").split("val")
    assert torch.equal(binary, (grey >= 8).float())


def test_unknown_names_are_refused() -> None:
    with pytest.raises(DGMError, match="unknown data set 'cifar'"):
        Dataset("cifar")
    with pytest.raises(DGMError, match="unknown split"):
        load_dataset("digits").split("validation")


def test_parse_amat_and_its_errors() -> None:
    rows = np.random.default_rng(0).integers(0, 2, size=(3, 784))
    text = "\n".join(" ".join(map(str, r)) for r in rows) + "\n"
    assert np.array_equal(parse_amat(text.encode(), "x"), rows)
    with pytest.raises(DGMError, match="not a binarized MNIST"):
        parse_amat(text.replace("1", "2").encode(), "x")
    with pytest.raises(DGMError, match="unexpected size"):
        parse_amat(text[:-3].encode(), "x")


def test_parse_idx() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    content = b"\x00\x00\x08\x03" + b"".join(int(s).to_bytes(4, "big") for s in images.shape) + images.tobytes()
    assert np.array_equal(parse_idx(content, "x"), images)
    with pytest.raises(DGMError, match="header says"):
        parse_idx(content[:-1], "x")


def test_missing_files_offline_name_the_file_and_the_remedy(tmp_path: Path) -> None:
    with pytest.raises(DGMError) as info:
        Dataset("binarized_mnist", tmp_path).split("test")
    message = str(info.value)
    assert "binarized_mnist_test.amat" in message and str(tmp_path / "BinarizedMNIST") in message
    assert "DGM_OFFLINE" in message and "--data-dir" in message and "http" in message
    with pytest.raises(DGMError, match="t10k-images-idx3-ubyte"):
        Dataset("mnist", tmp_path).split("test")


def test_corrupt_files_are_detected(tmp_path: Path) -> None:
    folder = tmp_path / "BinarizedMNIST"
    folder.mkdir()
    (folder / "binarized_mnist_valid.amat").write_text("0 1\n")
    with pytest.raises(DGMError, match="corrupt"):
        Dataset("binarized_mnist", tmp_path).split("val")
    (folder / "binarized_mnist_valid.amat").unlink()
    (folder / "binarized_mnist_valid.amat.gz").write_bytes(gzip.compress(b"0 1\n")[:-6])
    with pytest.raises(DGMError, match="damaged gzip|corrupt"):
        Dataset("binarized_mnist", tmp_path).split("val")


def test_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DGM_DATA_DIR", str(tmp_path / "env"))
    assert data_dir(tmp_path / "cli") == tmp_path / "cli"
    assert data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("DGM_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_dir(None) == tmp_path / "cache" / "dgm-pyro" / "data"


def test_real_data_when_available(shared_data: Path | None) -> None:
    """Checked against shared/README.md's mean pixels; synthetic stand-ins keep the test meaningful offline."""
    if shared_data is None:
        pytest.skip("../shared/data is absent: the real-data check needs it (CI has it)")
    bmnist = Dataset("binarized_mnist", shared_data)
    means = {s: round(float(bmnist.split(s).mean()), 5) for s in ("train", "val", "test")}
    assert means == {"train": 0.13056, "val": 0.13113, "test": 0.13251}
    mnist = Dataset("mnist", shared_data)
    assert [mnist.split(s).shape[0] for s in ("train", "val", "test")] == [50000, 10000, 10000]
    assert mnist.split("test").max() == 255 and mnist.labels("test").shape == (10000,)


def test_dynamic_binarization_depends_on_seed_and_epoch_only(shared_data: Path | None) -> None:
    if shared_data is None:
        pytest.skip("../shared/data is absent: the real-data check needs it (CI has it)")
    ds = Dataset("dynamic_binarized_mnist", shared_data)
    a, b, c = ds.train_epoch(1, 0), ds.train_epoch(1, 0), ds.train_epoch(2, 0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(ds.split("test"), ds.split("test"))
    assert abs(float(a.mean()) - float(Dataset("mnist", shared_data).split("train").mean()) / 255) < 2e-3


def test_binarize_draws_each_grey_level_with_probability_level_over_255() -> None:
    """P(pixel = 1) = k / 255 for every level k (within 5 standard errors over 4,000 draws a level): 0 and 255
    are deterministic; a bound of 256 or a <= instead of < would shift every level by about 1/255."""
    levels = torch.arange(256.0).repeat(4000, 1)
    freq = binarize(levels, 3).mean(0).double()
    p = torch.arange(256.0).double() / 255
    assert freq[0] == 0 and freq[255] == 1
    assert bool(((freq - p).abs() <= 5 * (p * (1 - p) / 4000).sqrt() + 1e-12).all())
    assert abs(float((freq - p).mean())) < 1e-3  # 2.5 standard errors; an off-by-one bound shifts it by >= 1.9e-3
    assert torch.equal(binarize(levels, 3), binarize(levels, 3)) and not torch.equal(binarize(levels, 3),
                                                                                     binarize(levels, 4))


def test_synthetic_files_load_through_the_whole_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written in the real formats (gzip and plain) are found, verified and split as the conventions say."""
    import hashlib

    from data import binarized_mnist, idx_mnist

    rng = np.random.default_rng(1)
    folder = tmp_path / "BinarizedMNIST"
    folder.mkdir()
    rows = rng.integers(0, 2, size=(5, 784))
    text = ("\n".join(" ".join(map(str, r)) for r in rows) + "\n").encode()
    (folder / "binarized_mnist_test.amat.gz").write_bytes(gzip.compress(text))
    monkeypatch.setitem(binarized_mnist.MD5, "test", hashlib.md5(text).hexdigest())
    x = Dataset("binarized_mnist", tmp_path).split("test")
    assert x.shape == (5, 1, 28, 28) and torch.equal(x.flatten(1), torch.from_numpy(rows).float())

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = rng.integers(0, 256, size=(50003, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50003, dtype=np.uint8)
    for stem, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        content = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
        content += array.tobytes()
        (raw / stem).write_bytes(content)
        monkeypatch.setitem(idx_mnist.MD5["mnist"], stem, hashlib.md5(content).hexdigest())
    ds = Dataset("mnist", tmp_path)
    assert ds.split("train").shape[0] == 50000 and ds.split("val").shape[0] == 3
    assert torch.equal(ds.split("val")[:, 0], torch.from_numpy(images[50000:]).float())
    assert torch.equal(ds.labels("val"), torch.from_numpy(labels[50000:]).long())
