"""Named highway-env presets.

This is the only module that builds highway-env config dicts. Each preset is a complete,
explicit config (the env's own defaults merged with our choices), so every output can record
exactly what was simulated. User overrides (``--set key=value``) are validated against the
env's ``default_config()``: highway-env itself silently ignores misspelt keys.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from testbed import sim
from testbed.errors import TestbedError
from testbed.limits import MAX_EPISODE_STEPS, check_config, check_finite
from testbed.recovery import COST_KEYS, CostWrapper
from testbed.spaces import brief, is_int, jsonable, space_from_dict, space_to_dict


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named, fully resolved highway-env configuration."""

    name: str
    """Preset name, e.g. ``"highway-fast"``."""
    env_id: str
    """Gymnasium id of the highway-env environment, e.g. ``"highway-fast-v0"``."""
    config: Mapping[str, Any]
    """Complete env config: every key of the env's ``default_config()``, resolved."""
    max_episode_steps: int
    """Hard cap on decisions per episode (policy steps); a safety net for envs such as
    ``merge-v0`` that have no time limit of their own."""
    description: str = ""
    """One line saying what the preset is for."""

    @property
    def policy_frequency_hz(self) -> float:
        """Decisions per simulated second [Hz]."""
        return float(self.config["policy_frequency"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, recorded with every output."""
        return {
            "name": self.name,
            "env_id": self.env_id,
            "max_episode_steps": self.max_episode_steps,
            "config": jsonable(dict(self.config)),
        }

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "scenario record") -> Scenario:
        """Inverse of :meth:`to_dict`, for records read from disk: validated as strictly as
        ``--set`` overrides (:func:`get_scenario` with the keys where the record differs from
        its preset), so that a record can neither name code to import (a vehicle class
        outside highway-env's, an unknown env id) nor hold values highway-env crashes on.

        A record made on the other supported highway-env version (1.9.1 or 1.12.1) loads when the
        configs differ only in behaviour-neutral keys (:func:`portable_config`); the returned
        scenario's config is then the installed version's.

        Raises:
            TestbedError: a malformed record, or one no preset with valid overrides gives.
        """
        if not isinstance(data, Mapping):
            raise TestbedError(f"{where} is not an object")
        missing = [k for k in ("name", "env_id", "config", "max_episode_steps") if k not in data]
        if missing:
            raise TestbedError(f"{where} is missing fields: {', '.join(missing)}")
        name, env_id, config, steps = data["name"], data["env_id"], data["config"], data["max_episode_steps"]
        if not isinstance(name, str) or not isinstance(env_id, str):
            raise TestbedError(f"{where}: 'name' and 'env_id' must be strings")
        if not isinstance(config, Mapping):
            raise TestbedError(f"{where}: 'config' must be an object")
        if not (is_int(steps) and 1 <= steps <= MAX_EPISODE_STEPS):
            raise TestbedError(f"{where}: 'max_episode_steps' must be an integer in 1..{MAX_EPISODE_STEPS}")
        name, label = split_label(name, where=where)
        base, _ = split_scenario_name(name)
        if env_id != PRESETS[base].env_id:
            raise TestbedError(
                f"{where}: env id {env_id!r} is not scenario {name!r}'s ({PRESETS[base].env_id}); "
                "records name only the presets' envs"
            )
        check_class_paths(config, where=where)
        preset_config = get_scenario(name).config
        config = portable_config(config, preset_config, where=where)
        resolved = get_scenario(name, _differences(config, preset_config, where=where), where=where)
        if jsonable(dict(resolved.config)) != jsonable(dict(config)):
            raise TestbedError(f"{where}: config does not resolve to itself (values highway-env would not accept)")
        return cls(name=resolved.name + label, env_id=env_id, config=dict(config), max_episode_steps=int(steps))


VERSION_NEUTRAL_KEYS: dict[str, Any] = {
    # highway-env 1.12: also search connected lane segments for neighbours. False (the default of
    # every -v0 env) is the search of 1.9.1, which has no such key (testbed.sim says why exactly).
    "neighbour_vehicles_connected_lanes": False,
}
"""Config keys one supported highway-env version has and the other lacks, each with the value
that behaves as the version without the key: a record holding that value (or lacking the key)
loads on either version (:func:`portable_config`)."""

RENDER_ONLY_KEYS = ("offscreen_rendering",)
"""Config keys that only change how highway-env's viewer draws, never the simulation; their
defaults differ between versions (1.9.1: False from the environment; 1.12: resolved from the
render mode), and the testbed sets them itself where it draws (``testbed.render``,
``testbed.human``). A record's value is replaced by the installed version's default."""


def portable_config(config: Mapping[str, Any], preset: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """``config`` (a record's, made on any supported highway-env) as the installed highway-env's
    config: a key of :data:`VERSION_NEUTRAL_KEYS` missing from the record takes the installed
    default when that is the neutral value, one the installed version lacks is dropped when the
    record holds the neutral value; :data:`RENDER_ONLY_KEYS` take the installed defaults.
    Everything else is left for the caller's checks, which refuse any other difference.

    Args:
        config: the record's config.
        preset: the installed highway-env's config for the record's preset (no overrides).
        where: what the record is, in error messages.

    Raises:
        TestbedError: one line naming the version-specific keys whose values change behaviour
            (they would need the highway-env that wrote them).
    """
    out = dict(config)
    refused: list[str] = []
    for key, neutral in VERSION_NEUTRAL_KEYS.items():
        if key in out and key not in preset:
            if _same_value(out[key], neutral):
                del out[key]
            else:
                refused.append(f"{key}={json.dumps(jsonable(out[key]))}")
        elif key in preset and key not in out:
            if _same_value(preset[key], neutral):
                out[key] = copy.deepcopy(preset[key])
            else:
                refused.append(f"{key} (missing; this highway-env's default is {json.dumps(jsonable(preset[key]))})")
    if refused:
        raise TestbedError(
            f"{where}: config keys of another highway-env version without their neutral value: {', '.join(refused)} "
            f"(installed highway-env {highway_env_version()})"
        )
    for key in RENDER_ONLY_KEYS:
        if key in preset:
            out[key] = copy.deepcopy(preset[key])
    return out


def _same_value(value: Any, neutral: Any) -> bool:
    """``value == neutral`` of the same JSON type (0 is not False)."""
    return type(jsonable(value)) is type(neutral) and jsonable(value) == neutral


def highway_env_version() -> str:
    """The installed highway-env's version string (``"1.9.1"``, ``"1.12.1"``)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("highway-env")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _differences(config: Mapping[str, Any], preset: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """The ``--set`` overrides that turn ``preset`` into ``config`` (``observation.KEY`` and
    ``action.KEY`` for the nested configs)."""
    missing = sorted(set(preset) - set(config))
    if missing:
        raise TestbedError(f"{where}: config is missing keys: {', '.join(missing)}")
    out: dict[str, Any] = {}
    for key, value in config.items():
        default = preset.get(key)
        if key in ("observation", "action") and isinstance(value, Mapping) and isinstance(default, Mapping):
            # The type first: it decides which other keys the nested config may have.
            for sub, sub_value in sorted(value.items(), key=lambda item: item[0] != "type"):
                if key == "observation" and sub == "type" and sub_value != default.get("type"):
                    raise TestbedError(f"{where}: observation type {sub_value!r} is not the scenario's")
                if sub not in default or jsonable(sub_value) != jsonable(default[sub]):
                    out[f"{key}.{sub}"] = sub_value
            for sub in sorted(set(default) - set(value)):
                out[f"{key}.{sub}"] = None  # removed: the class's own default applies
            continue
        if key not in preset or jsonable(value) != jsonable(default):
            out[key] = value
    return out


@dataclasses.dataclass(frozen=True)
class _Preset:
    env_id: str
    overrides: Mapping[str, Any]
    max_episode_steps: int
    description: str
    min_highway_env: str | None = None
    """Oldest highway-env that has the env (None: every supported version)."""

    def available(self) -> bool:
        """Whether the installed highway-env has this preset's env."""
        return self.min_highway_env is None or _version_tuple(highway_env_version()) >= _version_tuple(
            self.min_highway_env
        )


_KINEMATICS = {
    "type": "Kinematics",
    "vehicles_count": 5,
    "features": ["presence", "x", "y", "vx", "vy"],
    "absolute": False,
    "order": "sorted",
    "normalize": True,
    "clip": True,
    "see_behind": False,
}

_ROUNDABOUT: dict[str, Any] = {
    "observation": {
        **_KINEMATICS,
        "absolute": True,
        "features_range": {"x": [-100, 100], "y": [-100, 100], "vx": [-15, 15], "vy": [-15, 15]},
    },
    "action": {"type": "DiscreteMetaAction", "target_speeds": [0, 8, 16]},
}
"""The roundabouts' observation (absolute coordinates, which their curved roads need) and speeds."""

_ROAD_ACTION: dict[str, Any] = {"type": "DiscreteMetaAction", "target_speeds": [10, 15, 20, 25, 30]}
"""The straight-road presets' meta-actions. highway-env's default target speeds (20, 25, 30 m/s)
leave no way to follow a leader slower than 20 m/s, so in dense traffic every driver, however
good, must cut out or collide; 10 and 15 m/s let it follow. The reward's speed range stays
20-30 m/s, so driving slower than 20 m/s earns no speed reward."""

PRESETS: dict[str, _Preset] = {
    "highway-fast": _Preset(
        env_id="highway-fast-v0",
        overrides={"observation": _KINEMATICS, "action": _ROAD_ACTION},
        max_episode_steps=1000,
        description="3-lane highway, 20 vehicles, 30 s at 1 Hz decisions; the fast default.",
    ),
    "highway": _Preset(
        env_id="highway-v0",
        overrides={"observation": _KINEMATICS, "action": _ROAD_ACTION},
        max_episode_steps=1000,
        description="4-lane highway, 50 vehicles, 40 s; ~10x slower to simulate than highway-fast.",
    ),
    "merge": _Preset(
        env_id="merge-v0",
        overrides={"observation": _KINEMATICS, "action": _ROAD_ACTION},
        # merge-v0 ends only on a crash or once the ego passes x = 370 m; at the lowest
        # target speed (10 m/s) that takes ~37 decisions, so 60 never cuts a real episode.
        max_episode_steps=60,
        description="Two-lane highway with vehicles merging in from an access ramp.",
    ),
    "roundabout": _Preset(
        env_id="roundabout-v0",
        overrides=_ROUNDABOUT,
        max_episode_steps=1000,
        description="Single-lane-entry roundabout with incoming traffic, 11 s.",
    ),
    "highway-fast-continuous": _Preset(
        env_id="highway-fast-v0",
        overrides={
            "observation": _KINEMATICS,
            "action": {
                "type": "ContinuousAction",
                # Action in [-1, 1]^2 = [acceleration, steering], mapped linearly to these ranges.
                "acceleration_range": [-5.0, 5.0],
                # +-15 deg instead of highway-env's +-45 deg: at 25 m/s lane keeping needs about
                # 1 deg, so the default range leaves the useful steering in 2% of the action
                # range, where a clone's small regression errors become large yaw rates.
                "steering_range": [-np.pi / 12, np.pi / 12],
                # Never reverse (the kinematic Vehicle's own range is -40..40 m/s).
                "speed_range": [0.0, 40.0],
                "longitudinal": True,
                "lateral": True,
                "dynamical": False,
                "clip": True,
            },
            # Steering held for 1 s at highway speed cannot keep a lane: decide at 5 Hz, i.e.
            # once per simulation frame of highway-fast (simulation_frequency 5).
            "policy_frequency": 5,
            # A continuous driver can leave the road; highway-env then zeroes the reward but
            # lets the episode run on. End it instead, as a crash ends it.
            "offroad_terminal": True,
        },
        max_episode_steps=1000,
        description="highway-fast with continuous [acceleration, steering] actions at 5 Hz; ends off-road.",
    ),
    # highway-env 1.12's configurable variants (the current stack only; refused on 1.9.1).
    "merge-generic": _Preset(
        env_id="merge-generic-v0",
        overrides={"observation": _KINEMATICS, "action": _ROAD_ACTION},
        max_episode_steps=60,  # ends like merge-v0, once the ego passes the end of the road
        description="highway-env 1.12's configurable merge (lanes, vehicles, section lengths); its defaults.",
        min_highway_env="1.12",
    ),
    "roundabout-generic": _Preset(
        env_id="roundabout-generic-v0",
        overrides=_ROUNDABOUT,
        max_episode_steps=1000,
        description="highway-env 1.12's configurable roundabout: two lanes, radius 20 m, 5 vehicles, 17 s.",
        min_highway_env="1.12",
    ),
}


# What the clone observes. The expert is privileged (it reads the simulator), so a sensor
# changes only the observation recorded in demonstrations and fed to clones. Each config
# lists every constructor argument of its highway-env observation class, so outputs record
# exactly what was observed. A scenario with a sensor other than kinematics is named
# ``BASE-SENSOR`` (``highway-fast-camera``).
SENSORS: dict[str, Mapping[str, Any] | None] = {
    # The preset's own Kinematics config (roundabout's uses absolute coordinates).
    "kinematics": None,
    # 16 rays (22.5 deg each) of distance to the nearest vehicle and its closing speed, both
    # divided by the 60 m range. Sees vehicles only, not lane markings or road edges.
    "lidar": {"type": "LidarObservation", "cells": 16, "maximum_range": 60.0, "normalize": True},
    # World-aligned grid around the ego: 16 cells of 5 m along the road (27.5 m behind to
    # 52.5 m ahead) by 7 cells of 4 m across it, so that lanes (4 m apart) fall on cell
    # centres, not edges. Layers: presence, relative vx and vy (mapped from +-80 m/s, highway-
    # env's default range, to +-1) and on-road. Shape (4, 16, 7).
    "grid": {
        "type": "OccupancyGrid",
        "features": ["presence", "vx", "vy", "on_road"],
        "grid_size": [[-27.5, 52.5], [-14.0, 14.0]],
        "grid_step": [5.0, 4.0],
        "features_range": {"vx": [-80.0, 80.0], "vy": [-80.0, 80.0]},
        "absolute": False,
        "align_to_vehicle_axes": False,
        "clip": True,
        "as_image": False,
    },
    # Top-down grayscale render of the last 4 decisions, 128 x 64 px at 1.75 px/m (73 m x
    # 37 m, the ego at 30% of the width): highway-env's documented CNN example. The
    # observation is uint8 in [0, 255] with shape (stack, width, height) = (4, 128, 64).
    "camera": {
        "type": "GrayscaleObservation",
        "observation_shape": [128, 64],
        "stack_size": 4,
        "weights": [0.2989, 0.587, 0.114],
        "scaling": 1.75,
        "centering_position": [0.3, 0.5],
    },
    # A richer Kinematics, to ask whether a clone is limited by what it sees or by its data:
    # the ego and its 9 nearest vehicles (instead of 4), vehicles behind included (the default
    # sees only those ahead and beside), and every vehicle's heading (cos_h, sin_h) besides
    # position and velocity; relative coordinates on every preset (the roundabout's kinematics
    # sensor uses absolute ones), highway-env's default normalisation ranges (features_range
    # None: x +-5 MAX_SPEED, y +- lane width x lanes, vx and vy +-2 MAX_SPEED). Shape (10, 7).
    # Still not observable: the ego's target speed (the DiscreteMetaAction state that FASTER
    # and SLOWER change, which the scripted expert plans with) is not a Kinematics feature,
    # nor are lane markings or the other drivers' IDM/MOBIL parameters.
    "kinrich": {
        "type": "Kinematics",
        "features": ["presence", "x", "y", "vx", "vy", "cos_h", "sin_h"],
        "vehicles_count": 10,
        "features_range": None,
        "absolute": False,
        "order": "sorted",
        "normalize": True,
        "clip": True,
        "see_behind": True,
        "observe_intentions": False,
        "include_obstacles": True,
    },
}
DEFAULT_SENSOR = "kinematics"


def scenario_names() -> list[str]:
    """Names of the shipped presets the installed highway-env has (each also takes a sensor
    suffix, see :data:`SENSORS`); :data:`PRESETS` also holds those of newer versions."""
    return sorted(name for name, preset in PRESETS.items() if preset.available())


def sensor_names() -> list[str]:
    """Names of the sensors a scenario can give the clone."""
    return list(SENSORS)


_LABEL = re.compile(r"^(?P<name>[^\[\]]+)(?P<label>\[[A-Za-z0-9_.,=+-]{1,64}\])$")
"""``NAME[LABEL]``: a scenario name with a case label, as experiments name overridden variants."""


def split_label(name: str, *, where: str = "scenario record") -> tuple[str, str]:
    """``"highway-fast[dense]"`` -> ``("highway-fast", "[dense]")``; a name without a label
    -> ``(name, "")``. Experiments label a preset run with ``--set`` overrides this way
    (the overrides themselves are in the record's config); the label is kept, not parsed.

    Raises:
        TestbedError: a bracket that is not one trailing label of letters, digits and ``_.,=+-``.
    """
    if "[" not in name and "]" not in name:
        return name, ""
    match = _LABEL.match(name)
    if match is None:
        raise TestbedError(f"{where}: scenario name {name!r} is not NAME or NAME[LABEL]")
    return match["name"], match["label"]


def split_scenario_name(name: str) -> tuple[str, str]:
    """``"highway-fast-camera"`` -> ``("highway-fast", "camera")``; a bare preset name has
    the default sensor (kinematics).

    Raises:
        TestbedError: neither a preset nor ``PRESET-SENSOR``.
    """
    if name in PRESETS:
        return _available(name), DEFAULT_SENSOR
    base, _, sensor = name.rpartition("-")
    if base in PRESETS and sensor in SENSORS and sensor != DEFAULT_SENSOR:
        return _available(base), sensor
    raise TestbedError(
        f"unknown scenario {name!r}; choose from: {', '.join(scenario_names())}, optionally with a sensor "
        f"suffix: {', '.join('-' + s for s in SENSORS if s != DEFAULT_SENSOR)} (e.g. highway-fast-camera)"
    )


def _available(base: str) -> str:
    """``base`` if the installed highway-env has its preset's env.

    Raises:
        TestbedError: one line naming the highway-env version the preset needs.
    """
    preset = PRESETS[base]
    if not preset.available():
        raise TestbedError(
            f"scenario {base!r} needs highway-env >= {preset.min_highway_env} (env {preset.env_id}); installed is "
            f"{highway_env_version()}: use the current stack (README, 'The current stack')"
        )
    return base


def _env_class(env_id: str) -> Any:
    import highway_env  # noqa: F401  (registers the highway-env ids)

    entry = gym.spec(env_id).entry_point
    if callable(entry):
        return entry
    module, _, attr = str(entry).partition(":")
    return getattr(__import__(module, fromlist=[attr]), attr)


def default_config(env_id: str) -> dict[str, Any]:
    """The env's own ``default_config()`` (a fresh copy), with highway-env 1.12's
    ``offscreen_rendering: None`` resolved as 1.12 resolves it for every render mode the
    testbed uses (None, ``"rgb_array"``): True, so a scenario's config is what the env runs with."""
    config = copy.deepcopy(_env_class(env_id).default_config())
    if "offscreen_rendering" in config and config["offscreen_rendering"] is None:
        config["offscreen_rendering"] = True
    return config


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are JSON when they parse as JSON, else strings.

    Raises:
        TestbedError: an item without ``=``, or a value holding a non-finite number.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TestbedError(f"--set expects key=value, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        # JSON gives inf for 1e400 and reads NaN and Infinity: refused here, nested ones too.
        check_finite(f"--set {key.strip()}", value)
        out[key.strip()] = value
    return out


# Keys whose values must be whole numbers; other numeric keys are real-valued even where
# highway-env's default happens to be written as an int (``vehicles_density: 1``).
_INTEGER_KEYS = {
    "lanes_count",
    "vehicles_count",
    "controlled_vehicles",
    "initial_lane_id",
    "simulation_frequency",
    "policy_frequency",
    "screen_width",
    "screen_height",
}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default``."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, float) and key.rpartition(".")[2] not in _INTEGER_KEYS:
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, (list, tuple)):
        if isinstance(value, list):
            return value
    elif isinstance(default, Mapping):
        if isinstance(value, Mapping):
            return dict(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    else:
        return value
    raise TestbedError(
        f"config key {key!r} expects a value like {json.dumps(jsonable(default))} "
        f"({type(default).__name__}), got {json.dumps(value)}"
    )


def _check_numbers(key: str, value: Any) -> None:
    """Refuse a non-finite number anywhere in an override (its bounds are checked on the
    resolved config, :func:`testbed.limits.check_config`)."""
    check_finite(f"config key {key!r}", value)


VEHICLE_CLASSES = tuple(
    f"highway_env.vehicle.behavior.{name}"
    for name in ("IDMVehicle", "LinearVehicle", "AggressiveVehicle", "DefensiveVehicle")
)
"""The only values ``other_vehicles_type`` may take: highway-env's own traffic models.
highway-env imports whatever class path a config names (``utils.class_from_path``), so a
config from the command line or from disk could otherwise make the testbed import, and run,
any module on ``sys.path``."""

_CLASS_PATH_KEYS = {"other_vehicles_type": VEHICLE_CLASSES}
_IDENTIFIER_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*([.:][A-Za-z_][A-Za-z0-9_]*)+$")


def check_class_paths(config: Any, *, where: str) -> None:
    """Refuse a config that names a class outside :data:`VEHICLE_CLASSES`: the
    ``other_vehicles_type`` key, or any string anywhere in it that looks like a module path
    (``pkg.mod.Class``), which a future highway-env key might resolve the same way.

    Raises:
        TestbedError: naming the key and the allowed classes.
    """
    allowed = ", ".join(c.rpartition(".")[2] for c in VEHICLE_CLASSES)
    if isinstance(config, Mapping):
        for key, classes in _CLASS_PATH_KEYS.items():
            if key in config and config[key] not in classes:
                raise TestbedError(
                    f"{where}: config key {key!r} is {json.dumps(jsonable(config[key]))}, not one of highway-env's "
                    f"vehicle classes (highway_env.vehicle.behavior.{{{allowed}}}); configs never name other code"
                )
    for key, value in _strings(config, ""):
        if _IDENTIFIER_PATH.match(value) and value not in VEHICLE_CLASSES:
            raise TestbedError(
                f"{where}: config key {key!r} names {value!r}, which looks like code to import; only highway-env's "
                f"vehicle classes may be named (highway_env.vehicle.behavior.{{{allowed}}})"
            )


def _strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v, key)


def get_scenario(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    sensor: str | None = None,
    where: str = "--set",
) -> Scenario:
    """Resolve a preset, applying validated overrides.

    Args:
        name: one of :func:`scenario_names`, optionally with a sensor suffix
            (``highway-fast-lidar``).
        overrides: top-level config keys to change, e.g. ``{"vehicles_density": 1.5}``, or
            keys of the observation/action config (``{"observation.cells": 32}``).
        sensor: one of :func:`sensor_names`; the same as the name's suffix (giving both is
            allowed only when they agree). The resolved scenario's name carries the suffix.
        where: what the overrides came from, in error messages.

    With overrides, the env is built and stepped once before the scenario is returned:
    highway-env accepts many values it then crashes on (``observation.features=["nope"]``),
    and the error names the overrides instead of ending a run in a traceback.

    Raises:
        TestbedError: unknown scenario or sensor, unknown key (the message lists the valid
            ones) or a value of the wrong type.
    """
    base, named_sensor = split_scenario_name(name)
    if sensor is not None:
        if sensor not in SENSORS:
            raise TestbedError(f"unknown sensor {sensor!r}; choose from: {', '.join(SENSORS)}")
        if name != base and sensor != named_sensor:
            raise TestbedError(f"scenario {name!r} has sensor {named_sensor!r}, not {sensor!r}")
        named_sensor = sensor
    name = base if named_sensor == DEFAULT_SENSOR else f"{base}-{named_sensor}"
    preset = PRESETS[base]
    config = default_config(preset.env_id)
    config.update(copy.deepcopy(dict(preset.overrides)))
    sensor_config = SENSORS[named_sensor]
    if sensor_config is not None:
        config["observation"] = copy.deepcopy(dict(sensor_config))
    for key, value in (overrides or {}).items():
        top, dot, sub = key.partition(".")
        if dot and top in ("observation", "action"):
            _set_nested(config, top, sub, value, name)
            continue
        if key in COST_KEYS:  # the testbed's own keys (recoverable-cost driving)
            value = _coerce(key, value, COST_KEYS[key])
            if key == "near_miss_headway_s" and not 0 < value <= 10:
                raise TestbedError(f"{where}: 'near_miss_headway_s' must be in (0, 10] s, got {value}")
            config[key] = value
            continue
        if key not in config:
            raise TestbedError(
                f"unknown config key {key!r} for scenario {name!r}; valid keys: {', '.join(sorted(config))}"
                f" (and observation.<key>, action.<key>, and the testbed's {', '.join(COST_KEYS)})"
            )
        value = _coerce(key, value, config[key])
        _check_numbers(key, value)
        config[key] = value
    _check_observation(config["observation"], name)
    expected = (SENSORS[named_sensor] or preset.overrides["observation"])["type"]
    if config["observation"]["type"] != expected:
        raise TestbedError(
            f"scenario {name!r} observes with {expected}; choose another sensor with a suffix on the scenario "
            f"name (e.g. {base}-lidar), not by replacing the observation config"
        )
    check_class_paths(config, where=where)
    _check_limits(config, where=where)
    scenario = Scenario(
        name=name,
        env_id=preset.env_id,
        config=config,
        max_episode_steps=preset.max_episode_steps,
        description=preset.description,
    )
    if overrides:
        _try_env(scenario, overrides, where=where)
    return scenario


def _check_limits(config: Mapping[str, Any], *, where: str) -> None:
    # The bounds of every number that sizes memory or time: testbed.limits.
    check_config(config, where=where)
    if config.get("controlled_vehicles", 1) != 1:
        raise TestbedError(f"{where}: config key 'controlled_vehicles' must be 1 (the testbed drives one ego vehicle)")
    if config.get("manual_control"):
        raise TestbedError(f"{where}: config key 'manual_control' must be false (drive yourself with `testbed drive`)")
    if config.get("policy_frequency", 1) > config.get("simulation_frequency", 1):
        raise TestbedError(f"{where}: 'policy_frequency' must not exceed 'simulation_frequency'")


def _try_env(scenario: Scenario, overrides: Mapping[str, Any], *, where: str) -> None:
    """Build the env, reset it and take one step; any exception is the overrides' fault."""
    settings = ", ".join(f"{k}={json.dumps(jsonable(v))}" for k, v in overrides.items())
    try:
        env = make_env(scenario)
        try:
            env.reset(seed=0)
            space = env.action_space
            action = np.zeros(space.shape, space.dtype) if isinstance(space, gym.spaces.Box) else 1
            env.step(action)
        finally:
            env.close()
    except Exception as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        raise TestbedError(
            f"{where}: scenario {scenario.name!r} with {settings} fails in highway-env ({reason})"
        ) from None


def _type_params(kind: str, type_name: str) -> set[str]:
    """Constructor arguments of highway-env's observation or action type ``type_name``."""
    import inspect

    from highway_env.envs.common import action, observation

    module = observation if kind == "observation" else action
    names = {
        "Kinematics": "KinematicObservation",
        "OccupancyGrid": "OccupancyGridObservation",
        "GrayscaleObservation": "GrayscaleObservation",
        "LidarObservation": "LidarObservation",
        "TimeToCollision": "TimeToCollisionObservation",
    }
    cls = getattr(module, names.get(type_name, type_name), None)
    params: set[str] = set()
    for klass in inspect.getmro(cls) if isinstance(cls, type) else ():
        init = klass.__dict__.get("__init__")
        if init is not None:
            params |= {p for p in inspect.signature(init).parameters if p not in ("self", "env", "args", "kwargs")}
    return params


def _check_observation(obs: Any, name: str) -> None:
    """Refuse an observation config highway-env would misread (it ignores unknown keys)."""
    if not isinstance(obs, Mapping) or obs.get("type") not in _OBSERVATION_TYPES:
        raise TestbedError(
            f"scenario {name!r}: observation type must be one of {', '.join(_OBSERVATION_TYPES)} "
            f"(choose it with a sensor suffix, e.g. highway-fast-lidar), got {obs}"
        )
    unknown = set(obs) - {"type"} - _type_params("observation", obs["type"])
    if unknown:
        raise TestbedError(
            f"scenario {name!r}: unknown observation key(s) {', '.join(sorted(unknown))} for {obs['type']}"
        )
    for key in ("stack_size", "cells"):
        if key in obs and not (is_int(obs[key]) and obs[key] >= 1):
            raise TestbedError(f"config key 'observation.{key}' must be a positive integer, got {json.dumps(obs[key])}")
    if "maximum_range" in obs and not (_is_number(obs["maximum_range"]) and obs["maximum_range"] > 0):
        raise TestbedError(
            f"config key 'observation.maximum_range' must be > 0, got {json.dumps(obs['maximum_range'])}"
        )
    shape = obs.get("observation_shape", [_MIN_IMAGE_PX] * 2)
    if not (isinstance(shape, list) and len(shape) == 2 and all(is_int(v) and v >= _MIN_IMAGE_PX for v in shape)):
        raise TestbedError(
            f"config key 'observation.observation_shape' must be [width, height] in pixels, each at least "
            f"{_MIN_IMAGE_PX} (the CNN's smallest input), got {json.dumps(shape)}"
        )
    step = obs.get("grid_step", [1.0, 1.0])
    if not (isinstance(step, list) and len(step) == 2 and all(_is_number(v) and v > 0 for v in step)):
        raise TestbedError(f"config key 'observation.grid_step' must be two cell sizes > 0 [m], got {json.dumps(step)}")


_MIN_IMAGE_PX = 36  # SB3's NatureCNN (kernels 8/4, 4/2, 3/1) needs 36 px to leave one output cell


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


# Observation types a clone can use (single-agent, one array); keys are highway-env's names.
_OBSERVATION_TYPES = ("Kinematics", "LidarObservation", "OccupancyGrid", "GrayscaleObservation")


def _set_nested(config: dict[str, Any], top: str, sub: str, value: Any, name: str) -> None:
    if top == "observation" and sub == "type":
        raise TestbedError(
            f"choose the observation type with a sensor suffix on the scenario name "
            f"({', '.join(f'{split_scenario_name(name)[0]}-{s}' for s in SENSORS if s != DEFAULT_SENSOR)}), "
            "not --set observation.type"
        )
    nested = dict(config[top])
    valid = set(nested) | _type_params(top, str(nested.get("type")))
    if sub not in valid:
        raise TestbedError(
            f"unknown config key {top + '.' + sub!r} for scenario {name!r}; valid keys: "
            + ", ".join(f"{top}.{k}" for k in sorted(valid))
        )
    if value is None:
        # null removes the key: the observation/action class's own default applies.
        nested.pop(sub, None)
        config[top] = nested
        return
    if sub in nested:
        value = _coerce(f"{top}.{sub}", value, nested[sub])
    _check_numbers(sub, value)
    nested[sub] = value
    config[top] = nested


class _QuietStep(gym.Wrapper):
    """Swallow stdout during ``step``: some highway-env 1.9.1 envs (merge-v0) print debug lines."""

    def step(self, action):
        with contextlib.redirect_stdout(io.StringIO()):
            return self.env.step(action)


def make_env(scenario: Scenario, *, render_mode: str | None = None) -> gym.Env:
    """Create the scenario's environment.

    The env is built directly from its class (no gymnasium checker wrappers on the hot path),
    with a :class:`gymnasium.wrappers.TimeLimit` at ``scenario.max_episode_steps`` and stdout
    of ``step`` silenced. The underlying highway-env object is ``env.unwrapped``.

    The accelerated simulator (:mod:`testbed.sim`: bit-identical, several times faster) is
    switched on here, in whatever process builds the env (rollout workers included), unless
    ``TESTBED_STOCK_SIM=1``.
    """
    # Last line of defence: whatever built this scenario, its config names no code to import.
    check_class_paths(scenario.config, where=f"scenario {scenario.name!r}")
    sim.enable()
    cls = _env_class(scenario.env_id)
    config = copy.deepcopy(dict(scenario.config))
    costs = {k: config.pop(k) for k in COST_KEYS if k in config}  # the testbed's, not highway-env's
    observation = dict(config["observation"])
    if observation.get("type") == "GrayscaleObservation":
        # highway-env concatenates (stack_size,) + observation_shape: it must be a tuple.
        observation["observation_shape"] = tuple(observation["observation_shape"])
        config["observation"] = observation
        offscreen_video()
    # The constructor resets the env once (the Lidar quirk of _CastObservation applies).
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
        base = cls(config=config, render_mode=render_mode)
    base.spec = gym.spec(scenario.env_id)
    env: gym.Env = _QuietStep(base)
    if costs:
        env = CostWrapper(
            env,
            recover_crashes=bool(costs.get("crash_recovery", COST_KEYS["crash_recovery"])),
            near_miss_headway_s=float(costs.get("near_miss_headway_s", COST_KEYS["near_miss_headway_s"])),
            stationary_traffic=bool(costs.get("stationary_traffic", COST_KEYS["stationary_traffic"])),
        )
    if observation.get("type") == "LidarObservation":
        env = _CastObservation(env)
    return gym.wrappers.TimeLimit(env, max_episode_steps=scenario.max_episode_steps)


def offscreen_video() -> None:
    """Let pygame render without a display, in this process and the workers it spawns.

    highway-env's viewer draws nothing when ``SDL_VIDEODRIVER`` is ``dummy`` (the usual
    headless advice: every camera frame would be blank), so use SDL's ``offscreen`` driver.
    """
    if os.environ.get("SDL_VIDEODRIVER") in (None, "", "dummy"):
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


class _CastObservation(gym.ObservationWrapper):
    """Fix two quirks of highway-env 1.9.1's LidarObservation: it returns float64 arrays under
    a float32 space (which ``observation_space.contains`` rejects), and its ray casting
    divides by zero for rays parallel to a vehicle's side (the infinities it then compares
    are intended), printing a RuntimeWarning on most steps."""

    def step(self, action):
        with np.errstate(divide="ignore", invalid="ignore"):
            return super().step(action)

    def reset(self, **kwargs):
        with np.errstate(divide="ignore", invalid="ignore"):
            return super().reset(**kwargs)

    def observation(self, observation):
        return np.asarray(observation, dtype=self.observation_space.dtype)


def describe_spaces(scenario: Scenario) -> dict[str, Any]:
    """Observation and action spaces as JSON, used to check datasets and policies match."""
    env = make_env(scenario)
    try:
        return {
            "observation_space": space_to_dict(env.observation_space),
            "action_space": space_to_dict(env.action_space),
        }
    finally:
        env.close()


def check_spaces(record: dict[str, Any], scenario: Scenario, *, what: str) -> None:
    """Fail unless ``record``'s observation and action spaces equal ``scenario``'s.

    Raises:
        TestbedError: naming which space differs and the two scenarios.
    """
    expected = describe_spaces(scenario)
    made_for = record.get("scenario", {}).get("name", "?")
    for key in ("observation_space", "action_space"):
        if record.get(key) != expected[key]:
            raise TestbedError(
                f"{what} were made for scenario {made_for!r} with a different {key.replace('_', ' ')} "
                f"than scenario {scenario.name!r}: {brief(record.get(key))} vs {brief(expected[key])}"
            )
    # Same shape is not enough: Kinematics features in absolute vs relative coordinates, or
    # in another order, would feed a clone numbers that mean something else.
    theirs = record.get("scenario", {}).get("config", {}).get("observation")
    ours = scenario.to_dict()["config"]["observation"]
    if theirs != ours:
        raise TestbedError(
            f"{what} were made for scenario {made_for!r} whose observation config differs from "
            f"scenario {scenario.name!r}'s: {theirs} vs {ours}"
        )


def check_record(record: Mapping[str, Any], *, where: str) -> None:
    """Check the fields every record of data made in a scenario holds (demonstration and
    clone metadata): ``observation_space`` and ``action_space`` are readable spaces
    (:func:`testbed.spaces.space_from_dict`) and ``scenario`` a valid scenario record
    (:meth:`Scenario.from_dict`: it names no code to import, holds nothing highway-env
    crashes on).

    Raises:
        TestbedError: naming the field.
    """
    for key in ("observation_space", "action_space"):
        try:
            space_from_dict(record[key])
        except TestbedError as e:
            raise TestbedError(f"{where}: field {key!r} is not a space ({e})") from None
    Scenario.from_dict(record["scenario"], where=f"{where}, field 'scenario'")
