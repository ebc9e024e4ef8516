"""Regression guard for :mod:`testbed.sim`: the accelerated simulation must reproduce stock
highway-env bit for bit, on whichever supported version is installed (1.9.1, the legacy stack;
1.12.1, the current stack's lane of ``.ci/run``).

Each case runs the same episode twice in this process, once inside ``testbed.sim.stock()`` and
once with the patches enabled, and compares per step: the observation bytes (and dtype/shape),
``repr`` of reward/terminated/truncated (so value *and* type), ``repr`` of the info dict and,
for every vehicle on the road, position bytes and ``repr`` of heading, speed, lane_index,
crashed. Any difference fails with the scenario, seed, policy, step and the differing part.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
import os
import pickle
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import testbed.sim as sim
from testbed.experts import make_expert
from testbed.scenarios import get_scenario, make_env, scenario_names, sensor_names


def expert_call(expert: Any, what: str, env: Any, obs: Any = None, seed: int = 0) -> Any:
    """The only place this file talks to an expert (``what`` is "reset" or "act"), so an
    interface change is one edit here. Accepts both the old ``reset(env)``/``act(env)`` and the
    new ``reset(env, seed)``/``act(obs, env)`` signatures."""
    if what == "reset":
        if len(inspect.signature(expert.reset).parameters) >= 2:
            return expert.reset(env.unwrapped, seed)
        return expert.reset(env.unwrapped)
    if len(inspect.signature(expert.act).parameters) >= 2:
        return expert.act(obs, env.unwrapped)
    return expert.act(env.unwrapped)


CONTINUOUS = "highway-fast-continuous"


def _expert_name(base: str) -> str:
    return "continuous" if base == CONTINUOUS else "scripted"


def _base(name: str) -> str:
    return name if name in scenario_names() else name.rpartition("-")[0]


def _bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _road_state(env: Any) -> str:
    h = hashlib.sha256()
    for v in env.unwrapped.road.vehicles:
        h.update(np.asarray(v.position).tobytes())
        h.update(repr((v.heading, v.speed, v.lane_index, v.crashed)).encode())
    return h.hexdigest()[:16]


def _step_record(env: Any, obs: Any, reward: Any, terminated: Any, truncated: Any, info: Any) -> dict[str, str]:
    arr = np.asarray(obs)
    return {
        "observation": f"{arr.dtype}{arr.shape}:{_bytes_digest(np.ascontiguousarray(arr).tobytes())}",
        "reward": repr(reward),
        "terminated": repr(terminated),
        "truncated": repr(truncated),
        "info": repr(info),
        "vehicles": _road_state(env),
    }


def _overrides(name: str, duration: float | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    scenario = get_scenario(name)
    out = dict(extra or {})
    if duration is not None and "duration" in scenario.config:
        out["duration"] = duration
    return out


def trajectory(
    name: str, seed: int, policy: str, max_steps: int, duration: float | None, extra: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """Per-step records of one episode (reset record first) under the current sim mode; ``extra``
    are config overrides."""
    env = make_env(get_scenario(name, _overrides(name, duration, extra)))
    try:
        obs, info = env.reset(seed=seed)
        env.action_space.seed(seed)
        # reset's info["action"] is a sample of a freshly built, unseeded action space, and some
        # envs' info["rewards"] depend on it: leave both out of the reset record.
        info = {k: v for k, v in info.items() if k not in ("action", "rewards")}
        records = [_step_record(env, obs, None, None, None, info)]
        expert = None
        if policy == "expert":
            expert = make_expert(_expert_name(_base(name)))
            expert_call(expert, "reset", env, seed=seed)
        for _ in range(max_steps):
            action = env.action_space.sample() if expert is None else expert_call(expert, "act", env, obs)
            obs, reward, terminated, truncated, info = env.step(action)
            records.append(_step_record(env, obs, reward, terminated, truncated, info))
            if terminated or truncated:
                break
        return records
    finally:
        env.close()


def assert_same(name: str, seed: int, policy: str, stock: list[dict[str, str]], fast: list[dict[str, str]]) -> None:
    for step, (a, b) in enumerate(zip(stock, fast)):
        for key in a:
            if a[key] != b[key]:
                pytest.fail(
                    f"{name} seed={seed} policy={policy}: step {step} ({'reset' if step == 0 else 'step'}) differs in "
                    f"{key}: stock {a[key][:300]} vs accelerated {b[key][:300]}"
                )
    if len(stock) != len(fast):
        pytest.fail(f"{name} seed={seed} policy={policy}: episode length {len(stock) - 1} (stock) vs {len(fast) - 1}")


def compare(
    name: str, seed: int, policy: str, max_steps: int, duration: float | None, extra: dict[str, Any] | None = None
) -> None:
    with sim.stock():
        stock = trajectory(name, seed, policy, max_steps, duration, extra)
        assert not sim.is_enabled(), "a stock run was accelerated"
    assert sim.enable(), "testbed.sim.enable() did not activate the accelerated sim"
    fast = trajectory(name, seed, policy, max_steps, duration, extra)
    assert sim.is_enabled()
    assert_same(name, seed, policy, stock, fast)


@pytest.fixture(autouse=True)
def _restore_sim_state():
    """Leave the process in the state the test found it (other test files run stock)."""
    was = sim.is_enabled()
    yield
    if was:
        sim.enable()
    else:
        sim.disable()


@pytest.fixture(autouse=True)
def _not_forced_stock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTBED_STOCK_SIM", raising=False)


# --- Trajectory equality: small default matrix -----------------------------------------------

# (scenario, seeds, max decisions, duration override): kept to ~60 s in total on a 2-core machine.
QUICK_CASES = [
    ("highway-fast", (0, 1), 12, 10),
    ("highway", (3,), 5, 5),
    ("merge", (0, 1), 12, None),
    ("roundabout", (0, 1), 12, None),
    (CONTINUOUS, (0, 1), 40, 8),
    ("highway-fast-lidar", (2,), 8, 8),
    ("highway-fast-grid", (2,), 8, 8),
    ("highway-fast-camera", (2,), 5, 5),
    ("highway-fast-kinrich", (2,), 8, 8),
]
# highway-env >= 1.12 only (the current stack): its configurable merge and roundabout.
QUICK_CASES += [
    case
    for case in [("merge-generic", (0, 1), 12, None), ("roundabout-generic", (0, 1), 12, None)]
    if case[0] in scenario_names()
]


def test_quick_cases_cover_every_preset_and_sensor() -> None:
    names = {case[0] for case in QUICK_CASES}
    assert set(scenario_names()) <= names
    for sensor in sensor_names():
        assert sensor == "kinematics" or any(n.endswith("-" + sensor) for n in names), sensor


@pytest.mark.parametrize("policy", ["random", "expert"])
@pytest.mark.parametrize(("name", "seeds", "max_steps", "duration"), QUICK_CASES, ids=[c[0] for c in QUICK_CASES])
def test_trajectories_identical(
    name: str, seeds: tuple[int, ...], max_steps: int, duration: float, policy: str
) -> None:
    for seed in seeds:
        compare(name, seed, policy, max_steps, duration)


@pytest.mark.skipif(
    "neighbour_vehicles_connected_lanes" not in get_scenario("highway-fast").config,
    reason="highway-env >= 1.12 only (the current stack)",
)
@pytest.mark.parametrize("name", ["highway-fast", "merge"])
def test_connected_lane_neighbours_identical(name: str) -> None:
    """highway-env 1.12's connected-lane neighbour search (off on -v0 envs) switched on: the
    patched ``Road.neighbour_vehicles`` hands it to the stock code, so trajectories still match."""
    for seed in (0, 1):
        for policy in ("random", "expert"):
            compare(name, seed, policy, 12, 10, {"neighbour_vehicles_connected_lanes": True})


# --- Larger version ---------------------------------------------------------------------------

SLOW_BASES = ["highway-fast", "highway", "merge", "roundabout", CONTINUOUS]


def _slow_cases() -> list[tuple[str, int, str]]:
    # highway-v0 steps ~10x slower than the others on stock code (the side this test runs
    # against), so it gets one full episode, driven by the expert (which changes lanes and
    # speeds), and its sensors are covered on the other presets; the default suite's quick
    # cases cover it with every sensor and both policies.
    cases = [
        (base, seed, policy)
        for base in scenario_names()
        for seed in ((10,) if base == "highway" else (10, 11, 12))
        for policy in (("expert",) if base == "highway" else ("random", "expert"))
    ]
    cases += [
        (f"{base}-{sensor}", 20, policy)
        for base in SLOW_BASES
        if base != "highway"
        for sensor in sensor_names()
        if sensor != "kinematics"
        for policy in ("random", "expert")
    ]
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("name", "seed", "policy"), _slow_cases(), ids=["-".join(map(str, c)) for c in _slow_cases()])
def test_trajectories_identical_full_episodes(name: str, seed: int, policy: str) -> None:
    compare(name, seed, policy, 1000, None)  # episodes end by their own duration / step cap


# --- Copies (the planner deep-copies the env; StepMemo pickles it) ----------------------------


def _unpickled(env: Any) -> Any:
    """A copy made as :class:`testbed.rollout.StepMemo` keeps and restores envs."""
    return pickle.loads(pickle.dumps(env, protocol=pickle.HIGHEST_PROTOCOL))


def _copy_then_step(seed: int, actions: list[int], copier: Callable[[Any], Any]) -> list[str]:
    env = make_env(get_scenario("highway-fast"))
    try:
        env.reset(seed=seed)
        records = []
        for a in actions[:3]:
            env.step(a)
        clone = copier(env.unwrapped)
        for a in actions[3:]:
            obs, reward, term, trunc, info = clone.step(a)
            records.append(_step_record_unwrapped(clone, obs, reward, term, trunc))
        # The original must be unaffected by the copy having run ahead.
        for a in actions[3:5]:
            obs, reward, term, trunc, info = env.step(a)
            records.append(_step_record_unwrapped(env.unwrapped, obs, reward, term, trunc))
        # A copy of a copy, made mid-episode.
        clone2 = copier(clone)
        obs, reward, term, trunc, info = clone2.step(actions[0])
        records.append(_step_record_unwrapped(clone2, obs, reward, term, trunc))
        return records
    finally:
        env.close()


def _step_record_unwrapped(env: Any, obs: Any, reward: Any, term: Any, trunc: Any) -> str:
    h = hashlib.sha256(np.asarray(obs).tobytes())
    h.update(repr((reward, term, trunc)).encode())
    for v in env.road.vehicles:
        h.update(np.asarray(v.position).tobytes())
        h.update(repr((v.heading, v.speed, v.lane_index, v.crashed)).encode())
    return h.hexdigest()


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("copier", [copy.deepcopy, _unpickled], ids=["deepcopy", "pickle"])
def test_copy_of_env_steps_like_stock(seed: int, copier: Callable[[Any], Any]) -> None:
    actions = [1, 3, 2, 0, 1, 4, 3, 1, 2]
    with sim.stock():
        stock = _copy_then_step(seed, actions, copier)
    assert sim.enable()
    fast = _copy_then_step(seed, actions, copier)
    for i, (a, b) in enumerate(zip(stock, fast)):
        assert a == b, f"highway-fast seed={seed}: copied env differs at record {i}"


def test_unpickled_positions_take_the_fast_paths() -> None:
    # An unpickled array's dtype is equal to float64 but not numpy's float64 object: the fast
    # paths must not key on that object, or a restored env steps ~30% slower (same results).
    from highway_env.road.lane import StraightLane

    from testbed.sim import _patches

    assert sim.enable()
    position = pickle.loads(pickle.dumps(np.array([12.5, 3.0])))
    assert position.dtype is not np.dtype(np.float64) and position.dtype == np.float64
    lane = StraightLane(np.array([0.0, 0.0]), np.array([100.0, 0.0]))
    before = sum(len(m) for m in _patches._MEMOS)
    assert lane.local_coordinates(position) == lane.local_coordinates(position.copy())
    assert sum(len(m) for m in _patches._MEMOS) == before + 1  # memoized, and found for the copy
    test = _patches._off_lane_test(lane)
    assert test is not None and test(pickle.loads(pickle.dumps(np.array([50.0, 40.0]))))


# --- The switch itself ------------------------------------------------------------------------


def _patched_namespaces() -> list[Any]:
    import highway_env.envs.highway_env as highway_env_module
    import highway_env.road.lane as lane_module
    import highway_env.utils as utils_module
    import highway_env.vehicle.behavior as behavior_module
    import highway_env.vehicle.controller as controller_module
    from highway_env.envs.common.observation import KinematicObservation
    from highway_env.road.road import Road, RoadNetwork

    return [
        lane_module.StraightLane,
        lane_module.SineLane,
        lane_module.CircularLane,
        Road,
        RoadNetwork,
        KinematicObservation,
        controller_module,
        behavior_module,
        lane_module,
        utils_module,
        highway_env_module,
    ]


def _snapshot() -> list[dict[str, Any]]:
    return [dict(vars(ns)) for ns in _patched_namespaces()]


def _assert_identical(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    for ns, b, a in zip(_patched_namespaces(), before, after):
        assert b.keys() == a.keys(), ns
        for key in b:
            assert a[key] is b[key], f"{ns}.{key} not restored"


def test_disable_restores_exact_originals_and_enable_is_idempotent() -> None:
    sim.disable()
    before = _snapshot()
    assert not sim.is_enabled()
    assert sim.enable() is True
    assert sim.enable() is True  # twice: harmless
    assert sim.is_enabled()
    during = _snapshot()
    changed = [key for b, d in zip(before, during) for key in b if d[key] is not b[key]]
    assert changed, "enable() patched nothing"
    sim.disable()
    sim.disable()  # twice: harmless
    assert not sim.is_enabled()
    _assert_identical(before, _snapshot())
    # stock() inside enabled: stock inside, enabled after; enable() is a no-op inside.
    sim.enable()
    with sim.stock():
        assert not sim.is_enabled()
        _assert_identical(before, _snapshot())
        assert sim.enable() is False
        assert not sim.is_enabled()
    assert sim.is_enabled()
    sim.disable()
    with sim.stock():
        assert not sim.is_enabled()
    assert not sim.is_enabled()


def test_env_var_keeps_stock(monkeypatch: pytest.MonkeyPatch) -> None:
    sim.disable()
    before = _snapshot()
    monkeypatch.setenv("TESTBED_STOCK_SIM", "1")
    assert sim.enable() is False
    assert not sim.is_enabled()
    _assert_identical(before, _snapshot())


def test_other_highway_env_version_warns_once_and_stays_stock(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    sim.disable()
    before = _snapshot()
    real_version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "1.10.0" if name == "highway-env" else real_version(name)
    )
    monkeypatch.setattr(sim, "_warned", False)
    with pytest.warns(RuntimeWarning, match="1.10.0"):
        assert sim.enable() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sim.enable() is False  # no second warning
    assert not sim.is_enabled()
    _assert_identical(before, _snapshot())


def test_import_has_no_side_effects() -> None:
    code = (
        "import highway_env.road.road as r, highway_env.vehicle.controller as c, numpy\n"
        "import testbed.sim as s\n"
        "assert r.Road.act.__module__ == 'highway_env.road.road' and c.np is numpy and not s.is_enabled()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TESTBED_STOCK_SIM"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# --- The scalar fast paths against numpy ------------------------------------------------------

_SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 30.0, 1e-300, -1e-300, 5e-324, math.inf, -math.inf, math.nan, 2.0**53]


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_scalar_clip_and_abs_match_numpy() -> None:
    from testbed.sim import _fastnp

    rng = np.random.default_rng(0)
    values: list[Any] = _SPECIAL + [float(v) for v in rng.normal(0, 3, 300)]
    values += [np.float64(v) for v in values]
    bounds: list[Any] = [0, 1, -1, 30, 0.0, -0.0, 1.0, -1.0, np.float64(-0.0), np.float64(2.5), np.pi / 3, -np.pi / 3]
    for a in values:
        assert _same(_fastnp.fast_abs(a), np.abs(a)), a
        for lo in bounds:
            for hi in bounds:
                assert _same(_fastnp.clip(a, lo, hi), np.clip(a, lo, hi)), (a, lo, hi)
    # Not fast-pathed, still numpy's answer.
    for args in [(np.arange(5), 1, 3), (3, 0, 2), (np.int64(7), 0, 5), (1.5, np.float32(0), 1), (1.5, math.nan, 2.0)]:
        assert _same(_fastnp.clip(*args), np.clip(*args)), args
    assert _same(_fastnp.fast_abs(np.array([-1.0, 2.0])), np.abs(np.array([-1.0, 2.0])))
    assert _same(_fastnp.fast_abs(-3), np.abs(-3))


# --- Direct checks of the two pruning patches -------------------------------------------------


@pytest.mark.parametrize("name", ["highway-fast", "merge", "roundabout"])
def test_closest_lane_index_matches_stock_everywhere(name: str) -> None:
    """The lane bound never changes the answer: random points on and far off the network,
    random headings, no heading, and non-finite inputs."""
    from testbed.sim import _patches

    env = make_env(get_scenario(name))
    try:
        env.reset(seed=0)
        network = env.unwrapped.road.network
        rng = np.random.default_rng(1)
        lanes = network.lanes_list()
        points: list[tuple[Any, Any]] = []
        for _ in range(1500):
            lane = lanes[rng.integers(len(lanes))]
            s = rng.uniform(-20, lane.length + 20)
            p = lane.position(s, rng.normal(0, 3))
            points.append((p, float(rng.uniform(-4, 4))))
            points.append((p, None))
        points += [(rng.uniform(-2000, 2000, 2), float(rng.uniform(-10, 10))) for _ in range(300)]
        points += [(np.array([np.nan, 0.0]), 0.0), (np.array([0.0, 1.0]), np.nan), (np.array([np.inf, 0.0]), 0.0)]
        for p, h in points:
            with np.errstate(all="ignore"):
                expected = _patches.STOCK_CLOSEST_LANE(network, p, h)
                got = _patches.get_closest_lane_index(network, p, h)
            assert got == expected, (name, p, h)
    finally:
        env.close()


def test_collision_prefilter_only_skips_pairs_stock_rejects() -> None:
    """Every pair the Road.step pre-filter skips fails the stock spherical pre-check."""
    from highway_env.road.road import Road

    from testbed.sim import _patches

    env = make_env(get_scenario("highway"))
    try:
        env.reset(seed=0)
        road: Road = env.unwrapped.road
        rng = np.random.default_rng(2)
        for trial in range(40):
            count = 45 if trial % 2 else 12  # numpy and Python variants
            for v in road.vehicles[:count]:
                v.position = rng.uniform([0, -2], [60, 14]) if trial % 3 else rng.uniform([0, 0], [8, 3])
                v.speed = float(rng.uniform(-5, 40))
            if trial == 5:
                road.vehicles[0].position = np.array([np.nan, 1.0])
            vehicles = road.vehicles[:count]
            sub = Road(network=road.network, vehicles=vehicles, road_objects=road.objects)
            dt = 1 / 15
            pairs = _patches._collision_pairs(sub, dt)
            assert pairs is not None
            everything = vehicles + sub.objects
            kept = set(pairs)
            for i, v in enumerate(vehicles):
                for j in range(i + 1, len(everything)):
                    other = everything[j]
                    rejected = np.linalg.norm(other.position - v.position) > (v.diagonal + other.diagonal) / 2 + (
                        v.speed * dt
                    )
                    assert (i, j) in kept or rejected, (trial, i, j)
            assert pairs == sorted(pairs)
    finally:
        env.close()


def test_kept_direction_and_velocity_match_stock() -> None:
    """Patch 7: inside Road.act, direction and velocity equal the stock expressions (bits and
    type) for every heading and speed, follow a rebound heading or speed, and hand out arrays
    no caller can use to change what is kept; outside it they are the stock expressions."""
    from highway_env.road.road import Road, RoadNetwork
    from highway_env.vehicle.kinematics import Vehicle

    from testbed.sim import _patches

    def stock_velocity(v: Any) -> Any:
        return v.speed * _patches.STOCK_DIRECTION(v)

    sim.enable()
    road = Road(network=RoadNetwork.straight_road_network(2), record_history=False)
    vehicle = Vehicle(road, np.array([1.0, 2.0]), heading=0.0, speed=20.0)
    values: list[Any] = [0.0, -0.0, 1e-300, -1e-300, 0.3, -2.9, 1e6, math.pi, math.inf, -math.inf, math.nan]
    values += [np.float64(v) for v in values]
    for acting in (False, True):
        if acting:  # what Road.act sets up for its call
            _patches._ACTING[id(road)] = (road, {}, {})
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                for heading in values:
                    vehicle.heading = heading
                    for speed in values:
                        vehicle.speed = speed
                        for _ in range(2):  # computed, then kept
                            got_d, got_v = vehicle.direction, vehicle.velocity
                            assert _same(got_d, _patches.STOCK_DIRECTION(vehicle)), heading
                            assert _same(got_v, stock_velocity(vehicle)), (heading, speed)
                            got_d[:] = 7.0  # a caller's change stays its own
                            got_v[:] = 7.0
            # A heading or speed that is not a float scalar takes the stock expression.
            vehicle.heading, vehicle.speed = np.array(0.5), 3
            assert _same(vehicle.direction, _patches.STOCK_DIRECTION(vehicle))
            assert _same(vehicle.velocity, stock_velocity(vehicle))
            if acting:
                assert id(vehicle) in _patches._ACTING[id(road)][2]
        finally:
            _patches._ACTING.pop(id(road), None)


def test_provably_apart_pairs_do_not_collide() -> None:
    """Patch 3's second filter: every pair declared apart is neither intersecting nor about to
    by the stock check, and the filter declares most nearby pairs that do not touch apart."""
    from highway_env.road.road import Road, RoadNetwork
    from highway_env.vehicle.kinematics import Vehicle
    from highway_env.vehicle.objects import Obstacle

    from testbed.sim import _patches

    sim.enable()
    road = Road(network=RoadNetwork.straight_road_network(3), record_history=False)
    rng = np.random.default_rng(3)
    apart = near = untouched = 0
    for trial in range(6000):
        x0 = float(rng.choice([0.0, 1500.0, -3e4]))
        a = Vehicle(road, np.array([x0, rng.choice([0.0, 4.0])]), heading=float(rng.normal(0, 0.05)), speed=25.0)
        kind = Obstacle if trial % 7 == 0 else Vehicle
        b = kind(road, a.position + rng.uniform([-12, -6], [12, 6]), heading=float(rng.normal(0, 0.05 + trial % 3)))
        b.speed = float(rng.uniform(-5, 40))
        a.speed = float(rng.uniform(-5, 40)) if trial % 2 else a.speed
        if trial % 11 == 0:
            b.heading = np.float64(b.heading)
        dt = float(rng.choice([1 / 15, 0.2, 1.0]))
        result = _patches.STOCK_IS_COLLIDING(a, b, dt)
        declared = _patches.provably_apart(a, b, dt)
        if declared:
            assert not result[0] and not result[1], trial  # handle_collisions then does nothing
        if np.linalg.norm(b.position - a.position) <= (a.diagonal + b.diagonal) / 2 + a.speed * dt:
            near += 1  # passes the stock spherical pre-check
            untouched += not (result[0] or result[1])
            apart += declared
    assert near > 1000 and apart > 0.5 * untouched, (near, untouched, apart)
    # Non-finite values and classes with their own collision code are never declared apart.
    a = Vehicle(road, np.array([0.0, 0.0]), speed=20.0)
    b = Vehicle(road, np.array([0.0, 8.0]), speed=20.0)
    assert _patches.provably_apart(a, b, 0.2)
    b.position = np.array([math.nan, 8.0])
    assert not _patches.provably_apart(a, b, 0.2)
    b.position = np.array([0.0, 8.0])

    class Own(Vehicle):
        def polygon(self) -> Any:
            return super().polygon()

    assert not _patches.provably_apart(a, Own(road, np.array([0.0, 8.0])), 0.2)
