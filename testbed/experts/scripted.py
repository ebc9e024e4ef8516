"""A privileged, rule-based driver for highway-env's discrete meta-actions.

The expert reads the simulator's true state (lanes, vehicles, speeds, intentions) and picks
a meta-action with closed-form predictions only; it never copies or steps the environment.

Design, in one paragraph: every decision looks at a few *lane frames* (the lane the ego is
in, the side lanes it could move to, and the lanes its route merges into a little further
ahead). Each frame is the lane's own geometry, extended (a straight lane becomes an infinite
line, a ring segment becomes the whole circle), and collects the vehicles driving along it,
vehicles announcing a lane change into it and vehicles on forbidden (ramp) lanes beside it.
For every candidate action the ego's speed profile is predicted exactly as
:class:`~highway_env.vehicle.controller.MDPVehicle` will track it (first-order response
towards the discrete target speed), followed by "SLOWER at every later decision" as the
fallback. An action is *safe* if, under that fallback, the ego keeps a minimum gap to every
vehicle ahead (predicted at constant speed, or braking if it brakes now) and, in a lane it
is entering, every vehicle behind can stop in time after a reaction delay. Vehicles that
cross the ego's path instead of following a lane (roundabout entries) are checked with a
constant-velocity 2D distance test. Before entering a roundabout ring the ego yields: an
action is unsafe if, holding its speed, the ego would occupy the entry point within a time
buffer of a ring vehicle passing it, unless the braking fallback still stops before the
entry. Among safe actions the expert keeps the fastest speed, moves to a lane whose traffic
allows a clearly higher sustained speed (a lane with a vehicle slower than the ego's lowest
target speed ahead is penalised: the ego would get stuck behind it, often boxed in), and
otherwise drifts right; while a ramp vehicle nearby still
has to merge, the rightmost lane is penalised so the ego moves out of its way early.

Rule sets. ``ScriptedParams.rules`` selects them: 2 (expert ``scripted``, the default teacher of
every experiment) changes seven rules of 1 (expert ``scripted-v1``, the original driver, kept
for comparison and for records made with it). Rule set 2 was fixed on tuning seeds only:

1. *Strict horizon*: an action is safe only if no gap is violated at any predicted sample; rule
   set 1 accepted a violation at exactly ``horizon``, took FASTER beside a car abreast with a
   slow car ahead, then had to brake level with the side car and hit the slow one.
2. *Speed for the gap*: behind a leader slower than ``close_margin`` above the lowest target
   speed, the ego keeps the fastest safe speed at which closing the gap still takes
   ``close_time``. DiscreteMetaAction's MDPVehicle cannot target less than its lowest target
   speed (10 m/s on the highway presets), so the ego cannot follow a slower leader; every metre
   of gap it does not burn is time to find a lane out.
3. *Longer fallback look-ahead*: when no speed keeps the lane safe, time to contact is predicted
   over ``fallback_horizon`` (not ``horizon``), so a lane change that postpones contact is taken
   while the side lanes are still open rather than once contact is within ``horizon``.
4. *Room to steer around a stopped vehicle*: ``stop_gap`` to a stopped vehicle ahead, and
   during a lane change the lane being left is checked for contact only until the ego has driven
   ``lane_clear_distance`` (or ``lane_change_time``); rule set 1 started a lane change at
   standstill behind a stopped car and never moved again (target speeds that include 0).
5. *Ties*: a tie between LANE_LEFT and LANE_RIGHT goes to the faster lane, then to the right;
   rule set 1 took whichever came first in its action dict.
6. *No lane changes on a roundabout ring* (``ring_lane_changes``): rule set 1 moved to the
   other ring lane for speed and cut back across ring traffic at its exit.
7. *Stopped bodies in the path* (``intrusion_speed``, ``intrusion_margin``): a (nearly) stopped
   road user whose body reaches into the ego's path along a lane is an obstacle in that lane
   whatever its heading; rule set 1 saw only road users aligned with a lane or moving, and drove
   into cars stopped at a ring entry with their nose in the ring.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from testbed.experts.base import Expert

_LANE_LEFT, _IDLE, _LANE_RIGHT, _FASTER, _SLOWER = "LANE_LEFT", "IDLE", "LANE_RIGHT", "FASTER", "SLOWER"


@dataclasses.dataclass(frozen=True)
class ScriptedParams:
    """Tunable parameters of :class:`ScriptedExpert`."""

    horizon: float = 5.0
    """Look-ahead of the gap checks [s]."""
    sample_dt: float = 0.2
    """Spacing of the predicted samples [s] (rounded to whole simulation frames)."""
    min_gap_front: float = 3.0
    """Bumper-to-bumper gap that must remain to a vehicle ahead [m]."""
    min_gap_rear: float = 3.0
    """Bumper-to-bumper gap that must remain to a vehicle behind in a lane being entered [m]."""
    front_brake_time: float = 1.0
    """How long a vehicle ahead that is braking now is assumed to keep braking [s]."""
    rear_reaction: float = 0.6
    """Delay before a vehicle behind reacts to the ego cutting in [s]."""
    rear_decel: float = 4.0
    """Deceleration a vehicle behind is assumed to apply once it reacts [m/s^2]."""
    lateral_margin: float = 1.0
    """Extra lateral distance beyond half a lane width within which a vehicle is in a lane [m]."""
    max_heading_error: float = 0.6
    """Largest heading difference to the lane for a vehicle to count as following it [rad]."""
    lookahead: float = 120.0
    """Distance ahead within which vehicles are considered [m]."""
    lookbehind: float = 60.0
    """Distance behind within which vehicles are considered [m]."""
    utility_horizon: float = 10.0
    """Lane-speed estimate: the mean speed the ego could sustain over this time behind the
    traffic ahead in a lane, each vehicle ahead holding its speed [s]."""
    lane_change_gain: float = 2.0
    """Minimum lane-speed advantage to change lanes [m/s]."""
    right_lane_bonus: float = 1.5
    """Utility of one lane further right, in lane-speed units [m/s]."""
    merge_decel: float = 3.0
    """Braking assumed of a vehicle on a ramp lane beside the ego's lane, about to merge [m/s^2]."""
    lane_change_time: float = 1.0
    """Time during which a lane change still needs room in the lane being left [s]."""
    mobil_window: tuple[float, float] = (-5.0, 40.0)
    """Vehicles beside a lane within these longitudinal offsets from the ego (behind, ahead)
    are asked whether their lane-change model (MOBIL) would move them into it now; if so they
    count as in it [m]."""
    trap_time: float = 60.0
    """A lane with a vehicle ahead slower than the ego's lowest target speed is a trap (the ego
    cannot follow it and will have to leave, possibly boxed in) if the ego would reach it
    within this time at that lowest speed [s]."""
    trap_penalty: float = 0.5
    """Utility loss per second by which the trap is closer than ``trap_time`` [m/s per s]."""
    crossing_horizon: float = 3.0
    """Look-ahead of the 2D check for vehicles crossing the ego's path [s]."""
    crossing_distance: float = 7.0
    """Centre distance below which a crossing vehicle is a conflict [m]."""
    ramp_penalty: float = 6.0
    """Utility loss of the rightmost lane while a ramp vehicle near the ego still has to merge
    into it [m/s]."""
    ramp_window: tuple[float, float] = (-20.0, 150.0)
    """Longitudinal offsets from the ego (behind, ahead) within which a ramp vehicle counts [m]."""
    yield_entry_margin: float = 4.0
    """Yield rule (entering a ring): the ego occupies the ring entry point from this distance
    before it [m]..."""
    yield_clear: float = 8.0
    """...until this distance after it [m]."""
    yield_pass_margin: float = 6.0
    """A ring vehicle occupies the entry point while within this arc distance of it [m]."""
    yield_buffer: float = 1.0
    """Time that must separate the ego's and a ring vehicle's occupancy of the entry [s]."""
    rules: int = 2
    """Rule set. 2: the fixed rules (expert ``scripted``, the default teacher; module docstring,
    "Rule sets"). 1: the original rules (expert ``scripted-v1``). The fields below it are read
    by rule set 2 only."""
    fallback_horizon: float = 8.0
    """Rule set 2: look-ahead of the time-to-contact ranking when no speed keeps the lane safe [s]."""
    stop_gap: float = 6.0
    """Rule set 2: bumper-to-bumper gap kept to a stopped vehicle ahead (room to steer around it) [m]."""
    close_time: float = 8.0
    """Rule set 2: the ego keeps the fastest safe speed at which closing the gap to its leader
    takes at least this long (0: always the fastest safe speed, as rule set 1) [s]."""
    close_margin: float = 5.0
    """Rule set 2: ``close_time`` applies to leaders slower than the lowest target speed plus
    this (a faster leader can be followed at the lowest target speed) [m/s]."""
    ring_lane_changes: bool = False
    """Rule set 2: whether the ego may change lanes on a roundabout ring."""
    intrusion_speed: float = 1.0
    """Rule set 2: a road user slower than this whose body reaches into the ego's path along a
    lane (a car stopped at a ring entry with its nose in the ring) is an obstacle in that lane,
    whatever its heading [m/s]..."""
    intrusion_margin: float = 0.3
    """...where reaching in means a corner within half the ego's width plus this of the lane's
    centre line [m]."""
    lane_clear_distance: float = 5.0
    """Rule set 2: during a lane change, the lane being left matters (contact only) until the
    ego has driven this far or for ``lane_change_time``, whichever is later [m]."""

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-serialisable dict.

        Rule set 1 is recorded without ``rules`` and the fields only rule set 2 reads, exactly
        as before they existed, so that records made with it (demonstration and clone
        metadata, which :mod:`testbed.verify` compares against the current parameters) still
        match.
        """
        out = dataclasses.asdict(self)
        if self.rules == 1:
            for name in _V2_FIELDS:
                del out[name]
        return out


_V2_FIELDS = (
    "rules",
    "fallback_horizon",
    "stop_gap",
    "close_time",
    "close_margin",
    "ring_lane_changes",
    "intrusion_speed",
    "intrusion_margin",
    "lane_clear_distance",
)
"""Fields of :class:`ScriptedParams` that rule set 1 neither reads nor records."""


@dataclasses.dataclass
class _Other:
    """A nearby road user, projected on one lane frame."""

    s: float
    """Longitudinal offset from the ego along the frame [m] (positive: ahead)."""
    speed: float
    """Speed along the frame [m/s]."""
    accel: float
    """Current longitudinal acceleration, clipped to <= 0 [m/s^2]."""
    length: float
    """Vehicle length [m]."""


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _local(lane: Any, x: float, y: float) -> tuple[float, float]:
    """Longitudinal and lateral coordinates of (x, y) in a lane's extended geometry [m]."""
    kind = type(lane).__name__
    if kind == "StraightLane":
        dx, dy = x - float(lane.start[0]), y - float(lane.start[1])
        ux, uy = float(lane.direction[0]), float(lane.direction[1])
        return dx * ux + dy * uy, -dx * uy + dy * ux
    if kind == "CircularLane":
        dx, dy = x - float(lane.center[0]), y - float(lane.center[1])
        phi = lane.start_phase + _wrap(math.atan2(dy, dx) - lane.start_phase)
        r = math.hypot(dx, dy)
        return lane.direction * (phi - lane.start_phase) * lane.radius, lane.direction * (lane.radius - r)
    s, r = lane.local_coordinates((x, y))
    return float(s), float(r)


def _same_geometry(a: Any, b: Any) -> bool:
    """Whether two lanes are pieces of one extended line or circle."""
    if type(a).__name__ == type(b).__name__ == "StraightLane":
        _, lat = _local(a, float(b.start[0]), float(b.start[1]))
        return abs(lat) < 0.5 and abs(_wrap(float(a.heading) - float(b.heading))) < 0.05
    if type(a).__name__ == type(b).__name__ == "CircularLane":
        return (
            abs(a.radius - b.radius) < 0.5 and math.hypot(*(a.center - b.center)) < 0.5 and a.direction == b.direction
        )
    return False


class _Frame(TypedDict):
    """Road users projected on one lane's geometry (:meth:`ScriptedExpert._frame`)."""

    users: list[_Other]
    """The nearest three ahead and two behind, by arc length relative to the ego."""
    entering: bool
    """Whether the ego would be entering this lane (rear vehicles matter)."""
    ego_len: float
    """The ego's length [m]."""
    s_ego: float
    """The ego's arc length on the lane [m] (minus the distance to the lane's start)."""
    offset: float | None
    """Distance the ego still drives before the lane starts [m]; None beside or on it."""


@dataclasses.dataclass
class _Decision:
    """Scratch state of one :meth:`ScriptedExpert.act` call, shared by its checks: which road
    users the lane frames saw (the 2D crossing check covers the others), memoised MOBIL
    queries, and the ring-entry conflicts."""

    ring: tuple[float, list] | None
    """:meth:`ScriptedExpert._ring_conflicts` of the current state."""
    framed_ids: set[int] = dataclasses.field(default_factory=set)
    """``id`` of every road user counted in some lane frame."""
    aligned_ids: set[int] = dataclasses.field(default_factory=set)
    """``id`` of road users aligned with an examined lane but outside it."""
    mobil: dict[tuple, bool] = dataclasses.field(default_factory=dict)
    """(vehicle id, lane index) -> whether the vehicle's MOBIL model recommends that lane."""
    cross: list[tuple[float, float, float, float]] | None = None
    """Positions and velocities of the road users left to the crossing check (None: not yet
    computed)."""
    ego_path: tuple[list, float] | None = None
    """The ego's route lanes and its arc length on the first (for the crossing check)."""


class ScriptedExpert(Expert):
    """Rule-based privileged driver (see the module docstring for the rules).

    Args:
        params: rule parameters; defaults to :class:`ScriptedParams`.
    """

    name = "scripted"

    def __init__(self, params: ScriptedParams | None = None) -> None:
        self.p = params or ScriptedParams()
        # A cache of the road network, not of the state: whether the map has a ring at all.
        self._net: Any = None
        self._net_has_ring = False

    def params(self) -> dict[str, Any]:
        """The rule parameters, for provenance."""
        return self.p.to_dict()

    def reset(self, env: Any, seed: int) -> None:
        """Nothing to clear: decisions depend on the current state alone (the instance caches
        only a property of the road network, keyed on the network object)."""

    # ------------------------------------------------------------------ decision

    def act(self, obs: Any, env: Any) -> int:
        """Pick a meta-action index for the current state.

        Args:
            obs: unused (the expert reads the simulator).
            env: the unwrapped highway-env environment (read only).

        Returns:
            The index of a discrete meta-action.
        """
        ego = env.vehicle
        idx = env.action_type.actions_indexes
        net = env.road.network
        p = self.p
        others = self._nearby(env, ego)
        speeds = [float(v) for v in ego.target_speeds]
        cur_index = ego.speed_to_index(ego.speed)
        cands: dict[str, int] = {}
        if _FASTER in idx and cur_index + 1 < len(speeds):
            cands[_FASTER] = int(cur_index) + 1
        cands[_IDLE] = int(ego.speed_index)
        if _SLOWER in idx:
            cands[_SLOWER] = max(int(cur_index) - 1, 0)
        v2 = p.rules >= 2

        def make_profiles(horizon: float) -> dict[int, tuple[list, list]]:
            return {
                k: (
                    self._profile(env, ego, speeds, k, brake=True, horizon=horizon),
                    self._profile(env, ego, speeds, k, brake=False, horizon=horizon),
                )
                for k in set(cands.values())
            }

        profiles = make_profiles(p.horizon)

        dec = _Decision(ring=self._ring_conflicts(env, ego, others))
        changing = ego.lane_index != ego.target_lane_index
        frames = self._chain_frames(dec, env, ego, others)
        left_frame = None
        if changing:
            left = self._frame(dec, net.get_lane(ego.lane_index), ego, others, entering=False, index=ego.lane_index)
            if v2:
                left_frame = left  # checked on its own (see speed_ttv)
            else:
                frames.append(left)
        side_frames = {}
        on_ring = v2 and not p.ring_lane_changes and type(net.get_lane(ego.lane_index)).__name__ == "CircularLane"
        if not changing and not on_ring:
            for action, delta in ((_LANE_LEFT, -1), (_LANE_RIGHT, 1)):
                side = self._side_lane(net, ego, delta) if action in idx else None
                if side is not None:
                    side_frames[action] = (
                        side,
                        self._frame(dec, net.get_lane(side), ego, others, entering=True, index=side),
                    )

        def speed_ttv(
            k: int, frames_: list, until: float = math.inf, contact: bool = False, profs: dict | None = None
        ) -> float:
            brake, hold = (profs or profiles)[k]
            ttv = min((self._frame_ttv(fr, brake, hold, until, contact) for fr in frames_), default=math.inf)
            if left_frame is not None and frames_ is frames:
                # Rule set 2: the lane being left only until the ego has moved out of it, and
                # only contact counts (the ego is already moving away sideways).
                clear = next((t for t, d, _ in brake if d >= p.lane_clear_distance), math.inf)
                ttv = min(ttv, self._frame_ttv(left_frame, brake, hold, max(clear, p.lane_change_time), True))
            ttv = min(ttv, self._yield_ttv(dec, brake, hold))
            return min(ttv, self._crossing_ttv(dec, env, ego, others, hold))

        back_frame = None
        if changing:
            back_frame = self._frame(
                dec, net.get_lane(ego.lane_index), ego, others, entering=False, index=ego.lane_index
            )

        def all_ttv(contact: bool = False, profs: dict | None = None) -> dict[str, float]:
            out = {a: speed_ttv(k, frames, contact=contact, profs=profs) for a, k in cands.items()}
            for action, (_side, fr) in side_frames.items():
                k = cands[_IDLE]
                out[action] = min(
                    speed_ttv(k, [fr], contact=contact, profs=profs),
                    speed_ttv(k, frames[:1], until=p.lane_change_time, contact=contact, profs=profs),
                )
            if changing:
                # Aborting returns to the lane still under the ego's centre.
                back = _LANE_LEFT if ego.target_lane_index[2] > ego.lane_index[2] else _LANE_RIGHT
                if back in idx:
                    out[back] = speed_ttv(cands[_IDLE], [back_frame], contact=contact, profs=profs)
            return out

        ttv = all_ttv()
        if v2:
            # A violation at the last sample (t == horizon) is a violation too.
            safe = {a: t > p.horizon for a, t in ttv.items()}
        else:
            safe = {a: t >= p.horizon for a, t in ttv.items()}
        v_min, v_max = speeds[0], speeds[-1]

        if not any(safe.get(a) for a in cands):
            # No speed keeps the current lane safe. Rank the actions by the time to actual
            # contact (no gap margins): a margin already violated in the current lane (a
            # leader barely slower than the ego's lowest speed) is no reason to cut into an
            # occupied side lane. Among contact-free actions a fully safe one (a lane change)
            # comes first; remaining ties keep the lane and brake.
            if v2:
                return int(idx[self._fallback_v2(all_ttv, make_profiles, ttv, side_frames, v_min, v_max)])
            ttc = all_ttv(contact=True)
            best = max(
                ttc,
                key=lambda a: (
                    min(ttc[a], p.horizon),
                    ttv[a] >= p.horizon,
                    a not in (_LANE_LEFT, _LANE_RIGHT),
                    ttv[a],
                    a == _SLOWER,
                ),
            )
            return int(idx[best])

        if side_frames and (safe.get(_IDLE) or safe.get(_SLOWER)):
            ramp = self._ramp_active(net, ego, others)

            def lane_bonus(index: tuple) -> float:
                bonus = p.right_lane_bonus * index[2]
                if ramp and not any(not ln.forbidden for ln in net.graph[index[0]][index[1]][index[2] + 1 :]):
                    bonus -= p.ramp_penalty  # the rightmost lane: ramp traffic will merge into it
                return bonus

            cur_util = self._lane_utility(frames[0], v_min, v_max) + lane_bonus(ego.target_lane_index)
            best_change: tuple[float, str] | None = None
            for action, (side, fr) in side_frames.items():
                if not safe[action]:
                    continue
                util = self._lane_utility(fr, v_min, v_max) + lane_bonus(side)
                if best_change is None or util > best_change[0]:
                    best_change = (util, action)
                elif v2 and util == best_change[0] and action == _LANE_RIGHT:
                    best_change = (util, action)  # a tie keeps right, whatever the dict order
            if best_change is not None and (
                best_change[0] > cur_util + p.lane_change_gain
                or (best_change[1] == _LANE_RIGHT and best_change[0] >= cur_util + 0.5 * p.right_lane_bonus)
            ):
                return int(idx[best_change[1]])

        order: tuple[str, ...] = (_FASTER, _IDLE, _SLOWER)
        if v2 and p.close_time > 0:
            # Rule set 2: the fastest safe speed that still takes ``close_time`` to close the
            # gap to the leader; the ego cannot follow a leader slower than its lowest speed,
            # so the gap is the time it has to find a way out.
            lead = min((u for u in frames[0]["users"] if u.s >= 0), key=lambda u: u.s, default=None)
            if lead is not None and lead.speed < v_min + p.close_margin:
                gap = lead.s - (frames[0]["ego_len"] + lead.length) / 2 - p.min_gap_front

                def slow_enough(a: str) -> bool:
                    return gap >= p.close_time * (speeds[cands[a]] - lead.speed)

                roomy = [a for a in order if a in cands and safe.get(a) and slow_enough(a)]
                if roomy:
                    order = (roomy[0],)
                else:
                    order = (_SLOWER, _IDLE, _FASTER)
        for action in order:
            if safe.get(action):
                if action == _FASTER and cands[_FASTER] == cands[_IDLE]:
                    action = _IDLE
                return int(idx[action])
        return int(idx[_IDLE])

    def _fallback_v2(
        self,
        all_ttv: Callable[..., dict[str, float]],
        make_profiles: Callable[[float], dict],
        ttv: dict[str, float],
        side_frames: dict[str, tuple[tuple, _Frame]],
        v_min: float,
        v_max: float,
    ) -> str:
        """Rule set 2's choice when no speed keeps the current lane safe.

        Ranks the actions as rule set 1 does (time to contact first, then a fully safe lane
        change, then keeping the lane, then the time to a margin violation, then braking), but
        the time to contact is predicted over ``fallback_horizon`` instead of ``horizon``: at
        the lowest target speed a slow leader is often reached after more than ``horizon``, and
        ranking every action as contact-free until then keeps the ego in its lane until the side
        lanes have closed. Remaining ties between the two lane changes go to the lane of higher
        lane-speed estimate, then to the right (never to dict order).

        Args:
            all_ttv: ``act``'s time-to-violation of every candidate action.
            make_profiles: ``act``'s ego speed profiles for a prediction horizon.
            ttv: the time to a margin violation of every candidate action [s].
            side_frames: the side lanes' (lane index, frame) by lane-change action.
            v_min: the ego's lowest target speed [m/s].
            v_max: the ego's highest target speed [m/s].

        Returns:
            The action name.
        """
        p = self.p
        h = max(p.fallback_horizon, p.horizon)
        ttc = all_ttv(contact=True, profs=make_profiles(h))
        util = {a: self._lane_utility(fr, v_min, v_max) for a, (_side, fr) in side_frames.items()}

        def key(a: str) -> tuple:
            return (
                min(ttc[a], h),
                ttv[a] > p.horizon,
                a not in (_LANE_LEFT, _LANE_RIGHT),
                ttv[a],
                a == _SLOWER,
                util.get(a, 0.0),
                a == _LANE_RIGHT,
            )

        return max(ttc, key=key)

    # ------------------------------------------------------------------ helpers

    def _nearby(self, env: Any, ego: Any) -> list[tuple[Any, float, float]]:
        """Road users within the look-ahead radius, with their world position."""
        ex, ey = float(ego.position[0]), float(ego.position[1])
        r = max(self.p.lookahead, self.p.lookbehind)
        out = []
        for v in list(env.road.vehicles) + list(env.road.objects):
            if v is ego:
                continue
            x, y = float(v.position[0]), float(v.position[1])
            if abs(x - ex) < r and abs(y - ey) < r:
                out.append((v, x, y))
        return out

    @staticmethod
    def _may_gain(v: Any) -> bool:
        """Whether MOBIL (politeness 0) could find a lane-change gain for ``v``: its predicted
        acceleration in any lane is at most its free-road acceleration, so if it already
        accelerates within the required gain of that, it has nothing to gain (cheap filter
        before the full MOBIL query)."""
        try:
            if float(v.POLITENESS) != 0.0:
                return True
            target = float(v.target_speed)
            a_free = float(v.COMFORT_ACC_MAX) * (
                1 - (max(float(v.speed), 0.0) / max(abs(target), 1e-3)) ** float(v.DELTA)
            )
            return a_free - float(v.action.get("acceleration", 0.0)) >= float(v.LANE_CHANGE_MIN_ACC_GAIN)
        except (AttributeError, TypeError, ValueError):
            return True

    def _ramp_active(self, net: Any, ego: Any, others: list) -> bool:
        """Whether a vehicle on a forbidden (ramp) lane is within ``ramp_window`` of the ego."""
        lane = net.get_lane(ego.target_lane_index)
        s_ego, _ = _local(lane, float(ego.position[0]), float(ego.position[1]))
        lo, hi = self.p.ramp_window
        for v, x, y in others:
            li = getattr(v, "lane_index", None)
            if li is not None and net.get_lane(li).forbidden and lo < _local(lane, x, y)[0] - s_ego < hi:
                return True
        return False

    def _side_lane(self, net: Any, ego: Any, delta: int) -> tuple | None:
        _from, _to, _id = ego.target_lane_index
        new = _id + delta
        if new < 0 or new >= len(net.graph[_from][_to]):
            return None
        lane = net.get_lane((_from, _to, new))
        if lane.forbidden or not lane.is_reachable_from(ego.position):
            return None
        return (_from, _to, new)

    def _chain_frames(self, dec: _Decision, env: Any, ego: Any, others: list) -> list[_Frame]:
        """Frames of the current lane and of the lanes the route enters ahead."""
        net = env.road.network
        index = ego.target_lane_index
        lane = net.get_lane(index)
        frames = [self._frame(dec, lane, ego, others, entering=False, index=index)]
        s_ego, _ = _local(lane, float(ego.position[0]), float(ego.position[1]))
        dist = lane.length - s_ego
        route = list(ego.route) if ego.route else None
        last = lane
        reach = max(40.0, float(ego.speed) * 3.0)
        while dist < reach:
            end = lane.position(lane.length, 0)
            try:
                nxt = net.next_lane(index, route=route, position=end, np_random=None)
            except (KeyError, IndexError, ValueError, AttributeError):
                break
            if nxt == index:
                break
            index, lane = nxt, net.get_lane(nxt)
            if not _same_geometry(last, lane):
                frames.append(self._frame(dec, lane, ego, others, entering=True, offset=dist, index=index))
                last = lane
            dist += lane.length
        return frames

    def _frame(
        self,
        dec: _Decision,
        lane: Any,
        ego: Any,
        others: list,
        entering: bool,
        offset: float | None = None,
        index: tuple | None = None,
    ) -> _Frame:
        """Project the nearby road users on a lane's extended geometry.

        Args:
            dec: this decision's scratch state (records which road users the frame saw).
            lane: the lane.
            ego: the ego vehicle.
            others: output of :meth:`_nearby`.
            entering: whether the ego would be entering this lane (rear vehicles matter).
            offset: distance the ego still has to drive before the lane starts; ``None`` if
                the ego is beside or on the lane.
            index: the lane's index; if given, a vehicle in a neighbouring lane of the same road
                that has not announced a change counts as entering this lane when its own
                lane-change model (MOBIL) recommends the change now.
        """
        p = self.p
        ex, ey = float(ego.position[0]), float(ego.position[1])
        if offset is None:
            s_ego, _ = _local(lane, ex, ey)
        else:
            s_ego = -offset
        circ = 2 * math.pi * lane.radius if type(lane).__name__ == "CircularLane" else None
        half = lane.width_at(0) / 2 + p.lateral_margin
        net = ego.road.network
        users: list[_Other] = []
        for v, x, y in others:
            s, lat = _local(lane, x, y)
            ds = s - s_ego
            if circ is not None:
                ds = (ds + circ / 2) % circ - circ / 2
            if not -p.lookbehind < ds < p.lookahead:
                continue
            heading_err = _wrap(float(v.heading) - float(lane.heading_at(s)))
            inside = abs(lat) <= half and abs(heading_err) <= p.max_heading_error
            merging = False
            if not inside and abs(lat) <= half + lane.width_at(0):
                # Announced lane change into this lane, or a ramp lane that must merge.
                li = getattr(v, "lane_index", None)
                ti = getattr(v, "target_lane_index", None)
                try:
                    if li is not None and net.get_lane(li).forbidden:
                        inside = merging = abs(heading_err) <= p.max_heading_error
                    elif ti is not None and ti != li:
                        tl = net.get_lane(ti)
                        ts, _ = _local(tl, x, y)
                        cx, cy = tl.position(ts, 0)
                        _, tlat = _local(lane, float(cx), float(cy))
                        inside = abs(tlat) < lane.width_at(0) / 2
                    elif (
                        index is not None
                        and li is not None
                        and li[:2] == index[:2]
                        and abs(li[2] - index[2]) == 1
                        and p.mobil_window[0] < ds < p.mobil_window[1]
                        and hasattr(v, "mobil")
                        and float(v.speed) >= 1
                        and self._may_gain(v)
                    ):
                        key = (id(v), index)
                        if key not in dec.mobil:
                            dec.mobil[key] = bool(v.mobil(index))
                        inside = dec.mobil[key]
                except (KeyError, IndexError):
                    pass
            intruding = None
            if not inside and p.rules >= 2 and float(v.speed) < p.intrusion_speed:
                intruding = self._intrusion(lane, v, x, y, float(ego.WIDTH))
                inside = intruding is not None
            if not inside:
                if abs(heading_err) <= p.max_heading_error:
                    dec.aligned_ids.add(id(v))
                continue
            if intruding is not None:  # a (nearly) stopped body poking into the lane
                ds = intruding + float(v.LENGTH) / 2 - s_ego
                if circ is not None:
                    ds = (ds + circ / 2) % circ - circ / 2
                heading_err = 0.0
            speed = float(v.speed) * math.cos(heading_err)
            accel = min(float(getattr(v, "action", {}).get("acceleration", 0.0)), 0.0)
            if merging:
                accel = min(accel, -p.merge_decel)
            users.append(_Other(ds, speed, accel, float(v.LENGTH)))
            dec.framed_ids.add(id(v))
        ahead = sorted((u for u in users if u.s >= 0), key=lambda u: u.s)[:3]
        behind = sorted((u for u in users if u.s < 0), key=lambda u: -u.s)[:2]
        users = ahead + behind
        return _Frame(users=users, entering=entering, ego_len=float(ego.LENGTH), s_ego=s_ego, offset=offset)

    def _intrusion(self, lane: Any, v: Any, x: float, y: float, ego_width: float) -> float | None:
        """Rule set 2: where a road user's body reaches into the ego's path along a lane.

        Returns:
            If a corner lies within half the ego's width plus ``intrusion_margin`` of the lane's
            centre line, or the body straddles it: the smallest lane coordinate of its corners
            [m] (its rear end along the lane, the cautious choice for a tilted body); else
            ``None``.
        """
        h = float(v.heading)
        c, s_ = math.cos(h), math.sin(h)
        hl, hw = float(v.LENGTH) / 2, float(v.WIDTH) / 2
        corners = [
            _local(lane, x + a * hl * c - b * hw * s_, y + a * hl * s_ + b * hw * c) for a in (-1, 1) for b in (-1, 1)
        ]
        half = ego_width / 2 + self.p.intrusion_margin
        lats = [lat for _, lat in corners]
        if min(abs(lat) for lat in lats) >= half and (min(lats) > 0 or max(lats) < 0):
            return None
        return min(s for s, _ in corners)

    def _profile(
        self, env: Any, ego: Any, speeds: Sequence[float], k: int, brake: bool, horizon: float | None = None
    ) -> list[tuple[float, float, float]]:
        """Predicted ego (time, distance travelled, speed) samples for a first target index.

        Args:
            env: the environment (for frequencies).
            ego: the ego vehicle.
            speeds: the discrete target speeds [m/s].
            k: target-speed index set by this decision.
            brake: if true, every later decision is SLOWER; else the target is held.
            horizon: how far to predict [s]; ``horizon`` of the parameters if None.
        """
        sim_f = float(env.config["simulation_frequency"])
        pol_f = float(env.config["policy_frequency"])
        per_decision = max(int(sim_f // pol_f), 1)
        dt = 1.0 / sim_f
        stride = max(int(round(self.p.sample_dt / dt)), 1)
        gain = dt / float(getattr(ego, "TAU_ACC", 0.6))
        n_frames = int(math.ceil((self.p.horizon if horizon is None else horizon) / dt))
        v, s, target = float(ego.speed), 0.0, speeds[k]
        lo, hi, n = speeds[0], speeds[-1], len(speeds)
        out = [(0.0, 0.0, v)]
        for f in range(1, n_frames + 1):
            if brake and f > 1 and (f - 1) % per_decision == 0:
                x = (v - lo) / (hi - lo) if hi > lo else 0.0
                cur = int(min(max(round(x * (n - 1)), 0), n - 1))
                target = speeds[max(cur - 1, 0)]
            s += v * dt
            v += (target - v) * gain
            if f % stride == 0:
                out.append((f * dt, s, v))
        return out

    def _frame_ttv(
        self, frame: _Frame, brake: list, hold: list, until: float = math.inf, contact: bool = False
    ) -> float:
        """First predicted time a gap in a frame is violated (``inf`` if none) [s].

        Args:
            frame: output of :meth:`_frame`.
            brake: ego profile with the braking fallback (checked against vehicles ahead).
            hold: ego profile holding its target (checked against vehicles behind).
            until: ignore violations after this time [s].
            contact: if true, the time of actual contact (gap margins zero) instead.
        """
        p = self.p
        gap_front, gap_rear = (0.0, 0.0) if contact else (p.min_gap_front, p.min_gap_rear)
        stop_gap = p.stop_gap if p.rules >= 2 and not contact else 0.0
        ego_len = frame["ego_len"]
        offset = frame["offset"]
        first = math.inf
        for u in frame["users"]:
            half = (ego_len + u.length) / 2
            if u.s >= 0:
                # Ahead: ego follows the braking fallback; the leader keeps speed or brakes.
                # Rule set 2: more room to a stopped vehicle, to steer around it later.
                gap_u = max(gap_front, stop_gap) if u.speed < 0.5 else gap_front
                t_end = min(until, brake[-1][0])
                v_low = max(u.speed + u.accel * p.front_brake_time, 0.0)
                v_top = max(v for _, _, v in brake)
                if u.s - half - gap_u > max(v_top - v_low, 0.0) * t_end:
                    continue  # cannot be caught up within the horizon
                for t, s, _v_e in brake:
                    if t >= first or t > until:
                        break
                    tb = min(t, p.front_brake_time)
                    v_end = max(u.speed + u.accel * tb, 0.0)
                    if u.accel < 0 and v_end == 0.0:
                        s_u = u.s + u.speed * u.speed / (-2 * u.accel)
                    else:
                        s_u = u.s + u.speed * tb + 0.5 * u.accel * tb * tb + v_end * (t - tb)
                    if s_u - s - half < gap_u:
                        first = t
                        break
            elif frame["entering"]:
                # Behind, in a lane being entered: it reacts after a delay, then brakes.
                v_u, s_u, t_prev = u.speed, u.s, 0.0
                t_in = None
                for t, s, v_e in hold:
                    if t >= first or t > until:
                        break
                    dt = t - t_prev
                    t_prev = t
                    entered = offset is None or s >= offset - ego_len / 2
                    if entered and t_in is None:
                        t_in = t
                    if t_in is not None and t - t_in >= p.rear_reaction and v_u > v_e:
                        v_u = max(v_u - p.rear_decel * dt, v_e)
                    s_u += v_u * dt
                    if entered and abs(s - s_u) - half < (gap_rear if s_u < s else gap_front):
                        first = t
                        break
        return first

    def _lane_utility(self, frame: _Frame, v_min: float, v_max: float) -> float:
        """Value of a lane [m/s]: the mean speed the ego could sustain in it over
        ``utility_horizon`` behind the vehicles ahead (each holding its speed), minus a
        penalty if it is a trap (a vehicle ahead slower than ``v_min``: the ego could not
        follow it and would have to leave the lane again).
        """
        p = self.p
        h = p.utility_horizon
        reach = v_max * h
        t_trap = math.inf
        for u in frame["users"]:
            if u.s > 0:
                gap = u.s - (frame["ego_len"] + u.length) / 2 - p.min_gap_front
                reach = min(reach, gap + u.speed * h)
                if u.speed < v_min:
                    t_trap = min(t_trap, max(gap, 0.0) / (v_min - u.speed))
        return max(reach, 0.0) / h - p.trap_penalty * max(p.trap_time - t_trap, 0.0)

    def _crossing_ttv(self, dec: _Decision, env: Any, ego: Any, others: list, hold: list) -> float:
        """Constant-velocity 2D check against road users not following any examined lane.

        Returns:
            The first predicted time [s] the ego comes closer than
            ``crossing_distance`` to such a road user, ``inf`` if never within
            ``crossing_horizon``.
        """
        if dec.cross is None:
            dec.cross = [
                (x, y, float(v.velocity[0]), float(v.velocity[1]))
                for v, x, y in others
                if id(v) not in dec.framed_ids and id(v) not in dec.aligned_ids and float(v.speed) > 0.5
            ]
            dec.ego_path = self._route_chain(env, ego) if dec.cross else None
        if not dec.cross or dec.ego_path is None:
            return math.inf
        p = self.p
        chain, s0 = dec.ego_path
        for t, d, _ in hold:
            if t > p.crossing_horizon:
                break
            # Position of the ego after driving d metres along its route.
            lane, s = chain[-1][0], None
            for ln, start, _ in chain:
                if d + s0 - start < ln.length or ln is chain[-1][0]:
                    lane, s = ln, d + s0 - start
                    break
            pos = lane.position(s, 0)
            ex, ey = float(pos[0]), float(pos[1])
            for x, y, vx, vy in dec.cross:
                if math.hypot(x + vx * t - ex, y + vy * t - ey) < p.crossing_distance:
                    return t
        return math.inf

    def _ring_conflicts(self, env: Any, ego: Any, others: list) -> tuple[float, list] | None:
        """Ring traffic the ego must yield to before entering a roundabout.

        Returns:
            ``None`` if the ego is not about to enter a ring; else the ego's route distance
            to the entry point (start of the first ring lane) [m] and, for every ring vehicle
            that will pass that point, the time interval [s] during which it occupies it.
        """
        net = env.road.network
        if net is not self._net:  # cache whether the map has a ring at all (highway: no)
            self._net = net
            self._net_has_ring = any(
                type(lane).__name__ == "CircularLane"
                for ends in net.graph.values()
                for lanes in ends.values()
                for lane in lanes
            )
        if not self._net_has_ring or type(net.get_lane(ego.lane_index)).__name__ == "CircularLane":
            return None
        chain, s0 = self._route_chain(env, ego)
        entry = next((c for c in chain if type(c[0]).__name__ == "CircularLane"), None)
        if entry is None:
            return None
        ring, start, ring_index = entry
        ex, ey = (float(c) for c in ring.position(0, 0))
        p = self.p
        windows = []
        for v, x, y in others:
            li = getattr(v, "lane_index", None)
            if li is None:
                continue
            lane = net.get_lane(li)
            if type(lane).__name__ != "CircularLane" or math.hypot(*(lane.center - ring.center)) > 0.5:
                continue
            route = getattr(v, "route", None) or []
            if route and li[0] != ring_index[0] and not any(r[0] == ring_index[0] for r in route):
                continue  # leaves the ring before the entry
            circ = 2 * math.pi * lane.radius
            dist = (_local(lane, ex, ey)[0] - _local(lane, x, y)[0]) % circ
            if dist > circ - p.yield_pass_margin:
                dist -= circ
            speed = max(float(v.speed), 1.0)
            windows.append(((dist - p.yield_pass_margin) / speed, (dist + p.yield_pass_margin) / speed))
        return start - s0, windows

    def _yield_ttv(self, dec: _Decision, brake: list, hold: list) -> float:
        """Yield rule at a ring entry: ``inf`` if the ego, holding its target speed, enters
        the ring clear of every ring vehicle's passage, or can still stop before the entry;
        else the time at which it would reach the entry [s].
        """
        if not dec.ring or not dec.ring[1]:
            return math.inf
        p = self.p
        d_entry, windows = dec.ring
        if brake[-1][1] < d_entry - p.yield_entry_margin and brake[-1][2] < 0.5:
            return math.inf  # can still stop before the entry
        t_in = next((t for t, d, _ in hold if d >= d_entry - p.yield_entry_margin), None)
        if t_in is None:
            return math.inf
        t_out = next((t for t, d, _ in hold if d >= d_entry + p.yield_clear), math.inf)
        for lo, hi in windows:
            if lo < t_out + p.yield_buffer and hi > t_in - p.yield_buffer:
                return t_in
        return math.inf

    def _route_chain(self, env: Any, ego: Any) -> tuple[list, float]:
        """The lanes ahead on the ego's route as (lane, start distance [m], lane index), and
        the ego's longitudinal position on the first one [m]."""
        net = env.road.network
        index = ego.target_lane_index
        lane = net.get_lane(index)
        s0, _ = _local(lane, float(ego.position[0]), float(ego.position[1]))
        route = list(ego.route) if ego.route else None
        chain = [(lane, 0.0, index)]
        start = 0.0
        while start + lane.length - s0 < 80.0:
            try:
                nxt = net.next_lane(index, route=route, position=lane.position(lane.length, 0), np_random=None)
            except (KeyError, IndexError, ValueError, AttributeError):
                break
            if nxt == index:
                break
            start += lane.length
            index, lane = nxt, net.get_lane(nxt)
            chain.append((lane, start, index))
        return chain, s0


class ScriptedExpertV1(ScriptedExpert):
    """:class:`ScriptedExpert` with rule set 1, the original rules (``expert:scripted-v1``).

    Args:
        params: rule parameters; defaults to :class:`ScriptedParams` with ``rules=1``.
    """

    name = "scripted-v1"

    def __init__(self, params: ScriptedParams | None = None) -> None:
        super().__init__(params or ScriptedParams(rules=1))
