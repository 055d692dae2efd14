"""Every registered model family passes the generic story checks and names a registered trainer."""
from __future__ import annotations

import pytest

from inference.training.trainers import TRAINERS
from models.registry import MODELS
from tests.models.story_harness import build_example, check_story


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_family_is_a_story(name: str) -> None:
    story, data = build_example(MODELS[name])
    check_story(story, data)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_family_names_a_registered_trainer(name: str) -> None:
    assert MODELS[name].trainer in TRAINERS
