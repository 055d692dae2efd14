"""Causality by autograd, for every model, mask and depth: the parameters of pixel i depend on no input
pixel at or after i (raster order). Where the architecture fixes the receptive field exactly (the 1-D
model, the gated PixelCNN), the dependency pattern must equal it: no gap, hence no blind spot."""
from __future__ import annotations

import pytest
import torch

from models.arm.masked_conv import pixelcnn_mask
from tests.models.arm.arm_testing import build, dependency, offsets_to_mask

CAUSAL_CONV1D = [dict(layers=1, kernel=2, first_kernel=1, dilation_cycle=1), dict(layers=3, kernel=2, first_kernel=2),
                 dict(layers=4, kernel=3, first_kernel=3, dilation_cycle=2), dict(layers=6)]
PIXELCNN = [dict(residual_blocks=0, first_kernel=3), dict(residual_blocks=1, first_kernel=7),
            dict(residual_blocks=3, first_kernel=5, kernel=3), dict(residual_blocks=2, first_kernel=3, kernel=1),
            dict(residual_blocks=2, first_kernel=3, kernel=5, likelihood="logistic_mixture")]
GATED = [dict(layers=1, first_kernel=3), dict(layers=2, first_kernel=3, kernel=3), dict(layers=3, first_kernel=5),
         dict(layers=2, first_kernel=3, kernel=5, likelihood="logistic_mixture"), dict(layers=2, num_classes=3)]


def assert_causal(deps: torch.Tensor) -> None:
    """No pixel depends on itself or on a later pixel: the dependency matrix is strictly lower triangular."""
    assert not deps.triu().any(), "a pixel depends on itself or a later pixel"


@pytest.mark.parametrize("options", CAUSAL_CONV1D, ids=str)
def test_causal_conv1d_sees_exactly_its_window(options):
    model = build("causal_conv1d", **options)
    deps = dependency(model)
    assert_causal(deps)
    i, j = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    expected = (i - j >= 1) & (i - j <= model.receptive_field)  # x_{t-R} .. x_{t-1}
    assert torch.equal(deps, expected)


def _sumset(*sets: set[tuple[int, int]]) -> set[tuple[int, int]]:
    total = {(0, 0)}
    for s in sets:
        total = {(a + c, b + d) for a, b in total for c, d in s}
    return total


def _pixelcnn_reach(first_kernel: int, kernel: int, blocks: int) -> set[tuple[int, int]]:
    """Offsets the stacked masks can reach: taps(A) + B x taps(B) (the residual path adds the (0, 0) tap B has)."""
    def taps(k: int, t: str) -> set[tuple[int, int]]:
        return {(j - k // 2, i - k // 2) for j, i in pixelcnn_mask(k, t).nonzero().tolist()}

    return _sumset(taps(first_kernel, "A"), *[taps(kernel, "B")] * blocks)


@pytest.mark.parametrize("options", PIXELCNN, ids=str)
def test_pixelcnn_is_causal_within_its_masks_reach(options):
    model = build("pixelcnn", **options)
    deps = dependency(model)
    assert_causal(deps)
    cfg = model.config
    reach = offsets_to_mask(_pixelcnn_reach(cfg.first_kernel, cfg.kernel, cfg.residual_blocks), 8, 8)
    first = offsets_to_mask(_pixelcnn_reach(cfg.first_kernel, 1, 0), 8, 8)
    assert not (deps & ~reach).any(), "depends on a pixel the stacked masks cannot reach"
    assert torch.equal(deps & first, first), "misses a pixel the first layer reads (dead network?)"
    if cfg.residual_blocks == 0:
        assert torch.equal(deps, reach)


def _gated_window(radius: int) -> set[tuple[int, int]]:
    """Rows r-R..r-1 at columns c-R..c+R, and row r at columns c-R..c-1 (module docstring of gated_pixelcnn)."""
    above = {(dr, dc) for dr in range(-radius, 0) for dc in range(-radius, radius + 1)}
    return above | {(0, dc) for dc in range(-radius, 0)}


@pytest.mark.parametrize("options", GATED, ids=str)
def test_gated_pixelcnn_sees_its_whole_receptive_field(options):
    model = build("gated_pixelcnn", **options)
    y = torch.tensor([2]) if model.num_classes else None
    deps = dependency(model, y)
    assert_causal(deps)
    assert torch.equal(deps, offsets_to_mask(_gated_window(model.receptive_radius), 8, 8))


def test_pixelcnn_has_the_blind_spot_that_the_gated_stacks_remove():
    """Same depth and kernels: pixel (4, 3) of the PixelCNN never sees (3, 5), up and to the right,
    although that pixel lies inside its receptive-field rectangle; the gated PixelCNN sees it."""
    pixel, blind = 4 * 8 + 3, 3 * 8 + 5
    pixelcnn = build("pixelcnn", residual_blocks=2, first_kernel=3, kernel=3)
    gated = build("gated_pixelcnn", layers=3, first_kernel=3, kernel=3)
    assert not dependency(pixelcnn)[pixel, blind]
    assert dependency(pixelcnn)[pixel, 2 * 8 + 5]  # two rows up, same column offset: reached
    assert dependency(gated)[pixel, blind]
