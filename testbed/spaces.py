"""Observation and action spaces as JSON, and back.

Datasets, clones and models record their spaces in this form; comparing two records is how
the testbed refuses data or policies made for another scenario.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from testbed.errors import TestbedError


def jsonable(value: Any) -> Any:
    """``value`` with mappings, sequences and numpy values turned into plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


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


def describe_space(space: Any) -> str:
    """``Box(5, 5) float32`` / ``Discrete(5)``: what must match between a model and an env."""
    if isinstance(space, gym.spaces.Discrete):
        return f"Discrete({int(space.n)})" + (f" from {int(space.start)}" if int(space.start) else "")
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(int(s) for s in space.shape)} {space.dtype}"
    return repr(space)


def brief(space: Any) -> str:
    """A recorded space (:func:`space_to_dict`'s form) in a few characters, for messages."""
    if not isinstance(space, dict):
        return repr(space)
    if space.get("type") == "Discrete":
        return f"Discrete({space.get('n')})"
    return f"{space.get('type')}{tuple(space.get('shape', ()))}"
