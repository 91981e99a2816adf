"""The collector's young-generation threshold is a setting, applied by every serving process."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.platform.gc_policy import OLDER_GENERATIONS_EVERY, apply_gc_policy
from services.platform.settings import Settings


@pytest.fixture(autouse=True)
def restore_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_setting_becomes_the_young_generation_threshold() -> None:
    apply_gc_policy(Settings.model_construct(gc_gen0_threshold=12_345))
    assert gc.get_threshold() == (12_345, *OLDER_GENERATIONS_EVERY)


def test_the_default_is_far_above_cpythons_700() -> None:
    assert Settings.model_fields["gc_gen0_threshold"].default == 50_000
    with pytest.raises(ValueError, match="gc_gen0_threshold"):
        Settings(gc_gen0_threshold=10)
