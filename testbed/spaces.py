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


MAX_SPACE_SIZE = 1_000_000
"""Largest number of elements of a Box (or actions of a Discrete) a record may declare:
beyond it, building the space or a network for it exhausts memory instead of failing."""
_DTYPES = ("float32", "float64", "uint8", "int64", "int32", "bool")


def space_from_dict(data: Any) -> gym.Space:
    """Inverse of :func:`space_to_dict` (a fresh space, with no sampled RNG inside), checking
    the record first: a Discrete of 1 to :data:`MAX_SPACE_SIZE` actions, or a Box of at most
    that many elements, a known dtype and bounds that broadcast to its shape.

    Raises:
        TestbedError: anything else.
    """
    if not isinstance(data, Mapping):
        raise TestbedError(f"a space record must be an object, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "Discrete":
        n: Any = data.get("n")
        start: Any = data.get("start", 0)
        if not (is_int(n) and 1 <= n <= MAX_SPACE_SIZE and is_int(start)):
            raise TestbedError(
                f"a Discrete space needs 1..{MAX_SPACE_SIZE} actions and an integer start, got {dict(data)}"
            )
        return gym.spaces.Discrete(n, start=start)
    if kind == "Box":
        shape, dtype = data.get("shape"), data.get("dtype")
        if not (isinstance(shape, list) and all(is_int(d) and d >= 1 for d in shape)):
            raise TestbedError(f"a Box space needs a shape of positive integers, got {shape!r}")
        if int(np.prod(shape, dtype=np.float64)) > MAX_SPACE_SIZE:
            raise TestbedError(f"a Box space of shape {shape} is larger than {MAX_SPACE_SIZE} elements")
        if dtype not in _DTYPES:
            raise TestbedError(f"a Box space needs a dtype among {', '.join(_DTYPES)}, got {dtype!r}")
        try:
            low = np.broadcast_to(np.asarray(data["low"], dtype=np.float64), shape)
            high = np.broadcast_to(np.asarray(data["high"], dtype=np.float64), shape)
            return gym.spaces.Box(low=low.astype(dtype), high=high.astype(dtype), shape=tuple(shape), dtype=dtype)
        except (KeyError, TypeError, ValueError, AssertionError) as e:
            raise TestbedError(f"a Box space record has unusable bounds ({type(e).__name__}: {e})") from None
    raise TestbedError(f"unsupported space description {dict(data)}")


def is_int(value: Any) -> bool:
    """An integer, and not a bool (JSON's ``true`` is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


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
