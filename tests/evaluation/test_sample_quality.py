"""Sample-quality metrics: FD and KID against closed forms and brute force, class statistics, the classifier,
the floor, and the command line."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import DGMError
from data import load_dataset
from evaluation.classifier import (classifier_path, get_classifier, load_classifier, save_classifier,
                                   train_classifier)
from evaluation.sample_quality import (FeatureReference, class_statistics, floor_sample_quality, frechet_distance,
                                       frechet_distance_from_stats, kernel_distance, main, mmd2_unbiased,
                                       model_sample_quality)
from tests.conftest import cli


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("classifiers")
    save_classifier(train_classifier("digits", epochs=30, progress=False), classifier_path("digits", folder))
    return folder


@pytest.fixture(scope="module")
def classifier(classifier_folder: Path):
    return load_classifier(classifier_path("digits", classifier_folder))


# ---- distances ---------------------------------------------------------------------------------------
def test_frechet_distance_matches_the_closed_form_with_scipy_sqrtm() -> None:
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    cov_a, cov_b = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * sqrtm(cov_a @ cov_b).real)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    assert frechet_distance_from_stats(t(mu_a), t(cov_a), t(mu_b), t(cov_b)) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_a_shift_is_its_squared_length() -> None:
    torch.manual_seed(0)
    a = torch.randn(500, 4, dtype=torch.float64) @ torch.randn(4, 4, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.pow(2).sum()), rel=1e-6)


def test_unbiased_mmd_equals_brute_force_sums() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64) + 0.5
    k = lambda u, v: (float(u @ v) / 3 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(5), 2)) / 20
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(4), 2)) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_is_unbiased_for_one_distribution_and_positive_for_two() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(2000, 8), torch.randn(2000, 8)
    same, same_se, blocks = kernel_distance(a, b, torch.Generator().manual_seed(0))
    assert blocks == 10 and abs(same) < 4 * same_se  # zero within its standard error
    shifted, shifted_se, _ = kernel_distance(a, b + 0.5, torch.Generator().manual_seed(0))
    assert shifted > 10 * shifted_se


class StubClassifier:
    """Features are the images themselves (flattened); probabilities are uniform."""

    def features_and_probs(self, x: torch.Tensor, levels: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        return x.flatten(1).double(), torch.full((x.shape[0], 10), 0.1, dtype=torch.float64)


def test_kid_does_not_depend_on_the_scale_of_the_features() -> None:
    """KID's kernel sees features divided by the real features' root mean square: scaling both sets changes nothing,
    while FD scales with the square of the factor."""
    torch.manual_seed(0)
    real, fake = torch.randn(400, 1, 2, 3), torch.randn(400, 1, 2, 3) * 1.5 + 0.3
    scores = [FeatureReference.of(StubClassifier(), real * c, 2).score(fake * c, bootstrap=0) for c in (1.0, 1000.0)]
    assert scores[1]["kid"] == pytest.approx(scores[0]["kid"], rel=1e-6)  # float32 images: rounding only
    assert scores[1]["fd"] == pytest.approx(scores[0]["fd"] * 1e6, rel=1e-6)
    assert scores[0]["kid"] > 3 * scores[0]["kid_se"]  # different distributions: clearly positive


def test_class_statistics_show_mode_collapse() -> None:
    uniform = torch.eye(10).repeat(3, 1)
    stats = class_statistics(uniform, torch.full((10,), 0.1, dtype=torch.float64))
    assert stats["class_entropy"] == pytest.approx(math.log(10))
    assert stats["class_tv"] == pytest.approx(0.0) and stats["mean_confidence"] == pytest.approx(1.0)
    collapsed = class_statistics(torch.eye(10)[[3] * 30], torch.full((10,), 0.1, dtype=torch.float64))
    assert collapsed["class_entropy"] == 0.0 and collapsed["class_histogram"][3] == 1.0
    assert collapsed["class_tv"] == pytest.approx(0.9)


# ---- the classifier ---------------------------------------------------------------------------------
def test_digits_classifier_is_accurate_on_both_representations(classifier) -> None:
    assert classifier.info["test_accuracy"] > 0.95
    assert classifier.info["test_accuracy_binarized"] > 0.85
    state = torch.load(classifier.path, weights_only=True)  # a plain dict
    assert state["family"] == "digits" and "model_state" in state


def test_get_classifier_loads_from_the_cache_and_refuses_foreign_files(classifier_folder: Path,
                                                                       tmp_path: Path) -> None:
    assert get_classifier("binarized_digits", classifier_folder).family == "digits"
    with pytest.raises(DGMError, match="no mnist classifier .*python -m evaluation.classifier --dataset mnist"):
        get_classifier("binarized_mnist", tmp_path, train_if_missing=False)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(DGMError, match="not a feature-classifier checkpoint"):
        load_classifier(foreign)
    with pytest.raises(DGMError, match="no feature classifier for data set 'cifar10'"):
        get_classifier("cifar10", tmp_path)


def test_training_a_missing_classifier_is_announced_with_its_expected_time(classifier_folder: Path, tmp_path: Path,
                                                                          monkeypatch, capsys) -> None:
    """The one-off training is never hidden work: a line says what it is and about how long it takes."""
    import evaluation.classifier as module
    from evaluation.classifier import EXPECTED_SECONDS, has_classifier

    trained = load_classifier(classifier_path("digits", classifier_folder))
    monkeypatch.setattr(module, "train_classifier", lambda family, data_dir=None, progress=True: trained)
    assert not has_classifier("digits", tmp_path)
    assert get_classifier("digits", tmp_path).family == "digits"
    out = capsys.readouterr().out
    assert (f"training the feature classifier for sample quality (one-off, ~{EXPECTED_SECONDS['digits']} s;"
            in out.splitlines()[0]) and out.splitlines()[0].endswith(" ...")
    assert has_classifier("digits", tmp_path)
    get_classifier("digits", tmp_path)  # cached: nothing more to say
    assert capsys.readouterr().out == ""


# ---- the floor and models ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["digits", "binarized_digits"])
def test_floor_is_far_below_noise_images(name: str, classifier) -> None:
    """Real training images against real test images, in the same representation, against uniform noise."""
    data = load_dataset(name)
    floor = floor_sample_quality(data, classifier=classifier, bootstrap=5)
    ref = FeatureReference.of(classifier, data.split("test"), data.spec.levels)
    noise = torch.randint(0, data.spec.levels, (250, 1, 8, 8), generator=torch.Generator().manual_seed(0)).float()
    bad = ref.score(noise, bootstrap=5)
    assert floor["n"] == 250 and floor["fd"] < bad["fd"] / 10
    assert floor["kid"] < bad["kid"] / 10
    assert floor["class_entropy"] > 2.0 and floor["class_tv"] < 0.15  # all ten digits, in test proportions


def test_model_sample_quality_draws_model_samples_with_a_fixed_seed(classifier) -> None:
    from data.specs import DATASETS
    from models.gan import GAN, GANConfig

    data = load_dataset("digits")
    gan = GAN(GANConfig(arch="mlp", latent_dim=3, hidden=(8,)), DATASETS["digits"])
    first = model_sample_quality(gan, data, n=100, classifier=classifier, bootstrap=0)
    again = model_sample_quality(gan, data, n=100, classifier=classifier, bootstrap=0)
    assert first == again and first["n"] == 100 and gan.training  # the mode is restored


def test_command_line_prints_the_floor_table(classifier_folder: Path, capsys) -> None:
    code, out, _ = cli(main, ["--dataset", "binarized_digits", "--classifier-dir", classifier_folder,
                              "--bootstrap", "2"], capsys)
    assert code == 0
    assert out.splitlines()[0].startswith("| source | data set | n | FD | KID")
    assert "| floor: real train images | binarized_digits | 250 |" in out


def test_command_line_errors(capsys, tmp_path: Path) -> None:
    code, _, err = cli(main, [], capsys)
    assert code == 2 and err.startswith("error: give run directories")
    code, _, err = cli(main, [tmp_path], capsys)
    assert code == 2 and "not a run directory" in err and err.count("\n") == 1
