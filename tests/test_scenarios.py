"""Every shipped scenario is a valid gymnasium env; overrides are validated."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from testbed.errors import TestbedError
from testbed.scenarios import (
    Scenario,
    describe_spaces,
    get_scenario,
    make_env,
    parse_overrides,
    scenario_names,
    split_label,
)
from testbed.spaces import space_from_dict


def test_shipped_presets() -> None:
    assert {"highway-fast", "highway", "merge", "roundabout"} <= set(scenario_names())


@pytest.mark.parametrize("name", scenario_names())
def test_env_checker_and_observations_in_space(name: str) -> None:
    scenario = get_scenario(name)
    env = make_env(scenario)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    for _ in range(3):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward)
        if terminated or truncated:
            break
    env.close()


@pytest.mark.parametrize("name", scenario_names())
def test_config_is_complete_and_applied(name: str) -> None:
    scenario = get_scenario(name)
    env = make_env(scenario)
    # Every key we record is what the env runs with, and nothing is missing.
    assert set(scenario.config) == set(env.unwrapped.config)
    for key, value in scenario.config.items():
        assert env.unwrapped.config[key] == value, key


def test_merge_debug_prints_are_silenced(capsys: pytest.CaptureFixture[str]) -> None:
    env = make_env(get_scenario("merge"))
    env.reset(seed=0)
    env.step(1)
    assert capsys.readouterr().out == ""


def test_overrides_are_applied() -> None:
    scenario = get_scenario("highway-fast", parse_overrides(["vehicles_density=1.5", "lanes_count=4"]))
    env = make_env(scenario)
    assert env.unwrapped.config["vehicles_density"] == 1.5
    assert len(env.unwrapped.road.network.lanes_list()) == 4


def test_nested_override_changes_space() -> None:
    scenario = get_scenario("highway-fast", parse_overrides(["observation.vehicles_count=7"]))
    assert describe_spaces(scenario)["observation_space"]["shape"] == [7, 5]


@pytest.mark.parametrize(
    "items, fragment",
    [
        (["vehicles_densty=1.5"], "unknown config key 'vehicles_densty'"),
        (["lanes_count=two"], "expects a value like 3"),
        (["lanes_count=2.5"], "expects a value like 3"),
        (["duration=-5"], "must be > 0"),
        (["observation.vehicle_count=3"], "unknown config key 'observation.vehicle_count'"),
        (["novalue"], "key=value"),
    ],
)
def test_bad_overrides(items: list[str], fragment: str) -> None:
    with pytest.raises(TestbedError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        get_scenario("highway-fast", parse_overrides(items))


def test_unknown_key_error_lists_valid_keys() -> None:
    with pytest.raises(TestbedError) as info:
        get_scenario("highway-fast", {"vehicle_density": 2})
    assert "vehicles_density" in str(info.value)


def test_unknown_scenario() -> None:
    with pytest.raises(TestbedError, match="unknown scenario 'highwy'"):
        get_scenario("highwy")


def test_space_round_trip() -> None:
    spaces = describe_spaces(get_scenario("highway-fast"))
    env = make_env(get_scenario("highway-fast"))
    assert space_from_dict(spaces["observation_space"]) == env.observation_space
    assert space_from_dict(spaces["action_space"]) == env.action_space


def test_labelled_record_round_trips() -> None:
    """Experiments name overridden variants NAME[LABEL]; their records must load back."""
    scenario = get_scenario("highway-fast", parse_overrides(["vehicles_density=1.5"]))
    labelled = Scenario(
        name="highway-fast[dense]", env_id=scenario.env_id, config=scenario.config, max_episode_steps=1000
    )
    back = Scenario.from_dict(labelled.to_dict())
    assert back.name == "highway-fast[dense]"
    assert back.to_dict() == labelled.to_dict()
    assert split_label("highway-fast") == ("highway-fast", "")


@pytest.mark.parametrize("name", ["highway-fast[dense", "highway-fast[a][b]", "[dense]", "highway-fast[d e]"])
def test_malformed_label_is_refused(name: str) -> None:
    record = {**get_scenario("highway-fast").to_dict(), "name": name}
    with pytest.raises(TestbedError, match="NAME or NAME\\[LABEL\\]|unknown scenario"):
        Scenario.from_dict(record)


def test_null_removes_a_nested_key_and_records_round_trip() -> None:
    """A record whose observation lacks a key its preset has (roundabout's features_range)
    resolves through ``observation.KEY=null``, which leaves the class's default."""
    scenario = get_scenario("roundabout", parse_overrides(["observation.features_range=null"]))
    assert "features_range" not in scenario.config["observation"]
    assert Scenario.from_dict(scenario.to_dict()).to_dict() == scenario.to_dict()
