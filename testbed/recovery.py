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

Both are scenario options (:data:`COST_KEYS`, ``--set crash_recovery=true``,
``--set near_miss_headway_s=0.5``), validated like every other key; with either set, every
step's info gets ``collision`` and ``near_miss`` (0 or 1) and episodes get ``collisions`` and
``near_misses`` counts.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

COST_KEYS: dict[str, Any] = {"crash_recovery": False, "near_miss_headway_s": 0.5}
"""Testbed scenario keys (not highway-env's) and their defaults: collisions recover instead of
ending the episode; the time headway [s] below which a step counts as a near miss."""

CLEAR_GAP_M = 10.0
"""Vehicles on the ego's lane closer than this (centre to centre) are removed on recovery."""


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
    does not end the episode (:func:`recover`)."""

    def __init__(self, env: gym.Env, *, recover_crashes: bool, near_miss_headway_s: float) -> None:
        super().__init__(env)
        self.recover_crashes = recover_crashes
        self.near_miss_headway_s = near_miss_headway_s

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        base: Any = self.env.unwrapped
        collided = bool(base.vehicle.crashed)
        if collided and self.recover_crashes:
            recover(base)
            obs = base.observation_type.observe()
            terminated = bool(base._is_terminated())
        info = dict(info)
        info["collision"] = int(collided)
        info["near_miss"] = int(not collided and time_headway(base) < self.near_miss_headway_s)
        return obs, reward, terminated, truncated, info
