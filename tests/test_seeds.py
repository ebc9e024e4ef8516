"""The seed protocol: disjoint named ranges, the defaults at their starts."""

from __future__ import annotations

import itertools

import pytest

from testbed import seeds
from testbed.errors import TestbedError


def test_no_two_ranges_overlap() -> None:
    for a, b in itertools.combinations(seeds.RANGES, 2):
        assert a.stop <= b.first or b.stop <= a.first, (a.name, b.name)
    assert len({r.name for r in seeds.RANGES}) == len(seeds.RANGES)


def test_defaults_start_their_ranges() -> None:
    assert seeds.range_of(seeds.DEMO_SEED) is seeds.DEMOS
    assert seeds.range_of(seeds.DAGGER_SEED) is seeds.DAGGER
    assert seeds.range_of(seeds.EVAL_SEED) is seeds.DEVELOPMENT
    assert seeds.range_of(seeds.TUNING_SEED) is seeds.TUNING
    assert seeds.range_of(seeds.TEST_SEED) is seeds.TEST
    assert seeds.range_of(seeds.TEST.stop) is None


def test_seeds_stay_inside_their_range() -> None:
    assert seeds.TEST.seeds(3) == [1_000_000, 1_000_001, 1_000_002]
    assert seeds.DEVELOPMENT.seeds(2, offset=5) == [10_005, 10_006]
    with pytest.raises(TestbedError, match="do not fit the demonstrations range 0..4999"):
        seeds.DEMOS.seeds(10, offset=4_995)
    assert seeds.TEST.record([1, 2]) == {"range": "test", "first": 1_000_000, "last": 1_999_999, "n_used": 2}
