"""The seed protocol: disjoint named ranges, the defaults at their starts."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import pathlib
import sys

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


def test_committed_results_must_use_the_test_range() -> None:
    record = seeds.check_test_seeds(seeds.TEST.seeds(3, offset=10), "x")
    assert record["range"] == "test" and record["first_used"] == 1_000_010 and record["n_used"] == 3
    with pytest.raises(TestbedError, match="x: committed results evaluate on the sealed test range 1000000..1999999"):
        seeds.check_test_seeds(seeds.DEVELOPMENT.seeds(3), "x")
    with pytest.raises(TestbedError, match="sealed test range"):
        seeds.check_test_seeds([], "x")


EXPERIMENTS = sorted((pathlib.Path(__file__).resolve().parent.parent / "experiments").glob("*.py"))


@pytest.mark.parametrize("script", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_evaluates_on_the_test_range(script: pathlib.Path) -> None:
    """Each script's evaluation-seed defaults lie in the sealed test range, and the script
    checks the seeds it evaluates on (so a user's --eval-seed in another range is refused)."""
    spec = importlib.util.spec_from_file_location(f"_experiment_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the class is made
    spec.loader.exec_module(module)
    fields = {f.name: f.default for f in dataclasses.fields(module.Args)}
    # The evaluation seed is ``eval_seed``, or ``seed`` in scripts that only evaluate.
    name = "eval_seed" if "eval_seed" in fields else "seed"
    defaults = {name: fields[name]} if isinstance(fields.get(name), int) else {}
    assert all(seed in seeds.TEST for seed in defaults.values()), defaults
    assert "check_test_seeds(" in script.read_text(), f"{script.name} never checks its evaluation seeds"


def _ranges(record: object) -> set[str]:
    """Every seed-range name recorded anywhere in a JSON record."""
    if isinstance(record, dict):
        found = {record["range"]} if isinstance(record.get("range"), str) else set()
        return found.union(*(_ranges(v) for v in record.values()))
    if isinstance(record, list):
        return set().union(*(_ranges(v) for v in record))
    return set()


RESULTS = pathlib.Path(__file__).resolve().parent.parent / "results"
COMMITTED = sorted(p for p in RESULTS.glob("*/*.json") if p.name in ("config.json", "render.json"))


@pytest.mark.parametrize("record", COMMITTED, ids=lambda p: p.parent.name)
def test_every_committed_result_states_the_test_range(record: pathlib.Path) -> None:
    assert "test" in _ranges(json.loads(record.read_text())), f"{record} does not record the sealed test range"


def test_the_quick_pipeline_labels_its_development_seeds() -> None:
    config = json.loads((RESULTS / "pipeline" / "highway-fast" / "config.json").read_text())
    assert config["eval_seeds"]["range"] == "development"
