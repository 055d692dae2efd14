"""Helpers shared by the autoregressive-model tests: tiny models and their dependency pattern by autograd."""
from __future__ import annotations

import torch

import models  # noqa: F401  (fills the registry)
from core.config import build_config
from data.specs import DATASETS, DatasetSpec
from models.registry import model_spec

#: small but complete networks (every layer kind present), fast enough for exhaustive checks
SMALL: dict[str, dict] = {
    "causal_conv1d": dict(channels=8, layers=3, output_channels=16),
    "pixelcnn": dict(channels=8, residual_blocks=2, output_channels=16),
    "gated_pixelcnn": dict(channels=8, layers=2, output_channels=16),
}
ARMS = tuple(SMALL)


def build(name: str, spec: DatasetSpec | str = "digits", *, dtype: torch.dtype = torch.float64, seed: int = 0,
          **options) -> torch.nn.Module:
    """A registered ARM with SMALL options overridden by ``options``, through the config's validation."""
    torch.manual_seed(seed)
    spec = DATASETS[spec] if isinstance(spec, str) else spec
    registered = model_spec(name)
    config = build_config(registered.config_cls, {**SMALL[name], **options})
    return registered.build(config, spec).to(dtype).eval()


def dependency(model: torch.nn.Module, y: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """J (D, D) boolean: J[i, j] is True when the parameters of pixel i (raster order) have a non-zero
    gradient with respect to input pixel j, at a random input; a random projection of pixel i's
    parameters keeps channels from cancelling."""
    g = torch.Generator().manual_seed(seed)
    _, height, width = model.spec.shape
    dim = height * width
    x = (torch.rand(1, 1, height, width, generator=g, dtype=torch.float64) * (model.spec.levels - 1)).requires_grad_()
    params = model(x, y)  # (1, P, H, W)
    weights = torch.randn(params.shape[1], generator=g, dtype=torch.float64)
    flat = (params[0] * weights[:, None, None]).sum(0).flatten()
    rows = [torch.autograd.grad(flat[i], x, retain_graph=True)[0].flatten() != 0 for i in range(dim)]
    return torch.stack(rows)


def offsets_to_mask(offsets: set[tuple[int, int]], height: int, width: int) -> torch.Tensor:
    """(D, D) boolean: pixel i depends on pixel j iff j - i (as a (row, column) offset) is in ``offsets``."""
    dim = height * width
    mask = torch.zeros(dim, dim, dtype=torch.bool)
    for i in range(dim):
        r, c = divmod(i, width)
        for dr, dc in offsets:
            if 0 <= r + dr < height and 0 <= c + dc < width:
                mask[i, (r + dr) * width + c + dc] = True
    return mask
