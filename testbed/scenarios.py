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
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from testbed.errors import TestbedError


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
            "config": _jsonable(dict(self.config)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Scenario":
        """Inverse of :meth:`to_dict` (no validation beyond the keys being present)."""
        try:
            return cls(
                name=str(data["name"]),
                env_id=str(data["env_id"]),
                config=dict(data["config"]),
                max_episode_steps=int(data["max_episode_steps"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise TestbedError(f"malformed scenario record: {e}") from None


@dataclasses.dataclass(frozen=True)
class _Preset:
    env_id: str
    overrides: Mapping[str, Any]
    max_episode_steps: int
    description: str


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

PRESETS: dict[str, _Preset] = {
    "highway-fast": _Preset(
        env_id="highway-fast-v0",
        overrides={"observation": _KINEMATICS, "action": {"type": "DiscreteMetaAction"}},
        max_episode_steps=1000,
        description="3-lane highway, 20 vehicles, 30 s at 1 Hz decisions; the fast default.",
    ),
    "highway": _Preset(
        env_id="highway-v0",
        overrides={"observation": _KINEMATICS, "action": {"type": "DiscreteMetaAction"}},
        max_episode_steps=1000,
        description="4-lane highway, 50 vehicles, 40 s; ~10x slower to simulate than highway-fast.",
    ),
    "merge": _Preset(
        env_id="merge-v0",
        overrides={"observation": _KINEMATICS, "action": {"type": "DiscreteMetaAction"}},
        # merge-v0 ends only on a crash or once the ego passes x = 370 m; at the lowest
        # target speed (20 m/s) that takes ~18 decisions, so 60 never cuts a real episode.
        max_episode_steps=60,
        description="Two-lane highway with vehicles merging in from an access ramp.",
    ),
    "roundabout": _Preset(
        env_id="roundabout-v0",
        overrides={
            "observation": {
                **_KINEMATICS,
                "absolute": True,
                "features_range": {"x": [-100, 100], "y": [-100, 100], "vx": [-15, 15], "vy": [-15, 15]},
            },
            "action": {"type": "DiscreteMetaAction", "target_speeds": [0, 8, 16]},
        },
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
}


def scenario_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(PRESETS)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _env_class(env_id: str) -> type:
    import highway_env  # noqa: F401  (registers the highway-env ids)

    entry = gym.spec(env_id).entry_point
    if callable(entry):
        return entry
    module, _, attr = str(entry).partition(":")
    return getattr(__import__(module, fromlist=[attr]), attr)


def default_config(env_id: str) -> dict[str, Any]:
    """The env's own ``default_config()`` (a fresh copy)."""
    return copy.deepcopy(_env_class(env_id).default_config())


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are JSON when they parse as JSON, else strings.

    Raises:
        TestbedError: an item without ``=``.
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
        out[key.strip()] = value
    return out


# Keys whose values must be whole numbers; other numeric keys are real-valued even where
# highway-env's default happens to be written as an int (``vehicles_density: 1``).
_INTEGER_KEYS = {
    "lanes_count", "vehicles_count", "controlled_vehicles", "initial_lane_id",
    "simulation_frequency", "policy_frequency", "screen_width", "screen_height",
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
        f"config key {key!r} expects a value like {json.dumps(_jsonable(default))} "
        f"({type(default).__name__}), got {json.dumps(value)}"
    )


def _check_numbers(key: str, value: Any) -> None:
    if isinstance(value, float) and not np.isfinite(value):
        raise TestbedError(f"config key {key!r} must be finite, got {value}")
    positive = {
        "duration", "vehicles_count", "lanes_count", "vehicles_density",
        "simulation_frequency", "policy_frequency",
    }
    if key in positive and isinstance(value, (int, float)) and value <= 0:
        raise TestbedError(f"config key {key!r} must be > 0, got {value}")


def get_scenario(name: str, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Resolve a preset, applying validated overrides.

    Args:
        name: one of :func:`scenario_names`.
        overrides: top-level config keys to change, e.g. ``{"vehicles_density": 1.5}``.

    Raises:
        TestbedError: unknown scenario, unknown key (the message lists the valid ones) or a
            value of the wrong type.
    """
    if name not in PRESETS:
        raise TestbedError(f"unknown scenario {name!r}; choose from: {', '.join(scenario_names())}")
    preset = PRESETS[name]
    config = default_config(preset.env_id)
    config.update(copy.deepcopy(dict(preset.overrides)))
    for key, value in (overrides or {}).items():
        top, dot, sub = key.partition(".")
        if dot and top in ("observation", "action"):
            _set_nested(config, top, sub, value, name)
            continue
        if key not in config:
            raise TestbedError(
                f"unknown config key {key!r} for scenario {name!r}; valid keys: {', '.join(sorted(config))}"
                " (and observation.<key>, action.<key>)"
            )
        value = _coerce(key, value, config[key])
        _check_numbers(key, value)
        config[key] = value
    return Scenario(
        name=name,
        env_id=preset.env_id,
        config=config,
        max_episode_steps=preset.max_episode_steps,
        description=preset.description,
    )


def _type_params(kind: str, type_name: str) -> set[str]:
    """Constructor arguments of highway-env's observation or action type ``type_name``."""
    import inspect

    from highway_env.envs.common import action, observation

    module = observation if kind == "observation" else action
    names = {"Kinematics": "KinematicObservation", "OccupancyGrid": "OccupancyGridObservation",
             "GrayscaleObservation": "GrayscaleObservation", "LidarObservation": "LidarObservation",
             "TimeToCollision": "TimeToCollisionObservation"}
    cls = getattr(module, names.get(type_name, type_name), None)
    params: set[str] = set()
    for klass in inspect.getmro(cls) if isinstance(cls, type) else ():
        init = klass.__dict__.get("__init__")
        if init is not None:
            params |= {p for p in inspect.signature(init).parameters if p not in ("self", "env", "args", "kwargs")}
    return params


def _set_nested(config: dict[str, Any], top: str, sub: str, value: Any, name: str) -> None:
    nested = dict(config[top])
    valid = set(nested) | _type_params(top, str(nested.get("type")))
    if sub not in valid:
        raise TestbedError(
            f"unknown config key {top + '.' + sub!r} for scenario {name!r}; valid keys: "
            + ", ".join(f"{top}.{k}" for k in sorted(valid))
        )
    if sub in nested:
        value = _coerce(f"{top}.{sub}", value, nested[sub])
    _check_numbers(sub, value)
    nested[sub] = value
    config[top] = nested


class _QuietStep(gym.Wrapper):
    """Swallow stdout during ``step``: some highway-env 1.9.1 envs (merge-v0) print debug lines."""

    def step(self, action):  # type: ignore[override]
        with contextlib.redirect_stdout(io.StringIO()):
            return self.env.step(action)


def make_env(scenario: Scenario, *, render_mode: str | None = None) -> gym.Env:
    """Create the scenario's environment.

    The env is built directly from its class (no gymnasium checker wrappers on the hot path),
    with a :class:`gymnasium.wrappers.TimeLimit` at ``scenario.max_episode_steps`` and stdout
    of ``step`` silenced. The underlying highway-env object is ``env.unwrapped``.
    """
    cls = _env_class(scenario.env_id)
    with contextlib.redirect_stdout(io.StringIO()):
        base = cls(config=copy.deepcopy(dict(scenario.config)), render_mode=render_mode)
    base.spec = gym.spec(scenario.env_id)
    env: gym.Env = _QuietStep(base)
    return gym.wrappers.TimeLimit(env, max_episode_steps=scenario.max_episode_steps)


def describe_spaces(scenario: Scenario) -> dict[str, Any]:
    """Observation and action spaces as JSON, used to check datasets and policies match."""
    env = make_env(scenario)
    try:
        return {"observation_space": space_to_dict(env.observation_space), "action_space": space_to_dict(env.action_space)}
    finally:
        env.close()


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A JSON description of a Box or Discrete space."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            # Python's json writes and reads +-Infinity, which unbounded Boxes need.
            "low": space.low.astype(np.float64).tolist(),
            "high": space.high.astype(np.float64).tolist(),
        }
    raise TestbedError(f"unsupported space {space}")


def space_from_dict(data: Mapping[str, Any]) -> gym.Space:
    """Inverse of :func:`space_to_dict` (a fresh space, with no sampled RNG inside)."""
    kind = data.get("type")
    if kind == "Discrete":
        return gym.spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    if kind == "Box":
        low = np.asarray(data["low"], dtype=np.float64)
        high = np.asarray(data["high"], dtype=np.float64)
        dtype = np.dtype(data["dtype"])
        return gym.spaces.Box(low=low.astype(dtype), high=high.astype(dtype), shape=tuple(data["shape"]), dtype=dtype)
    raise TestbedError(f"unsupported space description {dict(data)}")
