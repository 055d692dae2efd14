"""Each masked, shifted convolution reads exactly the pixels it declares, and its cache reproduces it."""
from __future__ import annotations

import pytest
import torch

from core.errors import DGMError
from models.arm.masked_conv import MaskedConv2d, pixelcnn_mask
from tests.models.arm.arm_testing import offsets_to_mask


def _layers() -> dict[str, tuple[MaskedConv2d, str]]:
    """name -> (layer, its causality) for every kind of layer the ARMs use. "pixel <" / "pixel <=": reads only
    pixels before (or at) the output in raster order; "row <" / "row <=": reads only rows above (or at) the
    output's row, any column (the vertical stack, whose features at row r the sampler computes per row)."""
    def pcnn(k: int, t: str) -> MaskedConv2d:
        return MaskedConv2d(1, 1, (k, k), (-(k // 2), -(k // 2)), pixelcnn_mask(k, t))

    return {
        "mask A 3x3": (pcnn(3, "A"), "pixel <"), "mask A 7x7": (pcnn(7, "A"), "pixel <"),
        "mask B 1x1": (pcnn(1, "B"), "pixel <="), "mask B 3x3": (pcnn(3, "B"), "pixel <="),
        "mask B 5x5": (pcnn(5, "B"), "pixel <="),
        "vertical first k=5": (MaskedConv2d(1, 1, (2, 5), (-2, -2)), "row <"),
        "vertical k=3": (MaskedConv2d(1, 1, (2, 3), (-1, -1)), "row <="),
        "horizontal first k=5": (MaskedConv2d(1, 1, (1, 2), (0, -2)), "pixel <"),
        "horizontal k=3": (MaskedConv2d(1, 1, (1, 2), (0, -1)), "pixel <="),
        "1-D first k=3": (MaskedConv2d(1, 1, (1, 3), (0, -3)), "pixel <"),
        "1-D k=2 dilation 4": (MaskedConv2d(1, 1, (1, 2), (0, -4), dilation=(1, 4)), "pixel <="),
        "1-D k=3 dilation 2": (MaskedConv2d(1, 1, (1, 3), (0, -4), dilation=(1, 2)), "pixel <="),
    }


LAYERS = _layers()


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_reads_exactly_its_taps(name):
    torch.manual_seed(0)
    layer, causality = LAYERS[name]
    layer = layer.double()
    with torch.no_grad():
        layer.conv.weight.normal_()
    height, width = (1, 20) if name.startswith("1-D") else (6, 7)
    x = torch.randn(1, 1, height, width, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape
    rows = [torch.autograd.grad(out.flatten()[i], x, retain_graph=True)[0].flatten() != 0
            for i in range(height * width)]
    taps = set(layer.taps())
    assert torch.equal(torch.stack(rows), offsets_to_mask(taps, height, width))
    before = {"pixel <": lambda dr, dc: (dr, dc) < (0, 0), "pixel <=": lambda dr, dc: (dr, dc) <= (0, 0),
              "row <": lambda dr, dc: dr < 0, "row <=": lambda dr, dc: dr <= 0}[causality]
    assert all(before(dr, dc) for dr, dc in taps)
    # the inclusive kinds do read their own pixel (row): the first layer must be the only strict one
    assert ((0, 0) in taps) == causality.endswith("<=")


def test_pixelcnn_masks():
    assert pixelcnn_mask(3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert pixelcnn_mask(3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(DGMError, match="odd kernel"):
        pixelcnn_mask(4, "A")
    with pytest.raises(DGMError, match="mask type"):
        pixelcnn_mask(3, "C")


@pytest.mark.parametrize("name", list(LAYERS))
def test_cache_reproduces_the_layer_at_pixels_and_rows(name):
    torch.manual_seed(1)
    layer = LAYERS[name][0]
    layer = MaskedConv2d(3, 4, layer.conv.kernel_size, layer.offset, layer.mask, layer.dilation).double()
    height, width = (1, 20) if name.startswith("1-D") else (6, 7)
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    with torch.no_grad():
        full = layer(x)
        cache = layer.cache(2, height, width, x)
        for r in range(height):
            cache.write_row(x[:, :, r], r)
        for r in range(height):
            assert torch.allclose(cache.row(r), full[:, :, r], atol=1e-12)
            for c in range(width):
                assert torch.allclose(cache.at(r, c), full[:, :, r, c], atol=1e-12)
