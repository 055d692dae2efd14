"""The generic checks every registered model family passes (and a new one passes the moment it is
registered): what ``models.protocols.Story`` promises, checked on a few examples of a small data set."""
from __future__ import annotations

import pyro.poutine as poutine
import torch

from core.config import build_config
from core.errors import DGMError
from data.specs import DATASETS, DatasetSpec
from models.protocols import DATA_PLATE, Story
from models.registry import ModelSpec

#: the small data sets a family is tried on, in order (binary first: every likelihood takes it)
CANDIDATES = ("binarized_digits", "digits")


def build_example(spec: ModelSpec) -> tuple[Story, DatasetSpec]:
    """The family built with its example options on the first candidate data set it accepts."""
    config = build_config(spec.config_cls, spec.example_options)
    errors = []
    for name in CANDIDATES:
        try:
            return spec.build(config, DATASETS[name]), DATASETS[name]
        except DGMError as exc:
            errors.append(str(exc))
    raise AssertionError(f"{spec.name} accepts none of {CANDIDATES}: {errors}")


def examples(data: DatasetSpec, n: int = 5, seed: int = 0) -> torch.Tensor:
    """n random images (n, C, H, W) of integer levels of ``data``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, data.levels, (n, *data.shape), generator=generator).float()


def check_story(story: Story, data: DatasetSpec) -> None:
    """The Story protocol, on 5 random images: every sample site of model and guide is inside the data
    plate with one entry per example; samples are images of the data's levels; data outside the levels
    are refused with a one-line DGMError."""
    assert isinstance(story, Story), f"{type(story).__name__} lacks part of models.protocols.Story"
    x = examples(data)
    with torch.no_grad():
        guide_trace = poutine.trace(story.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(story.model, trace=guide_trace)).get_trace(x)
    for trace in (guide_trace, model_trace):
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or name == DATA_PLATE:
                continue
            frames = [f for f in site["cond_indep_stack"] if f.name == DATA_PLATE]
            assert frames and frames[0].size == x.shape[0], f"site {name!r} is not in pyro.plate({DATA_PLATE!r}, N)"
    assert any(site["is_observed"] for site in model_trace.nodes.values() if site["type"] == "sample")
    has_latents = any(not s["is_observed"] for n, s in model_trace.nodes.items() if s["type"] == "sample"
                      and n != DATA_PLATE)
    assert story.has_latents == has_latents or story.has_latents, "has_latents says no latents, the trace has some"
    story.eval()
    samples = story.sample(3)
    assert samples.shape == (3, *data.shape)
    assert samples.min() >= 0 and samples.max() <= data.levels - 1 and torch.equal(samples, samples.round())
    bad = x.clone()
    bad[0, 0, 0, 0] = data.levels  # one pixel beyond the last level
    try:
        story.check_data(bad)
    except DGMError as exc:
        assert "\n" not in str(exc)
    else:
        raise AssertionError("check_data accepted a pixel beyond the last level")
