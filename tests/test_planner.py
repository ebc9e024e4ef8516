"""The look-ahead planner expert: deterministic, leaves the real env untouched, legal actions,
and avoids a crash that driving straight on would cause."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.experts import make_expert
from testbed.experts.planner import PlannerExpert, PlannerParams
from testbed.scenarios import get_scenario, make_env

SHORT = {"duration": 6}


def _drive(scenario_name: str, seed: int, overrides: dict | None = None) -> list[int]:
    env = make_env(get_scenario(scenario_name, {**SHORT, **(overrides or {})}))
    obs, _ = env.reset(seed=seed)
    base = env.unwrapped
    expert = make_expert("planner")
    expert.reset(base, seed)
    actions, done = [], False
    while not done:
        available = set(int(a) for a in base.action_type.get_available_actions())
        action = expert.act(obs, base)
        assert action in available
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    env.close()
    return actions


def test_registered() -> None:
    expert = make_expert("planner")
    assert isinstance(expert, PlannerExpert)
    assert expert.params()["horizon"] >= 1


def test_deterministic_and_available_actions() -> None:
    first = _drive("highway-fast", 20_011, {"vehicles_count": 10})
    second = _drive("highway-fast", 20_011, {"vehicles_count": 10})
    assert first == second
    assert len(first) == SHORT["duration"]


def _state(base) -> list[tuple]:
    """The full simulator state in float64: every vehicle's pose, speed and intentions."""
    return [
        (
            *map(float, v.position),
            float(v.heading),
            float(v.speed),
            str(v.lane_index),
            str(getattr(v, "target_lane_index", None)),
            float(getattr(v, "target_speed", 0.0)),
            bool(v.crashed),
        )
        for v in base.road.vehicles
    ] + [(float(base.time), int(base.steps))]


def _scripted_rollout(scenario_name: str, seed: int, *, with_planner: bool) -> tuple[list, list, dict]:
    """Drive a fixed action pattern; optionally ask the planner at every step (and ignore it)."""
    env = make_env(get_scenario(scenario_name, SHORT))
    obs, _ = env.reset(seed=seed)
    base = env.unwrapped
    planner = PlannerExpert()
    planner.reset(base, seed)
    pattern = [1, 3, 0, 1, 2, 4, 1]  # IDLE, FASTER, LANE_LEFT, IDLE, LANE_RIGHT, SLOWER, IDLE
    observations, rewards, done, i = [(obs, _state(base))], [], False, 0
    while not done:
        if with_planner:
            planner.act(obs, base)
        obs, reward, terminated, truncated, _ = env.step(pattern[i % len(pattern)])
        observations.append((obs, _state(base)))
        rewards.append(reward)
        done, i = terminated or truncated, i + 1
    rng_state = base.np_random.bit_generator.state
    env.close()
    return observations, rewards, rng_state


@pytest.mark.parametrize("scenario_name", ["highway-fast", "roundabout"])
def test_planning_never_perturbs_the_real_episode(scenario_name: str) -> None:
    obs_a, rew_a, rng_a = _scripted_rollout(scenario_name, 20_021, with_planner=False)
    obs_b, rew_b, rng_b = _scripted_rollout(scenario_name, 20_021, with_planner=True)
    assert len(obs_a) == len(obs_b)
    for (obs_1, state_1), (obs_2, state_2) in zip(obs_a, obs_b):
        np.testing.assert_array_equal(obs_1, obs_2)
        assert state_1 == state_2
    assert rew_a == rew_b
    assert rng_a == rng_b


def _stopped_car_ahead(seed: int):
    """highway-fast with the ego's lane blocked by an obstacle 45 m ahead; few other vehicles."""
    from highway_env.vehicle.objects import Obstacle

    env = make_env(get_scenario("highway-fast", {"duration": 4, "vehicles_count": 3}))
    env.reset(seed=seed)
    base = env.unwrapped
    ego = base.vehicle
    lane = base.road.network.get_lane(ego.lane_index)
    s, _ = lane.local_coordinates(ego.position)
    base.road.objects.append(Obstacle(base.road, lane.position(s + 45.0, 0.0), heading=lane.heading_at(s + 45.0)))
    return env, base


def _crashes(env, base, driver) -> bool:
    """Drive ``env`` to its end with ``driver(base) -> action``; whether the ego crashed."""
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(driver(base))
        done = terminated or truncated
    crashed = bool(base.vehicle.crashed)
    env.close()
    return crashed


def test_avoids_a_stopped_car_that_idle_hits() -> None:
    seeds = [20_031, 20_032, 20_033]
    idle = lambda base: base.action_type.actions_indexes["IDLE"]  # noqa: E731
    planner = PlannerExpert()
    assert all(_crashes(*_stopped_car_ahead(s), idle) for s in seeds)
    assert not any(_crashes(*_stopped_car_ahead(s), lambda base: planner.act(None, base)) for s in seeds)


def _merge_crashes(seed: int, params: PlannerParams) -> bool:
    env = make_env(get_scenario("merge"))
    env.reset(seed=seed)
    planner = PlannerExpert(params)
    return _crashes(env, env.unwrapped, lambda base: planner.act(None, base))


def test_rescue_brakes_for_a_vehicle_cutting_in() -> None:
    """On merge, a ramp vehicle cuts in front of the ego: ``follow`` brakes only for a vehicle
    already ahead, so without the ``brake`` rescue every candidate predicts a collision."""
    seeds = [20_005, 20_017]  # tuning seeds on which the planner without rescue crashes
    assert all(_merge_crashes(s, PlannerParams(rescue_continuations=())) for s in seeds)
    assert not any(_merge_crashes(s, PlannerParams()) for s in seeds)


def test_unknown_continuation_is_refused() -> None:
    with pytest.raises(ValueError, match="continuations"):
        PlannerParams(rescue_continuations=("brkae",))
