"""The figures a training run saves say what they show and are readable at their saved size.

Every PNG of a tiny VAE, flow and GAN run carries a title naming the model and its run
(``vae (run RUN_DIR): ...``), and is at least so many pixels: an image grid
``core.plots.MIN_GRID_SIDE_PX`` on its short side, one row of images (an interpolation)
``MIN_ROW_WIDTH_PX`` by ``MIN_ROW_HEIGHT_PX``, a chart 600 by 400. Titles are recorded as each
figure is saved (``Figure.savefig`` wrapped); sizes are read back from the files.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest
import torch
from matplotlib.figure import Figure

from core.errors import run_cli
from core.plots import MIN_GRID_SIDE_PX, MIN_ROW_HEIGHT_PX, MIN_ROW_WIDTH_PX, save_image_grid
from inference.train import main as train_main

RUNS = {
    "vae": ["--dataset", "binarized_digits", "--hidden", "32", "--latent-dim", "2", "--batch-size", "100"],
    "flow": ["--dataset", "binarized_digits", "--arch", "realnvp_mlp", "--num-layers", "2", "--hidden", "32",
             "--batch-size", "100"],
    "gan": ["--dataset", "digits", "--arch", "mlp", "--hidden", "32", "--latent-dim", "4", "--val-samples", "100",
            "--batch-size", "256"],
}
#: figures of images: grids, and single rows
GRIDS = ("samples_epoch_", "manifold.png", "samples_temperatures.png")
ROWS = ("interpolation.png",)


def figure_texts(fig: Figure) -> list[str]:
    texts = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:  # type: ignore[attr-defined]
        texts.append(fig._suptitle.get_text())  # type: ignore[attr-defined]
    texts += [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center", "right")]
    return [" ".join(text.split()) for text in texts]  # a wrapped title as one line


@pytest.fixture(scope="module")
def saved_figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[Path, list[str]]]:
    """model -> {png path: texts of its figure} for a 1-epoch run of each model."""
    monkeypatch = pytest.MonkeyPatch()
    recorded: dict[Path, list[str]] = {}
    original = Figure.savefig

    def savefig(self: Figure, fname: object, *args: object, **kwargs: object) -> None:
        recorded[Path(str(fname))] = figure_texts(self)
        original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    figures: dict[str, dict[Path, list[str]]] = {}
    try:
        for model, options in RUNS.items():
            out = tmp_path_factory.mktemp(model) / "run"
            with pytest.raises(SystemExit) as exit_info:
                run_cli(train_main, [model, *options, "--device", "cpu", "--epochs", "1", "--out", str(out)])
            assert not exit_info.value.code, f"{model} training failed"
            figures[model] = {p: t for p, t in recorded.items() if p.parent == out and p.suffix == ".png"}
    finally:
        monkeypatch.undo()
    return figures


def pixel_size(path: Path) -> tuple[int, int]:
    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


@pytest.mark.parametrize("model", RUNS)
def test_every_figure_names_the_model_and_its_run(model: str, saved_figures) -> None:
    figures = saved_figures[model]
    assert figures, f"the {model} run saved no figures"
    expected = {"vae": {"manifold.png", "curves.png", "samples_epoch_001.png"},
                "flow": {"samples_temperatures.png", "interpolation.png", "samples_epoch_001.png"},
                "gan": {"interpolation.png", "losses.png", "class_histogram_test.png", "samples_epoch_001.png"}}
    assert expected[model] <= {p.name for p in figures}
    for path, texts in figures.items():
        assert any(text.startswith(f"{model} (run ") and "run" in text for text in texts), (path.name, texts)


@pytest.mark.parametrize("model", RUNS)
def test_every_figure_is_readable_at_its_saved_size(model: str, saved_figures) -> None:
    for path in saved_figures[model]:
        width, height = pixel_size(path)
        if path.name.startswith(GRIDS):
            assert min(width, height) >= MIN_GRID_SIDE_PX, (path.name, width, height)
        elif path.name in ROWS:
            assert width >= MIN_ROW_WIDTH_PX and height >= MIN_ROW_HEIGHT_PX, (path.name, width, height)
        else:
            assert width >= 600 and height >= 400, (path.name, width, height)


def test_sample_grids_say_what_a_mean_is(saved_figures) -> None:
    """``sample(mean=True)`` grids are decoder means for a VAE, not "vae samples"."""
    vae = next(t for p, t in saved_figures["vae"].items() if p.name == "samples_epoch_001.png")
    assert any("decoder means E[x | z]" in text for text in vae)


def test_image_grids_scale_to_the_minimum_size(tmp_path: Path) -> None:
    for n, nrow, side, one_row in ((64, None, 8, False), (9, 9, 8, True), (400, 20, 8, False), (64, None, 28, False),
                                   (2, 2, 28, True)):
        path = tmp_path / f"{n}_{side}.png"
        save_image_grid(torch.zeros(n, 1, side, side), 2, path, title="vae (run r): a title", nrow=nrow)
        width, height = pixel_size(path)
        if one_row:
            assert width >= MIN_ROW_WIDTH_PX and height >= MIN_ROW_HEIGHT_PX, (n, width, height)
        else:
            assert min(width, height) >= MIN_GRID_SIDE_PX, (n, width, height)
