"""A privileged driver for highway-env's continuous [acceleration, steering] actions.

Three textbook pieces, all reading the simulator's true state:

- **Lane choice: MOBIL** (Kesting, Treiber & Helbing 2007). A change to an adjacent lane is
  *safe* if the vehicle that would follow the ego there need not brake harder than
  ``safe_decel``, and the gap to the vehicle ahead there is at least ``min_gap_front``; it is
  *worth it* if the ego's IDM acceleration gain (minus ``politeness`` times the followers'
  losses) exceeds ``change_threshold``, with a bias ``keep_right_bias`` towards the right
  (highway-env rewards the rightmost lane). Lane changes are at least ``change_interval``
  apart, and one in progress is abandoned (the ego steers back) if it becomes unsafe.
- **Speed: IDM** (Treiber, Hennecke & Helbing 2000) towards ``desired_speed`` behind the
  vehicle ahead in the target lane and, while changing lanes, also behind the one ahead in
  the lane being left.
- **Steering: the cascade highway-env's ``ControlledVehicle.steering_control`` uses**, with
  time constants for a 5 Hz decision rate: the lateral offset to the target lane's centre
  gives a lateral-speed command, that a heading reference (looking ``pursuit_time`` ahead
  along the lane), the heading error a yaw-rate command, which the kinematic bicycle model
  turns into a steering angle.

The action is ``[acceleration / a_max, steering / steering_max]`` in the ranges of the env's
``ContinuousAction`` (read from ``env.action_type``), clipped to [-1, 1]. The only memory is
the target lane and the time of the last lane change, cleared by :meth:`reset`; given the same
episode the expert is deterministic. One decision costs a pass over the road's vehicles.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from testbed.errors import TestbedError
from testbed.experts.base import Expert


@dataclasses.dataclass(frozen=True)
class ContinuousParams:
    """Tunable parameters of :class:`ContinuousExpert`."""

    desired_speed: float = 30.0
    """IDM desired speed [m/s] (highway-env's speed reward saturates at 30 m/s)."""
    max_accel: float = 3.0
    """IDM maximum acceleration [m/s^2]."""
    comfort_decel: float = 4.0
    """IDM comfortable deceleration [m/s^2]."""
    min_spacing: float = 5.0
    """IDM jam distance, bumper to bumper [m]."""
    time_headway: float = 1.0
    """IDM desired time headway [s]."""
    delta: float = 4.0
    """IDM acceleration exponent."""
    politeness: float = 0.1
    """MOBIL politeness factor."""
    change_threshold: float = 0.1
    """MOBIL acceleration gain needed to change lanes [m/s^2]."""
    keep_right_bias: float = 0.2
    """MOBIL bias for a change to the right (against one to the left) [m/s^2]."""
    safe_decel: float = 3.0
    """Largest braking a lane change may impose on the new follower [m/s^2]."""
    min_gap_front: float = 8.0
    """Smallest bumper-to-bumper gap to the new leader for a lane change [m]."""
    min_gap_rear: float = 5.0
    """Smallest bumper-to-bumper gap to the new follower for a lane change [m]."""
    change_interval: float = 2.0
    """Minimum time between lane-change decisions [s]."""
    lateral_time: float = 1.0
    """Time constant of the lateral-offset loop [s]."""
    heading_time: float = 0.5
    """Time constant of the heading loop [s] (>= 2 decision periods at 5 Hz for stability)."""
    pursuit_time: float = 0.3
    """Look-ahead along the lane for the heading reference [s]."""
    max_approach_angle: float = 0.12
    """Largest heading relative to the lane while moving across it [rad]."""
    lookahead: float = 150.0
    """Range ahead and behind within which vehicles are considered [m]."""

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class ContinuousExpert(Expert):
    """IDM + MOBIL + lane-tracking steering for ``ContinuousAction`` scenarios (see module)."""

    name = "continuous"
    action_types = ("ContinuousAction",)

    def __init__(self, params: ContinuousParams | None = None) -> None:
        self.p = params or ContinuousParams()
        self._target: tuple | None = None
        self._last_change = -math.inf

    def params(self) -> dict[str, Any]:
        return self.p.to_dict()

    def reset(self, env: Any, seed: int) -> None:
        self._target = None
        self._last_change = -math.inf

    # -- longitudinal -------------------------------------------------------------------
    def _idm(self, speed: float, leader: tuple[float, float] | None) -> float:
        """IDM acceleration [m/s^2] at ``speed`` behind ``leader`` = (gap [m], speed [m/s])."""
        p = self.p
        free = 1.0 - (max(speed, 0.0) / p.desired_speed) ** p.delta
        if leader is None:
            return p.max_accel * free
        gap, v_lead = leader
        dv = speed - v_lead
        s_star = p.min_spacing + max(
            0.0, speed * p.time_headway + speed * dv / (2 * math.sqrt(p.max_accel * p.comfort_decel))
        )
        return p.max_accel * (free - (s_star / max(gap, 0.1)) ** 2)

    def _snapshot(self, env: Any, ego: Any) -> None:
        """Positions, speeds, headings and lengths of every other vehicle, as arrays (one
        pass over the road per decision; the lane queries below are then vectorised)."""
        others = [v for v in env.road.vehicles if v is not ego]
        self._pos = np.array([v.position for v in others], dtype=float).reshape(-1, 2)
        self._vel = np.array([v.speed for v in others], dtype=float)
        self._hdg = np.array([v.heading for v in others], dtype=float)
        self._len = np.array([v.LENGTH for v in others], dtype=float)
        self._cache: dict[tuple, tuple] = {}

    def _neighbours(self, env: Any, ego: Any, lane_index: tuple) -> tuple[tuple | None, tuple | None]:
        """(gap [m], speed along the lane [m/s]) of the nearest vehicle ahead of and behind
        the ego in ``lane_index`` (None when there is none within ``lookahead``)."""
        if lane_index in self._cache:
            return self._cache[lane_index]
        lane = env.road.network.get_lane(lane_index)
        s_ego = float(lane.local_coordinates(ego.position)[0])
        if type(lane).__name__ == "StraightLane":
            d = self._pos - np.asarray(lane.start, dtype=float)
            u = np.asarray(lane.direction, dtype=float)
            s = d @ u
            r = d[:, 1] * u[0] - d[:, 0] * u[1]
            lane_heading = np.full(len(s), float(lane.heading))
            half_width = float(lane.width) / 2
        else:
            sr = np.array([lane.local_coordinates(p) for p in self._pos], dtype=float).reshape(-1, 2)
            s, r = sr[:, 0], sr[:, 1]
            lane_heading = np.array([lane.heading_at(x) for x in s], dtype=float)
            half_width = float(lane.width_at(s_ego)) / 2
        ds = s - s_ego
        near = (np.abs(ds) <= self.p.lookahead) & (np.abs(r) <= half_width + 1.0)
        gap = np.abs(ds) - (ego.LENGTH + self._len) / 2
        speed = self._vel * np.cos(self._hdg - lane_heading)
        result: list[tuple | None] = []
        for mask in (near & (ds >= 0), near & (ds < 0)):
            if mask.any():
                i = np.flatnonzero(mask)[np.argmin(gap[mask])]
                result.append((float(gap[i]), float(speed[i])))
            else:
                result.append(None)
        self._cache[lane_index] = (result[0], result[1])
        return self._cache[lane_index]

    # -- lateral ------------------------------------------------------------------------
    def _change_gain(self, env: Any, ego: Any, current: tuple, candidate: tuple) -> float | None:
        """MOBIL incentive of moving to ``candidate`` [m/s^2], or None when unsafe."""
        p = self.p
        new_front, new_rear = self._neighbours(env, ego, candidate)
        old_front, old_rear = self._neighbours(env, ego, current)
        if new_front is not None and new_front[0] < p.min_gap_front:
            return None
        if new_rear is not None:
            if new_rear[0] < p.min_gap_rear:
                return None
            rear_after = self._idm(new_rear[1], (new_rear[0], ego.speed))
            if rear_after < -p.safe_decel:
                return None
            rear_before = self._idm(new_rear[1], None)  # approximation: its current leader is far
            new_rear_loss = rear_before - rear_after
        else:
            new_rear_loss = 0.0
        ego_gain = self._idm(ego.speed, new_front) - self._idm(ego.speed, old_front)
        old_rear_gain = 0.0
        if old_rear is not None:
            behind_old_front = None if old_front is None else (old_front[0] + old_rear[0] + ego.LENGTH, old_front[1])
            old_rear_gain = self._idm(old_rear[1], behind_old_front) - self._idm(old_rear[1], (old_rear[0], ego.speed))
        return ego_gain + p.politeness * (old_rear_gain - new_rear_loss)

    def _change_safe(self, env: Any, ego: Any, lane_index: tuple) -> bool:
        front, rear = self._neighbours(env, ego, lane_index)
        if front is not None and front[0] < self.p.min_gap_front / 2:
            return False
        if rear is not None and (
            rear[0] < self.p.min_gap_rear / 2 or self._idm(rear[1], (rear[0], ego.speed)) < -1.5 * self.p.safe_decel
        ):
            return False
        return True

    def _choose_lane(self, env: Any, ego: Any) -> None:
        net = env.road.network
        current = ego.lane_index
        if self._target is None or self._target[:2] != current[:2]:
            self._target = current
            return
        lane = net.get_lane(self._target)
        _, r = lane.local_coordinates(ego.position)
        changing = self._target != current or abs(float(r)) > 0.5
        if changing:
            if self._target != current and not self._change_safe(env, ego, self._target):
                self._target = current  # abort: steer back
            return
        if env.time - self._last_change < self.p.change_interval:
            return
        best, best_gain = None, self.p.change_threshold
        for side in net.side_lanes(current):
            gain = self._change_gain(env, ego, current, side)
            if gain is None:
                continue
            gain += self.p.keep_right_bias if side[2] > current[2] else -self.p.keep_right_bias
            if gain > best_gain:
                best, best_gain = side, gain
        if best is not None:
            self._target = best
            self._last_change = float(env.time)

    def _steering(self, env: Any, ego: Any) -> float:
        """Steering angle [rad] that tracks the target lane's centre line."""
        p = self.p
        lane = env.road.network.get_lane(self._target)
        s, r = lane.local_coordinates(ego.position)
        speed = max(float(ego.speed), 1.0)
        heading_lane = lane.heading_at(float(s) + speed * p.pursuit_time)
        lateral_speed = -float(r) / p.lateral_time
        approach = math.asin(max(-1.0, min(1.0, lateral_speed / speed)))
        approach = max(-p.max_approach_angle, min(p.max_approach_angle, approach))
        yaw_rate = _wrap(heading_lane + approach - float(ego.heading)) / p.heading_time
        slip = math.asin(max(-1.0, min(1.0, ego.LENGTH / 2 / speed * yaw_rate)))
        return math.atan(2 * math.tan(slip))

    def act(self, obs: Any, env: Any) -> np.ndarray:
        action_type = env.action_type
        if type(action_type).__name__ != "ContinuousAction" or not (action_type.longitudinal and action_type.lateral):
            raise TestbedError(
                "expert:continuous needs a scenario with ContinuousAction (longitudinal and lateral), "
                "e.g. highway-fast-continuous"
            )
        ego = env.vehicle
        self._snapshot(env, ego)
        self._choose_lane(env, ego)
        assert self._target is not None  # _choose_lane always sets it
        front, _ = self._neighbours(env, ego, self._target)
        accel = self._idm(float(ego.speed), front)
        if self._target != ego.lane_index:
            current_front, _ = self._neighbours(env, ego, ego.lane_index)
            accel = min(accel, self._idm(float(ego.speed), current_front))
        a_lo, a_hi = (float(x) for x in action_type.acceleration_range)
        d_lo, d_hi = (float(x) for x in action_type.steering_range)
        action = np.array(
            [2 * (accel - a_lo) / (a_hi - a_lo) - 1, 2 * (self._steering(env, ego) - d_lo) / (d_hi - d_lo) - 1],
            dtype=np.float32,
        )
        return np.clip(action, -1.0, 1.0)
