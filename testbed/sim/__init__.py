"""Bit-identical acceleration of highway-env's simulation hot paths (1.9.1 and 1.12.1).

:func:`enable` patches a handful of highway-env attributes in this process; :func:`disable`
puts every original back; :func:`stock` runs a block on the stock code. Importing this package
changes nothing. With the patches installed every trajectory is exactly the stock one:
observations byte for byte, rewards, terminated/truncated, and every vehicle's position,
heading, speed, lane and crash flag (``tests/test_sim.py`` checks this side by side).

The rule behind every patch: no floating-point expression of highway-env is rewritten. A
patch either skips work whose result is provably unused or identical (memo, bound, pre-filter),
or replaces a numpy call by IEEE-exact scalar code (comparisons, ``fabs``) with the same
result type. Transcendental functions (numpy's scalar ``tan``/``arctan``/``arcsin``/
``arctan2``/``power`` differ from ``math``'s on this machine), ``np.dot`` and
``np.linalg.norm`` (BLAS-dependent) are always called exactly as highway-env calls them.

The patches:

1. ``StraightLane``/``SineLane``/``CircularLane.local_coordinates``: memoised, per lane class,
   on (lane identity, exact bytes of a float64 2-vector position). The method is a pure
   function of the (never mutated) lane geometry and the position, so a hit returns the very
   tuple the stock code produced for those bits. Positions change every frame, but within a
   frame the same (lane, position) pairs are asked for many times (lane lookup, steering,
   neighbour search, observation). The memo holds the lane, so its id cannot be reused; it is
   a module global, so ``copy.deepcopy`` of a road never copies it, and copied lanes are new
   keys. Non-array positions bypass it.
2. ``Road.act`` + ``Road.neighbour_vehicles``: while ``Road.act`` runs, no vehicle moves,
   spawns or changes ``lane_index`` (checked: every vehicle's ``act`` must be one of the
   stock ``act`` methods known to only set targets/actions; otherwise the stock loop runs).
   So within that call the list of ``(s, vehicle)`` for the objects on a lane (stock
   ``local_coordinates`` and ``on_lane(margin=1)``) is computed once per lane and each query
   scans it in the stock order with the stock comparisons (ties resolved identically). On a
   plain ``StraightLane``, positions that are off the lane by more than a rounding margin
   (same dot products in Python floats) are left out without computing their exact
   coordinates: ``on_lane`` would reject them (that test is built once per lane, from its
   never-changing geometry). The table lives in a module dict keyed by the road for the
   duration of the call only; outside ``Road.act`` (experts, rewards, copies) the stock
   method runs.
3. ``Road.step``: the pairwise collision loop calls ``handle_collisions`` only for pairs the
   stock spherical pre-check does not provably reject. That check rejects a pair when
   ``norm(dp) > (d1 + d2) / 2 + v1 * dt``; the computed norm is at least
   ``max(|dx|, |dy|) * (1 - 4 eps)`` (``dx``, ``dy`` being the same IEEE differences), so pairs
   with that bound above the threshold plus a margin are skipped, and a rejected pair has no
   side effect. NaN is never skipped. Calls keep the stock order; vehicles whose class
   overrides the collision methods are never skipped. A pair that passes is still skipped when
   the stock accurate check (``utils.are_polygons_intersecting``) provably finds it neither
   intersecting nor about to (both flags False, so ``handle_collisions`` does nothing): on one
   of the two rectangles' own axes, evaluated in Python floats, the gap minus the projection of
   the relative displacement exceeds a margin of 1e-6 times the operands' size
   (``provably_apart``; classes that override ``polygon`` or ``velocity`` are never skipped).
4. ``RoadNetwork.get_closest_lane_index``: the same ``distance_with_heading`` of the same lanes
   and the same argmin (first NaN, else first minimum, as ``np.argmin``), written in Python.
   A lower bound per lane (distance to the bounding box of the straight segment / sine lane
   widened by its amplitude / circular arc, and ``|rho - radius|`` for arcs) excludes lanes
   whose bound exceeds, by a margin, a distance already computed: they cannot be the nearest.
   The rest are evaluated with the stock expressions. Non-finite or huge inputs and unknown
   lane types get no bound (all lanes are evaluated).
5. ``KinematicObservation.observe`` (exact class only, features among presence, x, y, vx, vy,
   heading, cos_h, sin_h): the stock rows (``to_dict`` entries, relative to the observer when
   not absolute; other object types still use their own ``to_dict``), built into numpy
   columns with the dtypes pandas infers, normalised with ``lmap``'s expression
   ``-1 + (v - lo) * 2 / (hi - lo)`` evaluated in the same order, clipped (pandas' ``where``-
   based clip and ``np.clip`` agree on NaN, signed zeros and ties), zero-padded, shuffled with
   the env's generator when ``order == "shuffled"``, cast to float32. Anything else runs stock.
6. ``np`` in ``highway_env.vehicle.controller``/``behavior``, ``highway_env.road.lane``,
   ``highway_env.utils`` and ``highway_env.envs.highway_env`` is a copy of the numpy module
   whose ``clip`` and ``abs`` have exact fast paths for Python/numpy float scalars (see
   :mod:`testbed.sim._fastnp`); every other call goes to numpy.
7. ``RoadObject.direction`` and ``velocity``: inside ``Road.act`` (the window of patch 2, where
   no object moves) each object's ``np.array([np.cos(heading), np.sin(heading)])`` and
   ``speed * direction`` are evaluated once per heading and speed *object* (a float is
   immutable and is rebound, never changed in place, when the vehicle moves, so the same
   object means the same bits) and a copy is handed out each time; outside that window, and
   for headings or speeds that are not float scalars, the stock expressions run.

highway-env 1.12.1 (the current stack, README) is supported with all seven patches: the functions
they replace are the 1.9.1 ones up to type hints, except ``Road.neighbour_vehicles``, which in
1.12 also searches connected lane segments when ``road.neighbour_vehicles_connected_lanes`` is
true (``neighbour_vehicles_connected_lanes`` config key, False on every ``-v0`` env). With the
flag false its result is the 1.9.1 one (its extra ``s_v += 0`` can only turn -0.0 into 0.0,
which compare equal); with the flag true patch 2 hands every call to the stock method.
``tests/test_sim.py`` runs its per-step hash comparison on whichever version is installed.

Environment: ``TESTBED_STOCK_SIM=1`` makes :func:`enable` a no-op. On a highway-env other than
those in :data:`SUPPORTED_HIGHWAY_ENVS`, :func:`enable` warns once and stays stock.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import warnings
from collections.abc import Iterator
from typing import Any

SUPPORTED_HIGHWAY_ENVS = ("1.9.1", "1.12.1")
"""The highway-env versions the patches were verified against (the legacy and the current stack)."""
SUPPORTED_HIGHWAY_ENV = SUPPORTED_HIGHWAY_ENVS[0]
"""The legacy stack's highway-env version (kept for callers that name one version)."""

_MISSING = object()
_saved: list[tuple[Any, str, Any]] = []
"""(owner, attribute, original value or _MISSING) for every installed patch."""
_warned = False
_stock_depth = 0
"""How many :func:`stock` blocks are running: :func:`enable` is a no-op inside one."""


def _patch_list() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, new value) for every patch, in installation order."""
    import highway_env.envs.highway_env as highway_env_module
    import highway_env.road.lane as lane_module
    import highway_env.utils as utils_module
    import highway_env.vehicle.behavior as behavior_module
    import highway_env.vehicle.controller as controller_module
    from highway_env.envs.common.observation import KinematicObservation
    from highway_env.road.road import Road, RoadNetwork
    from highway_env.vehicle.kinematics import Vehicle
    from highway_env.vehicle.objects import RoadObject

    from testbed.sim import _fastnp
    from testbed.sim import _patches as p

    fast_numpy = _fastnp.make_fast_numpy()
    patches: list[tuple[Any, str, Any]] = [
        (cls, "local_coordinates", p.memoized_local_coordinates(stock))
        for cls, stock in p.STOCK_LOCAL_COORDINATES.items()
    ]
    patches += [
        (Road, "act", p.road_act),
        (Road, "neighbour_vehicles", p.neighbour_vehicles),
        (Road, "step", p.road_step),
        (RoadNetwork, "get_closest_lane_index", p.get_closest_lane_index),
        (KinematicObservation, "observe", p.kinematics_observe),
        (RoadObject, "direction", p.DIRECTION),
        (RoadObject, "velocity", p.VELOCITY),
        (Vehicle, "velocity", p.VELOCITY),
    ]
    patches += [
        (module, "np", fast_numpy)
        for module in (controller_module, behavior_module, lane_module, utils_module, highway_env_module)
    ]
    return patches


def _version_ok() -> bool:
    global _warned
    try:
        version = importlib.metadata.version("highway-env")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    if version in SUPPORTED_HIGHWAY_ENVS:
        return True
    if not _warned:
        _warned = True
        warnings.warn(
            f"testbed.sim: highway-env {version} is not {' or '.join(SUPPORTED_HIGHWAY_ENVS)}, the versions its "
            "patches were verified against; using the stock (slower) simulation",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


def _install() -> None:
    if _saved:
        return
    for owner, name, new in _patch_list():
        _saved.append((owner, name, vars(owner).get(name, _MISSING)))
        setattr(owner, name, new)


def enable() -> bool:
    """Install the accelerated implementations in this process (idempotent).

    Returns:
        True if the accelerated simulation is active; False when ``TESTBED_STOCK_SIM=1`` or
        inside a :func:`stock` block (then nothing is done) or when highway-env is none of
        :data:`SUPPORTED_HIGHWAY_ENVS` (then a warning is emitted once).
    """
    if os.environ.get("TESTBED_STOCK_SIM") == "1" or _stock_depth:
        return False
    if _saved:
        return True
    if not _version_ok():
        return False
    _install()
    return True


def disable() -> None:
    """Restore every patched attribute to exactly its original object (no-op if not enabled)."""
    from testbed.sim import _patches as p

    while _saved:
        owner, name, original = _saved.pop()
        if original is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
    p.clear_memos()


def is_enabled() -> bool:
    """Whether the accelerated implementations are installed."""
    return bool(_saved)


@contextlib.contextmanager
def stock() -> Iterator[None]:
    """Run the block on the stock highway-env code, then restore the previous state.

    :func:`enable` does nothing inside the block, so envs built there (``make_env`` calls
    :func:`enable`) stay stock.
    """
    global _stock_depth
    was_enabled = is_enabled()
    disable()
    _stock_depth += 1
    try:
        yield
    finally:
        _stock_depth -= 1
        if was_enabled:
            _install()


__all__ = ["SUPPORTED_HIGHWAY_ENV", "SUPPORTED_HIGHWAY_ENVS", "disable", "enable", "is_enabled", "stock"]
