"""Recoverable-cost driving: collisions charged and survived, near misses, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.errors import TestbedError
from testbed.recovery import time_headway
from testbed.scenarios import get_scenario, make_env

RECOVER = {"crash_recovery": True, "near_miss_headway_s": 0.5, "duration": 20}


def _idle_run(overrides: dict, seed: int) -> list[tuple[int, int, bool]]:
    env = make_env(get_scenario("highway-fast", overrides))
    env.reset(seed=seed)
    steps, done = [], False
    while not done:
        _, _, terminated, truncated, info = env.step(1)  # IDLE: keeps lane and speed, so it gets hit
        steps.append((info["collision"], info["near_miss"], bool(terminated)))
        done = terminated or truncated
    env.close()
    return steps


def test_a_collision_is_charged_and_the_episode_goes_on() -> None:
    seed = next(s for s in range(20) if sum(c for c, _, _ in _idle_run(RECOVER, s)) > 0)
    recovered = _idle_run(RECOVER, seed)
    first = next(i for i, (c, _, _) in enumerate(recovered) if c)
    assert len(recovered) == 20 and not any(t for _, _, t in recovered)  # ran to the time limit
    # The terminating scenario, same seed and actions, ends at that very step.
    terminating = _idle_run({"near_miss_headway_s": 0.5, "duration": 20}, seed)
    assert len(terminating) == first + 1 and terminating[-1][0] == 1 and terminating[-1][2]
    assert recovered[: first + 1] == [(c, n, False) for c, n, _ in terminating]
    # Same seed, same trajectory.
    assert _idle_run(RECOVER, seed) == recovered


def test_near_miss_is_zero_alone_and_positive_when_following_close() -> None:
    from highway_env.vehicle.kinematics import Vehicle

    env = make_env(get_scenario("highway-fast", {"near_miss_headway_s": 0.5, "vehicles_count": 1}))
    env.reset(seed=0)
    base = env.unwrapped
    ego = base.vehicle
    base.road.vehicles[:] = [ego]  # a lone car
    assert time_headway(base) == float("inf")
    assert [env.step(1)[4]["near_miss"] for _ in range(3)] == [0, 0, 0]
    lane = base.road.network.get_lane(ego.lane_index)
    s, _ = lane.local_coordinates(ego.position)
    # A car 8 m ahead (3 m bumper to bumper) at the ego's speed: about 0.12 s headway.
    base.road.vehicles.append(Vehicle(base.road, lane.position(s + 8.0, 0.0), lane.heading_at(s), ego.speed))
    assert time_headway(base) == pytest.approx(3.0 / ego.speed)
    _, _, _, _, info = env.step(1)
    assert info["near_miss"] == 1 and info["collision"] == 0
    env.close()


def test_cost_keys_are_validated() -> None:
    with pytest.raises(TestbedError, match="near_miss_headway_s"):
        get_scenario("highway-fast", {"near_miss_headway_s": -1})
    with pytest.raises(TestbedError, match="crash_recovery"):
        get_scenario("highway-fast", {"crash_recovery": "yes"})
    with pytest.raises(TestbedError, match="crash_recovery, near_miss_headway_s"):
        get_scenario("highway-fast", {"crash_recover": True})
    # Plain scenarios are untouched: no cost key, no cost infos.
    assert "crash_recovery" not in get_scenario("highway-fast").config
    env = make_env(get_scenario("highway-fast"))
    env.reset(seed=0)
    assert "collision" not in env.step(1)[4]
    assert np.isfinite(get_scenario("highway-fast", RECOVER).config["near_miss_headway_s"])


def test_the_harness_records_costs_the_same_with_any_worker_count() -> None:
    from testbed.metrics import episodes_table, summarize
    from testbed.policies import PolicySpec
    from testbed.rollout import rollouts

    scenario = get_scenario("highway-fast", RECOVER)
    seeds = [0, 1, 2, 3]
    one = rollouts(scenario, PolicySpec("idle"), seeds, n_workers=1)
    two = rollouts(scenario, PolicySpec("idle"), seeds, n_workers=2)
    for a, b in zip(one, two):
        assert list(a.infos) == list(b.infos) and np.array_equal(a.trajectory.obs, b.trajectory.obs)
    episodes = episodes_table(("idle", r.seed, r.trajectory) for r in one)
    assert (episodes["length"] == 20).all()  # no collision ends an episode
    assert (episodes["crashed"] == (episodes["collisions"] > 0)).all() and episodes["collisions"].sum() > 0
    assert {"collisions", "near_misses"} <= set(summarize(episodes).columns)


def test_the_iid_error_control_has_no_quadratic_term_on_a_small_run() -> None:
    """The expert with i.i.d. random actions on recoverable driving: its errors cannot
    compound, so the horizon fit's b must be compatible with 0 (fresh seeds per horizon).
    A fit that read the constant hazard as T^2 (as the terminating variant's saturating cost
    or prefixes of one rollout would) fails this."""
    from testbed.drift import horizon_fit_ci
    from testbed.metrics import episode_metrics
    from testbed.policies import PolicySpec
    from testbed.rollout import rollouts
    from testbed.seeds import DEVELOPMENT

    per_t = {}
    for k, horizon in enumerate((10, 20, 40)):
        scenario = get_scenario("highway-fast", {**RECOVER, "duration": horizon})
        seeds = DEVELOPMENT.seeds(12, offset=100 * k)
        records = rollouts(scenario, PolicySpec("expert", "scripted"), seeds, n_workers=2, noise=0.3)
        assert all(len(r.infos) == horizon for r in records)
        per_t[horizon] = np.array([[episode_metrics(r.trajectory)["collisions"] for r in records]])
    fit = horizon_fit_ci(per_t, n_boot=500)
    assert sum(float(v.sum()) for v in per_t.values()) > 0  # the noise does cause collisions
    assert fit["b_ci_low"] <= 0 <= fit["b_ci_high"]
    assert fit["a_ci_low"] > 0  # and the linear term carries them


def _fast_run(stationary: bool, seed: int, n_steps: int = 160) -> tuple[list[int], list[tuple[float, ...]]]:
    """The ego accelerating through traffic (FASTER) with recoverable collisions: the count of
    vehicles in the window after each step, and the ego's (x, y, speed)."""
    from testbed.recovery import nearby_vehicles

    overrides = {"crash_recovery": True, "stationary_traffic": stationary, "duration": n_steps}
    env = make_env(get_scenario("highway-fast", overrides))
    _, info = env.reset(seed=seed)
    counts, states = [nearby_vehicles(env.unwrapped)], []
    assert ("nearby_vehicles" in info) == stationary
    for _ in range(n_steps):
        _, _, terminated, truncated, info = env.step(3)
        counts.append(nearby_vehicles(env.unwrapped))
        if stationary:
            assert info["nearby_vehicles"] == counts[-1]
        ego = env.unwrapped.vehicle
        states.append((float(ego.position[0]), float(ego.position[1]), float(ego.speed)))
        if terminated or truncated:
            break
    env.close()
    return counts, states


@pytest.mark.parametrize("seed", [10000, 10001, 10002])
def test_stationary_traffic_keeps_the_density_around_the_ego(seed: int) -> None:
    """Over 160 decisions the count of vehicles around an ego that overtakes everything stays
    within one vehicle of its value after reset; without the option the road empties."""
    counts, states = _fast_run(True, seed)
    assert len(counts) == 161  # recoverable: the episode runs to its end
    assert all(counts[0] - 1 <= c <= counts[0] for c in counts), counts
    stock, _ = _fast_run(False, seed)
    assert counts[0] == stock[0] and max(stock[-40:]) <= counts[0] // 2, stock  # traffic left behind
    # Respawns come from the env's own generator: the same seed gives the same episode.
    assert _fast_run(True, seed) == (counts, states)


@pytest.mark.parametrize("driver", ["expert:scripted", "idle"])
def test_the_harness_records_a_density_held_within_one_vehicle_through_recovered_collisions(driver: str) -> None:
    """160 recoverable decisions of a noisy expert, or of IDLE (rear-ended again and again):
    every recovery deletes vehicles, the respawn refills the window, and the count recorded at
    every step (``nearby_vehicles``, kept by the harness) stays within one vehicle of the count
    after reset."""
    from testbed.policies import PolicySpec
    from testbed.recovery import cost_columns
    from testbed.rollout import rollouts

    scenario = get_scenario("highway-fast", {"crash_recovery": True, "stationary_traffic": True, "duration": 160})
    seeds = [10000, 10001]
    noise = 0.3 if driver.startswith("expert") else 0.0
    records = rollouts(scenario, PolicySpec.parse(driver), seeds, n_workers=1, noise=noise)
    for seed, record in zip(seeds, records):
        env = make_env(scenario)
        target = env.reset(seed=seed)[1]["nearby_vehicles"]
        env.close()
        counts = [int(i["nearby_vehicles"]) for i in record.infos]
        columns = cost_columns(record)
        assert len(counts) == 160 and columns["cost"] > 0  # collisions happened and were recovered
        assert all(target - 1 <= c <= target for c in counts), (target, counts)
        assert columns["nearby"] == " ".join(map(str, counts)) and columns["mean_nearby"] >= target - 0.25


def test_records_keep_nearby_vehicles_only_with_stationary_traffic() -> None:
    """The harness adds the count only where the scenario gives it: the records of every other
    scenario (the committed results) are unchanged."""
    from testbed.policies import PolicySpec
    from testbed.recovery import cost_columns
    from testbed.rollout import rollouts

    common = {"speed", "crashed", "x", "y", "heading", "lane", "rightmost", "on_road", "lane_change", "distance_m"}
    common |= {"t", "applied_action"}
    for overrides, extra in (
        ({}, set()),
        (RECOVER, {"collision", "near_miss"}),
        ({**RECOVER, "stationary_traffic": True}, {"collision", "near_miss", "nearby_vehicles"}),
    ):
        (record,) = rollouts(get_scenario("highway-fast", overrides), PolicySpec("idle"), [10000], n_workers=1)
        assert all(set(i) == common | extra for i in record.infos), overrides
    assert cost_columns(record)["nearby"] and cost_columns(record)["mean_nearby"] > 0
    (plain,) = rollouts(get_scenario("highway-fast", RECOVER), PolicySpec("idle"), [10000], n_workers=1)
    assert cost_columns(plain)["nearby"] == "" and np.isnan(cost_columns(plain)["mean_nearby"])
