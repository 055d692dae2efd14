"""Figures shared by training, evaluation and notebooks (matplotlib, PNG files).

Figures are ``matplotlib.figure.Figure`` objects saved directly (their canvas renders PNG without pyplot),
so importing this module never switches matplotlib's backend: a notebook keeps its inline backend and
shows its own plots, and a headless machine needs no display.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from core.paths import display_path


def image_grid(images: torch.Tensor, levels: int, nrow: int | None = None, pad: int = 1) -> torch.Tensor:
    """Tile images (N, C, H, W) on the data scale 0..levels-1 into one (H', W') or (H', W', 3) array in [0, 1]."""
    images = images.detach().float().cpu() / max(levels - 1, 1)
    n, c, h, w = images.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol = int(math.ceil(n / nrow))
    grid = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
    grid = grid.clamp(0, 1)
    return grid[0] if c == 1 else grid.permute(1, 2, 0)


#: readable at the saved size: a grid of images is at least this many pixels on its short side ...
MIN_GRID_SIDE_PX = 600
#: ... one row of images (an interpolation) at least this wide and this high ...
MIN_ROW_WIDTH_PX, MIN_ROW_HEIGHT_PX = 800, 100
#: ... each image at least this many pixels high, unless the figure would exceed MAX_SIDE_PX
MIN_IMAGE_PX, MAX_SIDE_PX = 40, 2400
DPI = 100
TITLE_FONT_PT = 11


def run_label(model: str, run_dir: str | Path) -> str:
    """What a figure title says about its run: ``vae (run runs/demo/vae)``."""
    return f"{model} (run {display_path(run_dir)})"


def grid_scale(grid_shape: tuple[int, int], rows: int, image_height: int) -> int:
    """Screen pixels per image pixel (an integer: nearest-neighbour pixels stay square) for a grid of
    ``rows`` rows of images ``image_height`` high tiled into ``grid_shape``: :data:`MIN_GRID_SIDE_PX` on
    the short side (one row: :data:`MIN_ROW_WIDTH_PX` by :data:`MIN_ROW_HEIGHT_PX`) and
    :data:`MIN_IMAGE_PX` per image, at most :data:`MAX_SIDE_PX` on the long side."""
    height, width = grid_shape
    if rows > 1:
        wanted = MIN_GRID_SIDE_PX / min(height, width)
    else:
        wanted = max(MIN_ROW_WIDTH_PX / width, MIN_ROW_HEIGHT_PX / height)
    wanted = max(wanted, MIN_IMAGE_PX / image_height)
    return max(1, min(math.ceil(wanted), MAX_SIDE_PX // max(height, width)))


def save_image_grid(images: torch.Tensor, levels: int, path: Path, title: str | None = None,
                    nrow: int | None = None) -> None:
    """Write a grid of images (``nrow`` a row) as a PNG in grey levels, sized by :func:`grid_scale`, with
    ``title`` (wrapped to the width) above it."""
    grid = image_grid(images, levels, nrow)
    n, _, h, _ = images.shape
    per_row = nrow or int(math.ceil(math.sqrt(n)))
    scale = grid_scale((grid.shape[0], grid.shape[1]), int(math.ceil(n / per_row)), h)
    width_px, image_px = grid.shape[1] * scale, grid.shape[0] * scale
    lines = textwrap.wrap(title, max(20, int(width_px / (0.6 * TITLE_FONT_PT * DPI / 72)))) if title else []
    title_px = int(len(lines) * 1.5 * TITLE_FONT_PT * DPI / 72) + (12 if lines else 0)
    fig = Figure(figsize=(width_px / DPI, (image_px + title_px) / DPI), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, image_px / (image_px + title_px)))
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ax.axis("off")
    if lines:
        fig.text(0.5, 1 - 6 / (image_px + title_px), "\n".join(lines), ha="center", va="top", fontsize=TITLE_FONT_PT)
    fig.savefig(path, dpi=DPI)


def save_curves(epochs: Sequence[float], series: dict[str, Sequence[float]], ylabel: str, path: Path,
                title: str | None = None) -> None:
    """Line plot of several per-epoch series (e.g. train and validation objective)."""
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for label, values in series.items():
        ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def manifold_latents(steps: int = 20, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """Grid of 2-D latents z = Phi^{-1}(u) for u on an even grid in [low, high]^2 (Kingma & Welling fig. 4b)."""
    u = torch.linspace(low, high, steps, dtype=torch.float64)
    z = torch.distributions.Normal(0.0, 1.0).icdf(u)
    zy, zx = torch.meshgrid(z.flip(0), z, indexing="ij")
    return torch.stack([zx, zy], dim=-1).reshape(-1, 2).float()


# ---- evaluation figures (python -m evaluation.compare, notebooks) -------------------------------------------
ESTIMATOR_STYLE = {
    "naive_monte_carlo": ("naive Monte Carlo (prior)", "tab:red", "v"),
    "elbo": ("ELBO", "tab:blue", "s"),
    "importance_sampled": ("importance sampled (IWAE)", "tab:green", "o"),
    "exact": ("exact", "black", None),
}


def _panels(n: int, width: float = 4.2, height: float = 3.4, sharex: bool = False) -> tuple[Figure, list[Axes]]:
    """Up to three panels a row; ``sharex`` where every panel shows the same quantity on the same scale."""
    cols = min(n, 3)
    rows = int(math.ceil(n / cols))
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=sharex)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _finish(fig: Figure, path: Path, title: str | None) -> None:
    """Figure title (the set of runs), layout, PNG at 100 dpi."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save_estimates_vs_k(panels: dict[str, dict[str, list[tuple[float, ...]]]], path: Path,
                        ylabel: str = "NLL (nats per example)", title: str | None = None,
                        khat_limit: float = 0.7) -> None:
    """One panel per run: estimate against K (log axis) per estimator, with +-1 standard error bars.

    ``panels[title][estimator] = [(K, value, se), ...]`` or ``(K, value, se, khat_mean)``: points whose mean k-hat
    exceeds ``khat_limit`` (not converged) are drawn hollow. The ``exact`` estimator (K-independent) is a
    horizontal reference line, not a curve. Every panel has the same K axis and a linear value axis; estimators
    keep one colour, marker and legend order throughout."""
    fig, axes = _panels(len(panels))
    ks_all = [p[0] for series in panels.values() for name, points in series.items() if name != "exact"
              for p in points] or [1, 10]
    k_low, k_high = min(ks_all), max(ks_all)
    k_limits = (k_low / 1.5, k_high * 1.5) if k_high > k_low else (k_low / 3, k_low * 3)
    order = list(ESTIMATOR_STYLE)
    hollow_used = False
    for ax, (panel_title, series) in zip(axes, panels.items()):
        for name in sorted(series, key=lambda n: order.index(n) if n in order else len(order)):
            label, colour, marker = ESTIMATOR_STYLE.get(name, (name, None, "o"))
            points = sorted(series[name])
            if name == "exact":
                ax.axhline(points[0][1], color=colour, ls="--", lw=1.2, label=f"{label} (reference)")
                continue
            ks, values, ses = [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]
            line = ax.errorbar(ks, values, yerr=ses, color=colour, marker=marker, ms=5, capsize=2, label=label)
            bad = [i for i, p in enumerate(points) if len(p) > 3 and p[3] is not None and p[3] > khat_limit]
            if bad:
                hollow_used = True
                ax.plot([ks[i] for i in bad], [values[i] for i in bad], ls="none", marker=marker or "o", ms=7,
                        mfc="white", mec=line[0].get_color(), zorder=3)
        ax.set_xscale("log")
        ax.set_xlim(*k_limits)
        if set(series) == {"exact"}:  # a reference line alone: a window around it
            value = series["exact"][0][1]
            ax.set_ylim(value - max(1.0, 0.05 * abs(value)), value + max(1.0, 0.05 * abs(value)))
        ax.set_xlabel("K (samples per example)")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if hollow_used:
        title = f"{title}\n" if title else ""
        title += f"hollow markers: not converged (mean Pareto k-hat > {khat_limit})"
    _finish(fig, path, title)


def save_khat_histograms(panels: dict[str, dict[str, Sequence[float]]], path: Path, clip: float = 2.0,
                         title: str | None = None) -> None:
    """One panel per run: histogram of per-example Pareto k-hat per estimator; 0.5 and 0.7 marked.
    Values above ``clip`` (naive MC reaches k-hat ~ 30) are counted in the last bin."""
    fig, axes = _panels(len(panels), sharex=True)
    bins = [-0.5 + i * (clip + 0.5) / 50 for i in range(51)]
    for ax, (panel_title, series) in zip(axes, panels.items()):
        for name, values in series.items():
            label, colour, _ = ESTIMATOR_STYLE.get(name.split(" ")[0], (name, None, None))
            kept = [min(max(v, -0.5), clip) for v in values if not math.isnan(v)]
            above = sum(v > 0.7 for v in kept)
            ax.hist(kept, bins=bins, alpha=0.6, color=colour,
                    label=f"{name}: {above}/{len(kept)} above 0.7")
        for level, style in ((0.5, ":"), (0.7, "--")):
            ax.axvline(level, color="grey", ls=style, lw=1)
        ax.set_xlabel(f"Pareto k-hat (> 0.7: unreliable; > {clip:g} shown at {clip:g})")
        ax.set_ylabel("examples")
        ax.set_title(panel_title, fontsize=9)
        ax.legend(fontsize=7)
    _finish(fig, path, title)


def save_gap_histograms(panels: dict[str, Sequence[float]], path: Path, title: str | None = None) -> None:
    """One panel per run: histogram over examples of the gap IS - ELBO (nats) at the same K (one x axis)."""
    fig, axes = _panels(len(panels), sharex=True)
    for ax, (panel_title, gaps) in zip(axes, panels.items()):
        gaps = [g for g in gaps if math.isfinite(g)]
        ax.hist(gaps, bins=30, color="tab:purple", alpha=0.8)
        mean = sum(gaps) / max(len(gaps), 1)
        ax.axvline(mean, color="black", ls="--", lw=1, label=f"mean {mean:.2f} nats")
        ax.set_xlabel("IS - ELBO per example (nats)")
        ax.set_ylabel("examples")
        ax.set_title(panel_title, fontsize=9)
        ax.legend(fontsize=7)
    _finish(fig, path, title)


def save_sample_grids(panels: dict[str, tuple[torch.Tensor, int]], path: Path, title: str | None = None,
                      columns: int = 4) -> None:
    """One panel per entry: ``panels[title] = (images (N, C, H, W) on the data scale, levels)`` as a grid (the
    model's samples next to real data), up to ``columns`` panels a row, each 2.8 inches wide."""
    cols = min(len(panels), columns)
    rows = int(math.ceil(len(panels) / cols))
    fig = Figure(figsize=(2.8 * cols, 3.0 * rows + (0.4 if title else 0)))
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes:
        ax.axis("off")
    for ax, (panel_title, (images, levels)) in zip(axes, panels.items()):
        ax.imshow(image_grid(images, levels).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(panel_title, fontsize=9)
    _finish(fig, path, title)
