"""A privileged look-ahead planner: simulate each candidate action on a copy of the road.

Other vehicles in highway-env are IDM/MOBIL drivers whose behaviour, given the simulator
state, draws no random numbers on the shipped straight-road scenarios, so a copy of the road
predicts their reaction to the ego's choice exactly (up to the vehicles left out of the copy
and, where the internal step is coarser than the env's, integration error).

Each decision:

1. The ego and the road users within a window around it (``ahead_m`` / ``behind_m``) are
   deep-copied onto a fresh :class:`~highway_env.road.road.Road` that shares the (read-only)
   lane network and holds a *copy* of the env's random generator, so the real env's state and
   RNG are never touched. A copied vehicle whose leader was left out holds its present speed
   (otherwise it would speed up into the empty road the cut leaves ahead of it).
2. For every available meta-action (``get_available_actions``), the copy is stepped one
   decision with that action, then ``horizon - 1`` more decisions under each *continuation*
   (default ``follow``: a closed-loop cruise control in the current lane, SLOWER if the time
   gap to the vehicle ahead is short, FASTER if it is long; ``brake`` and ``idle`` also exist).
   When every continuation of a candidate ends in a predicted collision, its *rescue*
   continuations (default ``brake``) are tried too: ``follow`` brakes only for a vehicle already
   ahead in the lane, so without them a vehicle about to cut in (a merge-v0 ramp vehicle) makes
   every candidate look equally fatal.
3. A simulated trajectory scores the env's own per-step reward (its ``_reward`` evaluated on
   the copy), discounted by ``gamma``; a collision ends it with ``-crash_penalty``; every step
   whose time gap to the vehicle ahead is below ``min_time_gap_s`` costs ``gap_penalty`` per
   second missing (a margin for what the copy does not model); and the leaf pays a *trap*
   penalty if it ends behind a vehicle slower than the ego's lowest target speed, the sooner
   reached the larger (the horizon is too short to see the ego boxed in behind it). An
   action's value is its best continuation; ties go to the earlier action in the order IDLE,
   FASTER, LANE_RIGHT, LANE_LEFT, SLOWER.

Costs: (available actions) x horizon x (continuations) decisions of simulation on ~5-8
vehicles, plus the rescues of candidates that crash under every continuation, at the env's
simulation frequency (5 Hz on highway-fast, 15 Hz, three times the cost, on merge and
roundabout).

The expert is stateless and deterministic: the same simulator state gives the same action.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import types
from typing import Any

import numpy as np

from testbed.experts.base import Expert

_PREFERENCE = ("IDLE", "FASTER", "LANE_RIGHT", "LANE_LEFT", "SLOWER")
_CONTINUATIONS = ("follow", "brake", "idle")


@dataclasses.dataclass(frozen=True)
class PlannerParams:
    """Tunable parameters of :class:`PlannerExpert`."""

    horizon: int = 4
    """Decisions simulated per candidate (the first is the candidate action)."""
    gamma: float = 0.9
    """Discount per decision."""
    crash_penalty: float = 10.0
    """Return lost by a predicted collision, in units of the env's per-step reward."""
    min_time_gap_s: float = 1.0
    """Time gap to the vehicle ahead (bumper gap / ego speed) below which a step is penalised [s]."""
    gap_penalty: float = 0.25
    """Penalty per second of time gap missing below ``min_time_gap_s`` [reward units / s]."""
    ahead_m: float = 80.0
    """Road users further ahead than this are left out of the copy [m]."""
    behind_m: float = 40.0
    """Road users further behind than this are left out of the copy [m]."""
    sim_frequency_hz: float = 15.0
    """Internal simulation frequency [Hz]; the env's own when it is lower. At the env's own
    (highway-fast: 5 Hz, merge and roundabout: 15 Hz) the copy replays the IDM/MOBIL drivers
    exactly; a coarser step is cheaper but shifts when their lane-change timers fire."""
    follow_brake_gap_s: float = 1.5
    """``follow`` continuation: SLOWER when the time gap to the vehicle ahead is below this [s]..."""
    follow_faster_gap_s: float = 3.0
    """...and FASTER when it is above this and the vehicle ahead is not slower [s]."""
    continuations: tuple[str, ...] = ("follow",)
    """Continuation policies tried after each candidate action."""
    rescue_continuations: tuple[str, ...] = ("brake",)
    """Continuation policies tried after a candidate action only when every one of
    ``continuations`` ends in a predicted collision (``follow`` brakes only for a vehicle
    already ahead in the lane, not for one about to cut in)."""
    trap_penalty: float = 4.0
    """Leaf penalty of ending the horizon behind a vehicle slower than the ego's lowest target
    speed (the ego cannot follow it and must leave the lane, possibly boxed in), scaled by how
    soon it would be reached [reward units]..."""
    trap_time_s: float = 10.0
    """...from ``trap_penalty`` when reached now to 0 when reached (at the ego's present speed)
    after this time [s]."""

    def __post_init__(self) -> None:
        unknown = set(self.continuations) | set(self.rescue_continuations)
        unknown -= set(_CONTINUATIONS)
        if unknown or not self.continuations:
            raise ValueError(f"continuations must be a non-empty choice of {_CONTINUATIONS}, got {sorted(unknown)}")

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["continuations"] = list(self.continuations)
        d["rescue_continuations"] = list(self.rescue_continuations)
        return d


class _Sim:
    """A private copy of the ego and its neighbourhood, stepped by decisions."""

    def __init__(self, road: Any, ego: Any, env: Any, frames: int, dt: float) -> None:
        self.road, self.ego, self.frames, self.dt = road, ego, frames, dt
        self._env = env
        # The env's reward function, evaluated on the copy: a stand-in ``self`` that exposes
        # only the copied road and vehicle, and the (read-only) config.
        cls = type(env)
        ns = types.SimpleNamespace(road=road, vehicle=ego, config=env.config)
        ns._rewards = functools.partial(cls._rewards, ns)
        self._reward = functools.partial(cls._reward, ns)

    def clone(self) -> _Sim:
        memo: dict[int, Any] = {id(self.road.network): self.road.network}
        road = copy.deepcopy(self.road, memo)
        return _Sim(road, memo[id(self.ego)], self._env, self.frames, self.dt)

    def step(self, action_index: int, action_name: str) -> float:
        """One decision: the meta-action applied as ``DiscreteMetaAction.act`` does, then the
        road acted and stepped frame by frame (the order of ``AbstractEnv._simulate``).

        Returns:
            The env's reward for the step.
        """
        self.ego.act(action_name)
        for _ in range(self.frames):
            self.road.act()
            self.road.step(self.dt)
            if self.ego.crashed:
                break
        return float(self._reward(action_index))

    def front_gap(self) -> tuple[float, float]:
        """Bumper gap to the vehicle ahead in the ego's lane [m] (``inf`` if none), and its speed."""
        front, _ = self.road.neighbour_vehicles(self.ego, self.ego.lane_index)
        if front is None:
            return math.inf, math.inf
        lane = self.road.network.get_lane(self.ego.lane_index)
        gap = lane.local_coordinates(front.position)[0] - lane.local_coordinates(self.ego.position)[0]
        return gap - 0.5 * (front.LENGTH + self.ego.LENGTH), float(front.speed)


class PlannerExpert(Expert):
    """Look-ahead planner on copies of the simulator (see the module docstring).

    Args:
        params: planner parameters; defaults to :class:`PlannerParams`.
    """

    name = "planner"

    def __init__(self, params: PlannerParams | None = None) -> None:
        self.p = params or PlannerParams()

    def params(self) -> dict[str, Any]:
        """The planner parameters, for provenance."""
        return self.p.to_dict()

    def decision_identity(self) -> str:
        """Stateless and deterministic, at tens of milliseconds a decision: worth keeping. The
        name holds every parameter, so planners that differ in one never share decisions."""
        return self._identity

    @functools.cached_property
    def _identity(self) -> str:
        return f"{self.name}:{json.dumps(self.params(), sort_keys=True)}"

    def reset(self, env: Any, seed: int) -> None:
        """Stateless: nothing to clear."""

    # ------------------------------------------------------------------ decision

    def act(self, obs: Any, env: Any) -> int:
        """Pick the meta-action with the best simulated outcome.

        Args:
            env: the unwrapped highway-env environment (read only).

        Returns:
            The index of an available discrete meta-action.
        """
        values = self.action_values(env)
        return max(values, key=lambda a: (values[a], -self._rank(env, a)))

    def action_values(self, env: Any) -> dict[int, float]:
        """Simulated value of every available action (index -> value)."""
        names = env.action_type.actions
        base = self._copy(env)
        values: dict[int, float] = {}
        for a in self._available(env):
            values[a] = self._evaluate(base, a, names)
        return values

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _rank(env: Any, action: int) -> int:
        name = env.action_type.actions[action]
        return _PREFERENCE.index(name) if name in _PREFERENCE else len(_PREFERENCE)

    @staticmethod
    def _available(env: Any) -> list[int]:
        return sorted(int(a) for a in env.action_type.get_available_actions())

    def _copy(self, env: Any) -> _Sim:
        """The ego and its neighbourhood on a fresh road (the real one is only read)."""
        from highway_env.road.road import Road

        real = env.road
        ego = env.vehicle
        p = self.p
        heading = np.array([math.cos(ego.heading), math.sin(ego.heading)])
        keep = [ego]
        for v in real.vehicles:
            if v is ego:
                continue
            d = v.position - ego.position
            along = float(d @ heading)
            dist = float(np.hypot(*d))
            if dist <= (p.ahead_m if along >= 0 else p.behind_m):
                keep.append(v)
        # Static objects are few and cheap, and a far one still shapes how the copied vehicles
        # drive (merge-v0: the obstacle closing the ramp makes ramp vehicles merge).
        objects = list(real.objects)
        # Copy the RNG too: vehicles that draw from road.np_random (route choices) then draw
        # from the copy, and the real generator's state never moves.
        road = Road(network=real.network, np_random=copy.deepcopy(real.np_random), record_history=False)
        memo: dict[int, Any] = {id(real): road, id(real.network): real.network}
        road.vehicles = copy.deepcopy(keep, memo)
        road.objects = copy.deepcopy(objects, memo)
        self._hold_cut_leaders(real, keep, road.vehicles)
        env_hz = float(env.config["simulation_frequency"])
        hz = min(env_hz, p.sim_frequency_hz)
        frames = max(1, int(round(hz / float(env.config["policy_frequency"]))))
        dt = 1.0 / (frames * float(env.config["policy_frequency"]))
        return _Sim(road, road.vehicles[0], env, frames, dt)

    @staticmethod
    def _hold_cut_leaders(real: Any, keep: list, copies: list) -> None:
        """Copied vehicles whose leader was left out would speed up into the free road ahead;
        they hold their present speed instead (a vehicle's target speed is capped by it)."""
        kept = {id(v) for v in keep}
        by_lane: dict[Any, list[tuple[float, Any]]] = {}
        for v in real.vehicles:
            index = getattr(v, "lane_index", None)
            if index is not None:
                s = float(real.network.get_lane(index).local_coordinates(v.position)[0])
                by_lane.setdefault(index, []).append((s, v))
        for original, clone in zip(keep[1:], copies[1:]):
            index = getattr(original, "lane_index", None)
            if index is None or not hasattr(clone, "target_speed"):
                continue
            s0 = float(real.network.get_lane(index).local_coordinates(original.position)[0])
            ahead = [(s, v) for s, v in by_lane.get(index, []) if s > s0 and v is not original]
            if ahead and id(min(ahead, key=lambda sv: sv[0])[1]) not in kept:
                clone.target_speed = min(float(clone.target_speed), float(clone.speed))

    def _evaluate(self, base: _Sim, action: int, names: dict[int, str]) -> float:
        p = self.p
        sim = base.clone()
        r0 = sim.step(action, names[action])
        if sim.ego.crashed:
            return r0 - p.crash_penalty
        value0 = r0 - self._gap_cost(sim)
        if p.horizon <= 1:
            return value0 - p.gamma * self._trap_cost(sim)
        best = -math.inf
        crashed = True
        for i, cont in enumerate(p.continuations):
            branch = sim.clone() if i < len(p.continuations) - 1 else sim
            value, hit = self._continue(branch, cont, names)
            best, crashed = max(best, value), crashed and hit
        if crashed:
            # Rare, so the candidate's first decision is replayed on a fresh copy (the copy is
            # deterministic) instead of every candidate keeping a spare copy.
            for cont in p.rescue_continuations:
                branch = base.clone()
                branch.step(action, names[action])
                best = max(best, self._continue(branch, cont, names)[0])
        return value0 + p.gamma * best

    def _continue(self, sim: _Sim, cont: str, names: dict[int, str]) -> tuple[float, bool]:
        """The discounted value of ``horizon - 1`` decisions under ``cont``, and whether it crashed."""
        p = self.p
        index = {v: k for k, v in names.items()}
        total, discount = 0.0, 1.0
        for _ in range(p.horizon - 1):
            name = self._continuation_action(sim, cont)
            r = sim.step(index[name], name)
            if sim.ego.crashed:
                return total + discount * (r - p.crash_penalty), True
            total += discount * (r - self._gap_cost(sim))
            discount *= p.gamma
        return total - discount * self._trap_cost(sim), False

    def _continuation_action(self, sim: _Sim, cont: str) -> str:
        if cont == "brake":
            return "SLOWER"
        if cont == "idle":
            return "IDLE"
        if cont == "follow":
            gap, front_speed = sim.front_gap()
            speed = max(float(sim.ego.speed), 1.0)
            if gap / speed < self.p.follow_brake_gap_s:
                return "SLOWER"
            if gap / speed > self.p.follow_faster_gap_s and front_speed >= speed:
                return "FASTER"
            return "IDLE"
        raise ValueError(f"unknown continuation {cont!r}")

    def _gap_cost(self, sim: _Sim) -> float:
        p = self.p
        if p.gap_penalty <= 0:
            return 0.0
        gap, _ = sim.front_gap()
        time_gap = gap / max(float(sim.ego.speed), 1.0)
        return p.gap_penalty * max(0.0, p.min_time_gap_s - time_gap)

    def _trap_cost(self, sim: _Sim) -> float:
        """Leaf penalty: the vehicle ahead in the ego's target lane is slower than the ego can go."""
        p = self.p
        if p.trap_penalty <= 0:
            return 0.0
        ego = sim.ego
        lane_index = ego.target_lane_index
        front, _ = sim.road.neighbour_vehicles(ego, lane_index)
        if front is None:
            return 0.0
        v_min = float(ego.target_speeds[0])
        if float(front.speed) >= v_min:
            return 0.0
        closing = max(float(ego.speed), v_min) - float(front.speed)
        lane = sim.road.network.get_lane(lane_index)
        gap = lane.local_coordinates(front.position)[0] - lane.local_coordinates(ego.position)[0]
        gap -= 0.5 * (front.LENGTH + ego.LENGTH)
        t_reach = max(gap, 0.0) / closing
        return p.trap_penalty * max(0.0, 1.0 - t_reach / p.trap_time_s)
