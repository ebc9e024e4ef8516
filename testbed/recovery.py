"""Recoverable-cost driving: a collision is charged and the episode goes on; near misses cost too.

With crashes that end the episode, *any* policy with a constant per-step crash probability
loses return roughly quadratically in the horizon, so a quadratic cost cannot tell
compounding error from a constant hazard. In the recoverable variant a collision is a cost
event (1 per decision step in which the ego collided), not an absorbing state, and the scene
recovers the same way every time:

1. every crashed vehicle other than the ego is removed from the road (the vehicles involved);
2. so is every vehicle whose centre is within :data:`CLEAR_GAP_M` of the ego's, front or back,
   on the ego's lane (the ego may have been half-way into another lane);
3. the ego is put back on its lane's centre line at the same longitudinal position, with the
   lane's heading, its target lane set to that lane, its crash flag and pending impact
   cleared, and its speed set to its target speed (an MDP vehicle's ``target_speed``, else its
   speed before the recovery), and the observation is taken again.

No random number is drawn, so the same seed and actions give the same trajectory, in any
worker. Recovery happens at decision boundaries: within the decision step of a collision the
simulator runs on as highway-env does (the crashed ego brakes), and highway-env's own reward
for that step (its collision penalty) is kept.

A **near miss** needs no collision: a step whose ego has a time headway to the vehicle ahead
in its lane (bumper-to-bumper gap over the ego's speed) below the scenario's
``near_miss_headway_s``.

**Stationary traffic** (``--set stationary_traffic=true``): highway-env places its vehicles
once, at reset, so the traffic around an ego that overtakes it thins out over an episode, and
recovered collisions delete vehicles too: a hazard measured late in a long episode is measured
on an emptier road. With this option the number of vehicles within a window around the ego
(:data:`WINDOW_BEHIND_M` behind to :data:`WINDOW_AHEAD_M` ahead) is held at its value after
reset: after every decision step, vehicles that left the window are removed and new ones (the
scenario's traffic model, its behaviour randomised as highway-env does) are placed at the edge
the traffic flows in from — ahead when vehicles fell behind, behind when they pulled ahead — on
a lane with room (:data:`SPAWN_GAP_M`), drawn from the env's own generator, so a seed still
fixes the whole episode. Each step's info gets ``nearby_vehicles``, the count in the window.

These are scenario options (:data:`COST_KEYS`, ``--set crash_recovery=true``,
``--set near_miss_headway_s=0.5``, ``--set stationary_traffic=true``), validated like every
other key; with any set, every step's info gets ``collision`` and ``near_miss`` (0 or 1) and
episodes get ``collisions`` and ``near_misses`` counts.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

COST_KEYS: dict[str, Any] = {"crash_recovery": False, "near_miss_headway_s": 0.5, "stationary_traffic": False}
"""Testbed scenario keys (not highway-env's) and their defaults: collisions recover instead of
ending the episode; the time headway [s] below which a step counts as a near miss; traffic
density around the ego held constant."""

CLEAR_GAP_M = 10.0
"""Vehicles on the ego's lane closer than this (centre to centre) are removed on recovery."""
WINDOW_AHEAD_M = 150.0
"""Stationary traffic: the window reaches this far ahead of the ego [m] (beyond what the
Kinematics observation sees of the road ahead at highway speeds)."""
WINDOW_BEHIND_M = 60.0
"""Stationary traffic: the window reaches this far behind the ego [m]."""
SPAWN_GAP_M = 20.0
"""Stationary traffic: a new vehicle needs this much room [m] to every vehicle on its lane."""


def _ahead_of_ego(base: Any, vehicle: Any) -> float:
    """Longitudinal distance [m] of ``vehicle`` ahead of the ego (negative behind), along the
    ego's lane."""
    lane = base.road.network.get_lane(base.vehicle.lane_index)
    return float(lane.local_coordinates(vehicle.position)[0] - lane.local_coordinates(base.vehicle.position)[0])


def nearby_vehicles(base: Any) -> int:
    """Vehicles other than the ego within the stationary-traffic window."""
    return sum(
        1
        for v in base.road.vehicles
        if v is not base.vehicle and -WINDOW_BEHIND_M <= _ahead_of_ego(base, v) <= WINDOW_AHEAD_M
    )


def keep_density(base: Any, target: int) -> None:
    """Remove the vehicles that left the window and place new ones until ``target`` vehicles
    are in it again (fewer when no lane has room this step: the next step tries again)."""
    ego = base.vehicle
    kept, left_behind, left_ahead = [], 0, 0
    for v in base.road.vehicles:
        d = _ahead_of_ego(base, v) if v is not ego else 0.0
        if d < -WINDOW_BEHIND_M:
            left_behind += 1
        elif d > WINDOW_AHEAD_M:
            left_ahead += 1
        else:
            kept.append(v)
    base.road.vehicles[:] = kept
    missing = target - (len(kept) - 1)  # kept: the ego and exactly the vehicles in the window
    if missing <= 0:
        return
    from highway_env import utils

    vehicle_class = utils.class_from_path(base.config["other_vehicles_type"])
    template = next((v for v in kept if v is not ego), None)
    ego_lane = base.road.network.get_lane(ego.lane_index)
    s_ego = float(ego_lane.local_coordinates(ego.position)[0])
    # Vehicles come in from where the traffic flows from: ahead when it fell behind the ego.
    from_ahead = left_ahead <= left_behind
    _from, _to, _ = ego.lane_index
    lanes = list(range(len(base.road.network.graph[_from][_to])))
    rng = base.road.np_random
    for _ in range(missing):
        order = [lanes[i] for i in rng.permutation(len(lanes))]
        offset = float(rng.uniform(0.0, SPAWN_GAP_M))
        s = s_ego + (WINDOW_AHEAD_M - offset if from_ahead else -WINDOW_BEHIND_M + offset)
        for lane_id in order:
            lane = base.road.network.get_lane((_from, _to, lane_id))
            on_lane = [lane.local_coordinates(v.position)[0] for v in base.road.vehicles if v.lane_index[2] == lane_id]
            if all(abs(x - s) >= SPAWN_GAP_M for x in on_lane):
                speed = float(rng.uniform(*vehicle_class.DEFAULT_INITIAL_SPEEDS))
                vehicle = vehicle_class(base.road, lane.position(s, 0.0), lane.heading_at(s), speed)
                vehicle.randomize_behavior()
                if template is not None:
                    vehicle.check_collisions = template.check_collisions
                base.road.vehicles.append(vehicle)
                break


def time_headway(base: Any) -> float:
    """Bumper-to-bumper gap to the vehicle ahead in the ego's lane over the ego's speed [s]
    (infinite with no vehicle ahead or a stopped ego)."""
    ego = base.vehicle
    front, _ = base.road.neighbour_vehicles(ego, ego.lane_index)
    if front is None:
        return float("inf")
    lane = base.road.network.get_lane(ego.lane_index)
    gap = lane.local_coordinates(front.position)[0] - lane.local_coordinates(ego.position)[0]
    gap -= (front.LENGTH + ego.LENGTH) / 2
    return float(max(gap, 0.0) / ego.speed) if ego.speed > 0 else float("inf")


def recover(base: Any) -> None:
    """Undo a collision of the ego in place, as the module docstring describes."""
    ego = base.vehicle
    lane = base.road.network.get_lane(ego.lane_index)
    s, _ = lane.local_coordinates(ego.position)
    keep = []
    for v in base.road.vehicles:
        if v is ego:
            keep.append(v)
            continue
        if getattr(v, "crashed", False):
            continue
        if (
            getattr(v, "lane_index", None) == ego.lane_index
            and abs(lane.local_coordinates(v.position)[0] - s) < CLEAR_GAP_M
        ):
            continue
        keep.append(v)
    base.road.vehicles[:] = keep
    ego.position = lane.position(s, 0.0)
    ego.heading = lane.heading_at(s)
    ego.target_lane_index = ego.lane_index
    ego.crashed = False
    ego.impact = None
    ego.speed = float(getattr(ego, "target_speed", ego.speed))


class CostWrapper(gym.Wrapper):
    """Per-step ``collision`` and ``near_miss`` infos; with ``recover_crashes``, a collision
    does not end the episode (:func:`recover`); with ``stationary_traffic``, the traffic around
    the ego is held at its density after reset (:func:`keep_density`) and each step's info has
    ``nearby_vehicles``."""

    def __init__(
        self, env: gym.Env, *, recover_crashes: bool, near_miss_headway_s: float, stationary_traffic: bool = False
    ) -> None:
        super().__init__(env)
        self.recover_crashes = recover_crashes
        self.near_miss_headway_s = near_miss_headway_s
        self.stationary_traffic = stationary_traffic
        self.target = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if self.stationary_traffic:
            self.target = nearby_vehicles(self.env.unwrapped)
            info = {**info, "nearby_vehicles": self.target}
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        base: Any = self.env.unwrapped
        collided = bool(base.vehicle.crashed)
        if collided and self.recover_crashes:
            recover(base)
        if self.stationary_traffic:
            keep_density(base, self.target)
        if (collided and self.recover_crashes) or self.stationary_traffic:
            obs = base.observation_type.observe()
            terminated = bool(base._is_terminated())
        info = dict(info)
        if self.stationary_traffic:
            info["nearby_vehicles"] = nearby_vehicles(base)
        info["collision"] = int(collided)
        info["near_miss"] = int(not collided and time_headway(base) < self.near_miss_headway_s)
        return obs, reward, terminated, truncated, info


def cost_columns(record: Any) -> dict[str, Any]:
    """Per-episode columns of an episode record (:class:`testbed.rollout.EpisodeRecord`) of a
    scenario with per-step costs: ``cost`` (decision steps with a collision),
    ``collision_steps`` (their indices, as text), ``near_misses``, and with stationary traffic
    ``mean_nearby`` and ``nearby`` (the count after every step, as text); without it NaN and
    an empty text."""
    infos = list(record.infos)
    collisions = [t for t, i in enumerate(infos) if i["collision"]]
    nearby = [int(i["nearby_vehicles"]) for i in infos if "nearby_vehicles" in i]
    counted = bool(infos) and len(nearby) == len(infos)
    return {
        "cost": len(collisions),
        "collision_steps": " ".join(map(str, collisions)),
        "near_misses": sum(int(i["near_miss"]) for i in infos),
        "mean_nearby": sum(nearby) / len(nearby) if counted else float("nan"),
        "nearby": " ".join(map(str, nearby)) if counted else "",
    }
