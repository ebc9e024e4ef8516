"""Records move between the two supported stacks (README, "The current stack"): demonstrations
made on highway-env 1.9.1 (the pinned legacy stack) train a clone on 1.12.1 (the current stack)
and the other way round, and a scenario record loads on either version when the two differ only
in keys with behaviour-neutral values; anything else is refused in one line naming the keys.

This file runs in both lanes of ``.ci/run``: each lane reads the record the other version made
(``results/pipeline/highway-fast/demos``, committed from 1.9.1; ``tests/data/demos-highway-env-1.12.1``,
made on 1.12.1 with ``testbed collect --episodes 4 --workers 1``).
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import numpy as np
import pytest

from testbed.clone_io import load_clone
from testbed.demos import load_demos
from testbed.errors import TestbedError
from testbed.scenarios import PRESETS, Scenario, get_scenario, highway_env_version, make_env
from testbed.sim import SUPPORTED_HIGHWAY_ENVS
from testbed.training import TrainConfig, save_clone, train_bc

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORDS = {
    "1.9.1": ROOT / "results" / "pipeline" / "highway-fast" / "demos",
    "1.12.1": ROOT / "tests" / "data" / "demos-highway-env-1.12.1",
}
"""Demonstration sets of highway-fast, by the highway-env version that made them."""

CURRENT = "neighbour_vehicles_connected_lanes" in get_scenario("highway-fast").config
"""Whether the installed highway-env is 1.12 (the current stack)."""


def test_both_versions_are_supported_and_one_is_installed() -> None:
    assert set(RECORDS) == set(SUPPORTED_HIGHWAY_ENVS)
    assert highway_env_version() in SUPPORTED_HIGHWAY_ENVS


@pytest.mark.parametrize("made_on", sorted(RECORDS))
def test_demonstrations_from_either_version_train_a_clone_that_drives(made_on: str, tmp_path: pathlib.Path) -> None:
    demos = load_demos(RECORDS[made_on])
    assert demos.metadata.provenance is not None
    assert demos.metadata.provenance["packages"]["highway-env"] == made_on
    config = TrainConfig(n_epochs=2, batch_size=32, seed=0)
    result = train_bc(demos, config)
    run = save_clone(tmp_path / "clone", result, demos=demos, demos_path=str(RECORDS[made_on]), config=config)
    scenario = get_scenario("highway-fast")
    policy = load_clone(run, scenario=scenario)
    env = make_env(scenario)
    try:
        obs, _ = env.reset(seed=10_000)
        for _ in range(3):
            action, _ = policy.predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = env.step(int(action))
            if terminated or truncated:
                break
    finally:
        env.close()


def test_committed_legacy_clone_loads() -> None:
    """The quick pipeline's clone (trained on 1.9.1) loads against the installed version."""
    scenario = get_scenario("highway-fast")
    policy = load_clone(ROOT / "results" / "pipeline" / "highway-fast" / "clone", scenario=scenario)
    env = make_env(scenario)
    try:
        obs, _ = env.reset(seed=10_000)
        action, _ = policy.predict(obs, deterministic=True)
        assert env.action_space.contains(int(action))
    finally:
        env.close()


def _record(name: str = "highway-fast") -> dict[str, Any]:
    return copy.deepcopy(get_scenario(name).to_dict())


def _refused(record: dict[str, Any]) -> str:
    with pytest.raises(TestbedError) as info:
        Scenario.from_dict(record)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["highway-fast", "merge", "roundabout"])
def test_records_of_either_version_resolve_to_the_installed_config(name: str) -> None:
    here = get_scenario(name).to_dict()["config"]
    legacy = _record(name)  # as highway-env 1.9.1 writes it
    legacy["config"].pop("neighbour_vehicles_connected_lanes", None)
    legacy["config"]["offscreen_rendering"] = False
    current = _record(name)  # as highway-env 1.12.1 writes it
    current["config"]["neighbour_vehicles_connected_lanes"] = False
    current["config"]["offscreen_rendering"] = True
    for record in (legacy, current):
        assert Scenario.from_dict(record).to_dict()["config"] == here


def test_connected_lane_neighbours_on_need_highway_env_1_12() -> None:
    record = _record()
    record["config"]["neighbour_vehicles_connected_lanes"] = True
    if CURRENT:  # an ordinary override there
        assert Scenario.from_dict(record).config["neighbour_vehicles_connected_lanes"] is True
    else:
        message = _refused(record)
        assert "neighbour_vehicles_connected_lanes=true" in message and "1.9.1" in message


def test_other_differences_are_refused_naming_the_keys() -> None:
    record = _record()
    del record["config"]["vehicles_density"]
    assert "config is missing keys: vehicles_density" in _refused(record)
    record = _record()
    record["config"]["lane_markings_v2"] = 1
    assert "lane_markings_v2" in _refused(record)


@pytest.mark.parametrize("name", ["merge-generic", "roundabout-generic"])
def test_highway_env_1_12_presets(name: str) -> None:
    assert PRESETS[name].min_highway_env == "1.12"
    if not CURRENT:
        with pytest.raises(TestbedError, match=r"needs highway-env >= 1\.12") as info:
            get_scenario(f"{name}-lidar")
        assert "\n" not in str(info.value)
        return
    from testbed.collect import collect

    scenario = get_scenario(name)
    assert Scenario.from_dict(scenario.to_dict()).to_dict() == scenario.to_dict()
    demos = collect(scenario, "scripted", n_episodes=2, seed=0, n_workers=1)
    assert demos.metadata.n_episodes == 2
    assert all(np.isfinite(t.rews).all() for t in demos.trajectories)
