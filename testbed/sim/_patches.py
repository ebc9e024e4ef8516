"""The accelerated implementations installed by :func:`testbed.sim.enable`.

Every function here either returns exactly what the highway-env 1.9.1 (or 1.12.1) function it replaces
returns (same float bits, same Python/numpy types, same side effects in the same order) or
hands the call to that function. See the package docstring for the argument behind each one.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from highway_env.envs.common.observation import KinematicObservation
from highway_env.road.lane import AbstractLane, CircularLane, SineLane, StraightLane
from highway_env.road.road import Road, RoadNetwork
from highway_env.vehicle.behavior import IDMVehicle, LinearVehicle
from highway_env.vehicle.controller import ControlledVehicle, MDPVehicle
from highway_env.vehicle.kinematics import Vehicle
from highway_env.vehicle.objects import Landmark, RoadObject

_F64 = np.dtype(np.float64)
_NDARRAY = np.ndarray
_FLOAT64 = np.float64

# The stock functions, captured when this module is first imported (before any patching).
STOCK_LOCAL_COORDINATES: dict[type, Callable[..., Any]] = {
    cls: cls.__dict__["local_coordinates"] for cls in (StraightLane, SineLane, CircularLane)
}
STOCK_ROAD_ACT = Road.__dict__["act"]
STOCK_ROAD_STEP = Road.__dict__["step"]
STOCK_NEIGHBOUR_VEHICLES = Road.__dict__["neighbour_vehicles"]
STOCK_CLOSEST_LANE = RoadNetwork.__dict__["get_closest_lane_index"]
STOCK_KINEMATICS_OBSERVE = KinematicObservation.__dict__["observe"]
STOCK_VEHICLE_TO_DICT = Vehicle.__dict__["to_dict"]
STOCK_HANDLE_COLLISIONS = RoadObject.__dict__["handle_collisions"]
STOCK_IS_COLLIDING = RoadObject.__dict__["_is_colliding"]
STOCK_DIRECTION = RoadObject.__dict__["direction"].fget
STOCK_POLYGON = RoadObject.__dict__["polygon"]
STOCK_VELOCITIES = (RoadObject.__dict__["velocity"], Vehicle.__dict__["velocity"])

# ---------------------------------------------------------------------------------------------
# 1. Memo of lane-local coordinates
# ---------------------------------------------------------------------------------------------

MEMO_LIMIT = 20_000
"""Entries per lane class before its memo is emptied (a memo only ever helps within a frame)."""

_MEMOS: list[dict[Any, Any]] = []


def clear_memos() -> None:
    """Empty and forget every lane-coordinate memo, and the lanes' off-lane tests (never needed
    for correctness; frees memory).
    Memos of wrappers still installed keep working, they are just no longer tracked."""
    for memo in _MEMOS:
        memo.clear()
    _MEMOS.clear()
    _OFF_LANE_TESTS.clear()


def memoized_local_coordinates(stock: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap a lane class's ``local_coordinates`` with a memo keyed on the lane and the exact bits
    of a 1-D float64 position. Other position types go straight to ``stock``."""
    memo: dict[tuple[int, bytes], tuple[Any, Any]] = {}
    _MEMOS.append(memo)

    def local_coordinates(self: Any, position: Any) -> Any:
        # 1-D float64: the bytes (length included) determine the array's value exactly.
        if type(position) is _NDARRAY and (position.dtype is _F64 or position.dtype == _F64) and position.ndim == 1:
            key = (id(self), position.tobytes())
            hit = memo.get(key)
            if hit is not None and hit[0] is self:
                return hit[1]
            result = stock(self, position)
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[key] = (self, result)  # holding the lane keeps its id from being reused
            return result
        return stock(self, position)

    local_coordinates.__doc__ = stock.__doc__
    local_coordinates.__name__ = "local_coordinates"
    local_coordinates.__qualname__ = getattr(stock, "__qualname__", "local_coordinates")
    return local_coordinates


# ---------------------------------------------------------------------------------------------
# 2. Per-frame lane tables for Road.neighbour_vehicles, valid during Road.act only
# ---------------------------------------------------------------------------------------------

# ``act`` methods known to move no vehicle, change no lane_index and add/remove nothing on the
# road: only then is a lane table built from the positions at the start of Road.act still exact.
PURE_ACTS = frozenset(
    cls.__dict__["act"] for cls in (Vehicle, ControlledVehicle, MDPVehicle, IDMVehicle, LinearVehicle)
)

# id(road) -> (road, {id(lane): (lane, [(s_v, v), ...])}, {id(obj): [obj, heading, direction,
# speed, velocity]}) while that road is inside Road.act (the last for patch 7).
_ACTING: dict[int, tuple[Road, dict[int, tuple[AbstractLane, list[tuple[Any, Any]]]], dict[int, list[Any]]]] = {}


def road_act(self: Road) -> None:
    """``Road.act`` that lets ``neighbour_vehicles`` reuse per-lane tables during the call."""
    if not all(type(v).act in PURE_ACTS for v in self.vehicles):
        STOCK_ROAD_ACT(self)
        return
    key = id(self)
    previous = _ACTING.get(key)
    _ACTING[key] = (self, {}, {})
    try:
        for vehicle in self.vehicles:
            vehicle.act()
    finally:
        if previous is None:
            _ACTING.pop(key, None)
        else:
            _ACTING[key] = previous


def neighbour_vehicles(self: Road, vehicle: Any, lane_index: Any = None) -> tuple[Any, Any]:
    """``Road.neighbour_vehicles``; inside ``Road.act`` the (s, vehicle) pairs of the objects on a
    lane are computed once per lane and scanned in the stock order with the stock comparisons."""
    acting = _ACTING.get(id(self))
    # highway-env 1.12's connected-lane search (off on every -v0 env) is left to the stock code.
    if acting is None or acting[0] is not self or getattr(self, "neighbour_vehicles_connected_lanes", False):
        return STOCK_NEIGHBOUR_VEHICLES(self, vehicle, lane_index)
    lane_index = lane_index or vehicle.lane_index
    if not lane_index:
        return None, None
    lane = self.network.get_lane(lane_index)
    s = lane.local_coordinates(vehicle.position)[0]
    tables = acting[1]
    entry = tables.get(id(lane))
    if entry is None or entry[0] is not lane:
        off_lane = _off_lane_test(lane)
        rows = []
        for v in self.vehicles + self.objects:
            if not isinstance(v, Landmark) and not (off_lane is not None and off_lane(v.position)):
                s_v, lat_v = lane.local_coordinates(v.position)
                if lane.on_lane(v.position, s_v, lat_v, margin=1):
                    rows.append((s_v, v))
        entry = (lane, rows)
        tables[id(lane)] = entry
    s_front = s_rear = None
    v_front = v_rear = None
    for s_v, v in entry[1]:
        if v is not vehicle:
            if s <= s_v and (s_front is None or s_v <= s_front):
                s_front = s_v
                v_front = v
            if s_v < s and (s_rear is None or s_v > s_rear):
                s_rear = s_v
                v_rear = v
    return v_front, v_rear


_OFF_LANE_TESTS: dict[int, tuple[Any, Callable[[Any], bool] | None]] = {}


def _off_lane_test(lane: Any) -> Callable[[Any], bool] | None:
    """:func:`_off_straight_lane` of ``lane``, built once per lane (like the coordinates memo,
    it relies on a lane's geometry never changing, and holds the lane so its id is not reused)."""
    hit = _OFF_LANE_TESTS.get(id(lane))
    if hit is not None and hit[0] is lane:
        return hit[1]
    if len(_OFF_LANE_TESTS) >= MEMO_LIMIT:
        _OFF_LANE_TESTS.clear()
    test = _off_straight_lane(lane)
    _OFF_LANE_TESTS[id(lane)] = (lane, test)
    return test


def _off_straight_lane(lane: Any) -> Callable[[Any], bool] | None:
    """For a plain StraightLane, a test that is True only for positions that provably fail
    ``lane.on_lane(p, *lane.local_coordinates(p), margin=1)``, so that the exact coordinates
    need not be computed; None for other lanes.

    The test evaluates the same dot products in Python floats. Both it and numpy's ``np.dot``
    are within a few ulps of the exact value of ``(p - start) . direction`` (``p - start`` is
    the same IEEE subtraction), so a margin of 1e-9 times the operands' size covers the
    difference by many orders of magnitude; NaN never passes a comparison, so it is never
    declared off the lane.
    """
    if type(lane) is not StraightLane:
        return None
    try:
        sx, sy = (float(c) for c in lane.start)
        ux, uy = (float(c) for c in lane.direction)
        nx, ny = (float(c) for c in lane.direction_lateral)
        half = float(lane.width_at(0.0)) / 2 + 1  # margin=1; a StraightLane's width is constant
        lo = -float(lane.VEHICLE_LENGTH)
        hi = float(lane.length) + float(lane.VEHICLE_LENGTH)
    except (TypeError, ValueError):
        return None

    def off_lane(position: Any) -> bool:
        if (
            type(position) is not _NDARRAY
            or (position.dtype is not _F64 and position.dtype != _F64)
            or position.shape != (2,)
        ):
            return False
        px, py = position.tolist()
        dx, dy = px - sx, py - sy
        err = 1e-9 * (1.0 + abs(dx) + abs(dy))
        lateral = dx * nx + dy * ny
        longitudinal = dx * ux + dy * uy
        return abs(lateral) > half + err or longitudinal < lo - err or longitudinal >= hi + err

    return off_lane


# ---------------------------------------------------------------------------------------------
# 3. Road.step: skip collision pairs that the stock spherical pre-check provably rejects
# ---------------------------------------------------------------------------------------------


def _collision_pairs(road: Road, dt: float) -> list[tuple[int, int]] | None:
    """(row, column) pairs, in the stock loop order, that might collide; None to run the stock
    loop. Row i is ``road.vehicles[i]``; column j < n is ``road.vehicles[j]`` (j > i), column
    j >= n is ``road.objects[j - n]``."""
    vehicles, objects = road.vehicles, road.objects
    n = len(vehicles)
    if n < 2 and not objects:
        return []
    try:
        everything = vehicles + objects
        pos = np.array([o.position for o in everything], dtype=np.float64)
        if pos.shape != (len(everything), 2):
            return None
        diagonal = np.array([float(o.diagonal) for o in everything])
        speed = np.array([float(v.speed) for v in vehicles])
        stock_rows = np.array(
            [
                type(v).handle_collisions is STOCK_HANDLE_COLLISIONS and type(v)._is_colliding is STOCK_IS_COLLIDING
                for v in vehicles
            ],
            dtype=bool,
        )
    except (AttributeError, TypeError, ValueError):
        return None
    if n <= FEW_VEHICLES:
        return _collision_pairs_python(pos.tolist(), diagonal.tolist(), speed.tolist(), stock_rows.tolist(), dt)
    # Stock rejects the pair when norm(other - self) > (d_self + d_other) / 2 + speed_self * dt.
    # The computed norm is >= max(|dx|, |dy|) * (1 - 4 eps) (dx, dy are the same IEEE differences
    # numpy computes), so a pair with that bound clearly above the threshold is rejected by stock
    # too, and rejection has no side effect. NaN never satisfies ">", so it is never skipped.
    with np.errstate(invalid="ignore", over="ignore"):
        gap = np.abs(pos[None, :, :] - pos[:n, None, :]).max(axis=2) * (1.0 - 1e-12)
        threshold = (diagonal[:n, None] + diagonal[None, :]) / 2 + speed[:, None] * dt
        skip = gap > threshold + 1e-9 + 1e-9 * np.abs(threshold)
    skip &= stock_rows[:, None]
    upper = np.ones((n, len(everything)), dtype=bool)
    upper[:, :n] = np.triu(upper[:, :n], k=1)
    rows, cols = np.nonzero(upper & ~skip)
    return list(zip(rows.tolist(), cols.tolist()))


FEW_VEHICLES = 40
"""Roads with at most this many vehicles pre-filter collision pairs in Python, others with numpy."""


def _collision_pairs_python(
    pos: list[list[float]], diagonal: list[float], speed: list[float], stock_rows: list[bool], dt: float
) -> list[tuple[int, int]]:
    """:func:`_collision_pairs` in Python floats (the same bound, see there). A coordinate gap
    is only trusted when the other gap is not NaN (numpy's norm would be NaN, and stock would
    then run the accurate check)."""
    n = len(speed)
    total = len(pos)
    pairs = []
    for i in range(n):
        xi, yi = pos[i]
        di, si, ok = diagonal[i], speed[i] * dt, stock_rows[i]
        for j in range(i + 1, total):  # vehicles after i, then every object: the stock order
            if ok:
                xj, yj = pos[j]
                threshold = (di + diagonal[j]) / 2 + si
                limit = (threshold + 1e-9 + 1e-9 * abs(threshold)) / (1.0 - 1e-12)
                gx, gy = abs(xj - xi), abs(yj - yi)
                if (gx > limit and gy == gy) or (gy > limit and gx == gx):
                    continue
            pairs.append((i, j))
    return pairs


def road_step(self: Road, dt: float) -> None:
    """``Road.step`` with the collision loop restricted to pairs that are not provably apart."""
    for vehicle in self.vehicles:
        vehicle.step(dt)
    pairs = _collision_pairs(self, dt)
    if pairs is None:
        for i, vehicle in enumerate(self.vehicles):
            for other in self.vehicles[i + 1 :]:
                vehicle.handle_collisions(other, dt)
            for other in self.objects:
                vehicle.handle_collisions(other, dt)
        return
    vehicles, objects = self.vehicles, self.objects
    n = len(vehicles)
    for i, j in pairs:
        vehicle, other = vehicles[i], (vehicles[j] if j < n else objects[j - n])
        if not provably_apart(vehicle, other, dt):
            vehicle.handle_collisions(other, dt)


APART_MARGIN = 1e-6
"""Relative margin by which :func:`provably_apart` wants a separating gap to exceed zero."""


def _box(obj: Any) -> tuple[float, float, float, float, float, float] | None:
    """(x, y, heading, length, width, speed) as Python floats when ``obj``'s polygon and
    velocity are the stock expressions and every value is finite, else None."""
    kind = type(obj)
    if kind.polygon is not STOCK_POLYGON or kind.velocity not in _VELOCITIES:
        return None
    position = obj.position
    if type(position) is not _NDARRAY or position.shape != (2,):
        return None
    try:
        box = (
            float(position[0]),
            float(position[1]),
            float(obj.heading),
            abs(float(obj.LENGTH)),
            abs(float(obj.WIDTH)),
            float(obj.speed),
        )
    except (TypeError, ValueError):
        return None
    return box if all(math.isfinite(v) for v in box) else None


def provably_apart(a: Any, b: Any, dt: float) -> bool:
    """True only when ``a.handle_collisions(b, dt)`` provably does nothing: its accurate check
    (``utils.are_polygons_intersecting``) would return (False, False, None).

    That check projects both rectangles on every edge normal of both (among them each one's
    longitudinal and lateral axis); ``intersecting`` turns False when one axis separates the
    projections, ``will_intersect`` when one separates them after ``a``'s interval is widened
    by the projection of ``(a.velocity - b.velocity) * dt``. Here the same four axes are
    evaluated exactly in Python floats: if on one of them the gap between the rectangles
    minus the widening exceeds a margin (``APART_MARGIN`` times the size of the operands, many
    orders of magnitude above the rounding of both computations), both flags turn False in the
    stock computation too. Objects whose classes override the collision, polygon or velocity
    code, and non-finite values, are never declared apart.
    """
    kind = type(a)
    if kind.handle_collisions is not STOCK_HANDLE_COLLISIONS or kind._is_colliding is not STOCK_IS_COLLIDING:
        return False
    box_a, box_b = _box(a), _box(b)
    if box_a is None or box_b is None or not math.isfinite(dt):
        return False
    xa, ya, ha, la, wa, sa = box_a
    xb, yb, hb, lb, wb, sb = box_b
    ca, na = math.cos(ha), math.sin(ha)
    cb, nb = math.cos(hb), math.sin(hb)
    dx, dy = xb - xa, yb - ya
    rx, ry = (sa * ca - sb * cb) * dt, (sa * na - sb * nb) * dt
    margin = APART_MARGIN * (
        1.0 + abs(xa) + abs(ya) + abs(xb) + abs(yb) + la + wa + lb + wb + (abs(sa) + abs(sb)) * abs(dt)
    )
    for ux, uy in ((ca, na), (-na, ca), (cb, nb), (-nb, cb)):
        extent_a = la / 2 * abs(ux * ca + uy * na) + wa / 2 * abs(uy * ca - ux * na)
        extent_b = lb / 2 * abs(ux * cb + uy * nb) + wb / 2 * abs(uy * cb - ux * nb)
        if abs(dx * ux + dy * uy) - extent_a - extent_b - abs(rx * ux + ry * uy) > margin:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# 4. RoadNetwork.get_closest_lane_index: exact argmin, with a geometric lower bound
# ---------------------------------------------------------------------------------------------

FEW_LANES = 64
"""Networks with more lanes than this compute the lane bounds with numpy, others in Python
(numpy's per-call overhead is ~30 us, a lane costs ~0.5 us in Python)."""

_COORD_LIMIT = 1e9  # positions beyond this (or non-finite) use the stock function


class _LaneTable:
    """Lanes of a network in ``get_closest_lane_index`` order, with per-lane bound data."""

    def __init__(self, network: RoadNetwork, lanes: list[AbstractLane]) -> None:
        self.lanes = lanes
        self.indexes = [
            (_from, _to, _id)
            for _from, to_dict in network.graph.items()
            for _to, ls in to_dict.items()
            for _id in range(len(ls))
        ]
        geometry = np.array([_lane_geometry(lane) for lane in lanes], dtype=np.float64).reshape(len(lanes), 9)
        no_bound = ~np.isfinite(geometry).all(axis=1) | (geometry[:, 4] < 0)
        geometry[no_bound] = 0.0
        self.vectorised = len(lanes) > FEW_LANES
        (self.xmin, self.xmax, self.ymin, self.ymax, self.slack, self.cx, self.cy, self.radius, self.is_arc) = (
            geometry.T.copy()
        )
        self.no_bound = no_bound
        self.rows = [(tuple(row), bool(nb)) for row, nb in zip(geometry.tolist(), no_bound.tolist())]

    def lower_bounds(self, x: float, y: float) -> list[float]:
        """A lower bound on each lane's ``distance_with_heading`` (any heading) at (x, y); -inf
        where no bound is known. Only a bound: the caller adds a margin for rounding."""
        if self.vectorised:
            dx = np.maximum(np.maximum(self.xmin - x, x - self.xmax), 0.0)
            dy = np.maximum(np.maximum(self.ymin - y, y - self.ymax), 0.0)
            box = np.sqrt(dx * dx + dy * dy) - self.slack
            ring = np.abs(np.hypot(x - self.cx, y - self.cy) - self.radius) * self.is_arc
            bound = np.maximum(box, ring)
            bound[self.no_bound] = -np.inf
            return bound.tolist()
        out = []
        for (xmin, xmax, ymin, ymax, slack, cx, cy, radius, is_arc), no_bound in self.rows:
            if no_bound:
                out.append(-math.inf)
                continue
            gx = xmin - x if x < xmin else (x - xmax if x > xmax else 0.0)
            gy = ymin - y if y < ymin else (y - ymax if y > ymax else 0.0)
            bound = math.sqrt(gx * gx + gy * gy) - slack
            if is_arc:
                bound = max(bound, abs(math.hypot(x - cx, y - cy) - radius))
            out.append(bound)
        return out


def _lane_geometry(lane: AbstractLane) -> list[float]:
    """[xmin, xmax, ymin, ymax, slack, cx, cy, radius, is_arc] such that for every position p,
    ``lane.distance_with_heading(p, h) >= max(dist(p, box) - slack, is_arc * |dist(p, c) - radius|)``
    (up to rounding, which the caller's margin absorbs); slack -1 means no bound is known.

    - StraightLane: distance = |r| + distance beyond the ends along s, an L1 distance in the
      lane's orthonormal frame to the segment, >= the Euclidean distance to the segment, >= the
      distance to its bounding box.
    - SineLane: its lateral coordinate is the straight one minus ``amplitude * sin(...)``, so its
      distance is >= the straight segment's minus |amplitude|.
    - CircularLane: distance = |radius - rho| + arc length beyond the ends, >= the length of a
      path from the position to the arc, >= the distance to the arc's bounding box; also >=
      |rho - radius| (the ``ring`` term).
    """
    kind = type(lane)
    if kind is StraightLane or kind is SineLane:
        start, end = np.asarray(lane.start, dtype=float), np.asarray(lane.end, dtype=float)
        slack = abs(float(lane.amplitude)) if kind is SineLane else 0.0
        return [
            min(start[0], end[0]),
            max(start[0], end[0]),
            min(start[1], end[1]),
            max(start[1], end[1]),
            slack,
            0.0,
            0.0,
            0.0,
            0.0,
        ]
    if kind is CircularLane:
        cx, cy = (float(c) for c in lane.center)
        radius = float(lane.radius)
        lo, hi = sorted((float(lane.start_phase), float(lane.end_phase)))
        if not (math.isfinite(lo) and math.isfinite(hi) and radius > 0):
            return [0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0]
        angles = [lo, hi]
        if hi - lo >= 2 * math.pi:
            angles += [0.0, math.pi / 2, math.pi, 3 * math.pi / 2]
        else:
            k = math.ceil(lo / (math.pi / 2))
            while k * (math.pi / 2) <= hi:
                angles.append(k * (math.pi / 2))
                k += 1
        xs = [cx + radius * math.cos(a) for a in angles]
        ys = [cy + radius * math.sin(a) for a in angles]
        pad = 1e-6 * (1.0 + radius + abs(cx) + abs(cy))  # covers the sampled extremes' rounding
        return [min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad, 0.0, cx, cy, radius, 1.0]
    return [0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0]


_LANE_TABLES: weakref.WeakKeyDictionary[RoadNetwork, _LaneTable] = weakref.WeakKeyDictionary()


def _lane_table(network: RoadNetwork) -> _LaneTable:
    lanes = [lane for to_dict in network.graph.values() for ls in to_dict.values() for lane in ls]
    table = _LANE_TABLES.get(network)
    if table is None or table.lanes != lanes:  # list == compares lanes by identity
        table = _LaneTable(network, lanes)
        _LANE_TABLES[network] = table
    return table


def _first_argmin(distances: list[Any]) -> int | None:
    """``int(np.argmin(distances))`` for a list of floats (first NaN, else first minimum); None
    if an element is not a ``float``/``numpy.float64``."""
    best_i = -1
    best = 0.0
    for i, d in enumerate(distances):
        td = type(d)
        if td is not float and td is not _FLOAT64:
            return None
        if d != d:
            return i
        if best_i < 0 or d < best:
            best_i, best = i, d
    return best_i


def get_closest_lane_index(self: RoadNetwork, position: Any, heading: float | None = None) -> Any:
    """``RoadNetwork.get_closest_lane_index``: the same lanes' ``distance_with_heading`` values
    and the same argmin, evaluated only for lanes whose lower bound does not rule them out."""
    table = _lane_table(self)
    lanes = table.lanes
    if not lanes:
        return STOCK_CLOSEST_LANE(self, position, heading)
    try:
        x, y = float(position[0]), float(position[1])
        finite = abs(x) < _COORD_LIMIT and abs(y) < _COORD_LIMIT  # False for NaN
        if heading is not None:
            finite = finite and abs(float(heading)) < _COORD_LIMIT
    except (TypeError, IndexError, ValueError):
        finite = False
    if finite and len(lanes) > 1:
        bounds = table.lower_bounds(x, y)
        first = bounds.index(min(bounds))
        d_first = lanes[first].distance_with_heading(position, heading)
        if type(d_first) in (float, _FLOAT64) and math.isfinite(d_first):
            # A lane whose bound exceeds a distance already found cannot be the argmin.
            limit = d_first + 1e-6 * (1.0 + abs(x) + abs(y) + abs(d_first))
            candidates = [i for i, bound in enumerate(bounds) if bound <= limit]
            distances = [
                d_first if i == first else lanes[i].distance_with_heading(position, heading) for i in candidates
            ]
            best = _first_argmin(distances)
            if best is not None and all(math.isfinite(d) for d in distances):
                return table.indexes[candidates[best]]
    # Otherwise evaluate every lane, as the stock code does.
    distances = [lane.distance_with_heading(position, heading) for lane in lanes]
    best = _first_argmin(distances)
    if best is None:
        best = int(np.argmin(distances))
    return table.indexes[best]


# ---------------------------------------------------------------------------------------------
# 5. KinematicObservation.observe without pandas
# ---------------------------------------------------------------------------------------------

FAST_FEATURES = frozenset({"presence", "x", "y", "vx", "vy", "heading", "cos_h", "sin_h"})
_RELATIVE = ("x", "y", "vx", "vy")


def _vehicle_features(v: Any, features: list[str]) -> list[Any]:
    """The stock ``Vehicle.to_dict()`` entries named in ``features`` (same expressions)."""
    out: list[Any] = []
    for f in features:
        if f == "presence":
            out.append(1)
        elif f == "x":
            out.append(v.position[0])
        elif f == "y":
            out.append(v.position[1])
        elif f == "vx":
            out.append(v.velocity[0])
        elif f == "vy":
            out.append(v.velocity[1])
        elif f == "heading":
            out.append(v.heading)
        elif f == "cos_h":
            out.append(v.direction[0])
        else:  # sin_h
            out.append(v.direction[1])
    return out


def _row(v: Any, origin: Any, observe_intentions: bool, features: list[str], own: bool) -> list[Any]:
    """One observation row: what ``v.to_dict(origin, observe_intentions)`` (or ``v.to_dict()``
    when ``own``) gives for ``features``, NaN for a missing key (as pandas fills it)."""
    if type(v).to_dict is STOCK_VEHICLE_TO_DICT:
        row = _vehicle_features(v, features)
        if origin:
            base = _row(origin, None, True, list(_RELATIVE), own=True)
            for k, f in enumerate(features):
                if f in _RELATIVE:
                    row[k] -= base[_RELATIVE.index(f)]
        return row
    d = v.to_dict() if own else v.to_dict(origin, observe_intentions=observe_intentions)
    return [d.get(f, np.nan) for f in features]


def kinematics_observe(self: KinematicObservation) -> np.ndarray:
    """``KinematicObservation.observe`` computing the same columns with the same float64
    arithmetic as the stock pandas code (see the package docstring)."""
    features = self.features
    if (
        type(self) is not KinematicObservation
        or not self.env.road
        or len(set(features)) != len(features)
        or not set(features) <= FAST_FEATURES
    ):
        return STOCK_KINEMATICS_OBSERVE(self)
    ego = self.observer_vehicle
    rows = [_row(ego, None, True, features, own=True)]
    close_vehicles = self.env.road.close_objects_to(
        ego,
        self.env.PERCEPTION_DISTANCE,
        count=self.vehicles_count - 1,
        see_behind=self.see_behind,
        sort=self.order == "sorted",
        vehicles_only=not self.include_obstacles,
    )
    if close_vehicles:
        origin = ego if not self.absolute else None
        rows += [
            _row(v, origin, self.observe_intentions, features, own=False)
            for v in close_vehicles[-self.vehicles_count + 1 :]
        ]
    columns = [np.array([row[k] for row in rows]) for k in range(len(features))]
    if self.normalize:
        if not self.features_range:
            side_lanes = self.env.road.network.all_side_lanes(ego.lane_index)
            self.features_range = {
                "x": [-5.0 * Vehicle.MAX_SPEED, 5.0 * Vehicle.MAX_SPEED],
                "y": [
                    -AbstractLane.DEFAULT_WIDTH * len(side_lanes),
                    AbstractLane.DEFAULT_WIDTH * len(side_lanes),
                ],
                "vx": [-2 * Vehicle.MAX_SPEED, 2 * Vehicle.MAX_SPEED],
                "vy": [-2 * Vehicle.MAX_SPEED, 2 * Vehicle.MAX_SPEED],
            }
        for feature, f_range in self.features_range.items():
            if feature in features:
                k = features.index(feature)
                # utils.lmap(v, [f_range[0], f_range[1]], [-1, 1]), as pandas evaluates it.
                column = -1 + (columns[k] - f_range[0]) * (1 - -1) / (f_range[1] - f_range[0])
                if self.clip:
                    column = np.clip(column, -1, 1)
                columns[k] = column
    n_rows = max(len(rows), self.vehicles_count)
    obs = np.zeros((n_rows, len(features)), dtype=np.float64)
    for k, column in enumerate(columns):
        obs[: len(rows), k] = column
    if self.order == "shuffled":
        self.env.np_random.shuffle(obs[1:])
    return obs.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# 7. RoadObject.direction and velocity, kept during Road.act
# ---------------------------------------------------------------------------------------------


def _direction(self: Any) -> Any:
    """``RoadObject.direction``; inside its road's ``Road.act`` (where no object moves), computed
    once per object and heading object. A float heading is immutable and is rebound, never
    changed in place, so the same object means the same bits; a copy is returned, so no caller
    can change what is kept."""
    road = getattr(self, "road", None)
    acting = _ACTING.get(id(road))
    heading = self.heading
    kind = type(heading)
    if acting is None or acting[0] is not road or not (kind is float or kind is _FLOAT64):
        return STOCK_DIRECTION(self)
    return _kept_motion(acting[2], self, heading)[2].copy()


def _kept_motion(kept: dict[int, list[Any]], obj: Any, heading: Any) -> list[Any]:
    """``obj``'s entry ``[obj, heading, direction, speed, velocity]`` in ``kept``, made anew
    (direction by the stock expression, no velocity yet) unless it was made for this very
    ``heading`` object (a float scalar)."""
    entry = kept.get(id(obj))
    if entry is None or entry[0] is not obj or entry[1] is not heading:
        entry = [obj, heading, STOCK_DIRECTION(obj), None, None]
        kept[id(obj)] = entry
    return entry


def _velocity(self: Any) -> Any:
    """``RoadObject.velocity``/``Vehicle.velocity``: ``self.speed * self.direction``, the stock
    expression; inside its road's ``Road.act``, evaluated once per (heading, speed) pair of
    objects, on the kept direction."""
    road = getattr(self, "road", None)
    acting = _ACTING.get(id(road))
    speed = self.speed
    kind = type(speed)
    if acting is None or acting[0] is not road or not (kind is float or kind is _FLOAT64):
        return speed * self.direction
    heading = self.heading
    kind = type(heading)
    if not (kind is float or kind is _FLOAT64):
        return speed * STOCK_DIRECTION(self)
    entry = _kept_motion(acting[2], self, heading)
    if entry[3] is not speed:
        entry[3], entry[4] = speed, speed * entry[2]
    return entry[4].copy()


DIRECTION = property(_direction)
"""The ``direction`` property installed on ``RoadObject``."""
VELOCITY = property(_velocity)
"""The ``velocity`` property installed on ``RoadObject`` and ``Vehicle``."""
_VELOCITIES = (*STOCK_VELOCITIES, VELOCITY)
