"""Expert drivers behind one interface, and a registry to build them by name."""

from __future__ import annotations

from collections.abc import Callable

from testbed.errors import TestbedError
from testbed.experts.base import Expert


def _scripted() -> Expert:
    from testbed.experts.scripted import ScriptedExpert

    return ScriptedExpert()


def _scripted_v1() -> Expert:
    from testbed.experts.scripted import ScriptedExpertV1

    return ScriptedExpertV1()


def _continuous() -> Expert:
    from testbed.experts.continuous import ContinuousExpert

    return ContinuousExpert()


def _planner() -> Expert:
    from testbed.experts.planner import PlannerExpert

    return PlannerExpert()


EXPERTS: dict[str, Callable[[], Expert]] = {
    "scripted": _scripted,
    "scripted-v1": _scripted_v1,
    "planner": _planner,
    "continuous": _continuous,
}
"""Expert name -> factory. Factories import lazily so the registry has no import cost.
``scripted`` (the default teacher) drives with the fixed rules; ``scripted-v1`` is the same driver
with the original rules (:class:`~testbed.experts.scripted.ScriptedParams` ``rules=1``)."""


def expert_names() -> list[str]:
    """Names accepted by :func:`make_expert`."""
    return sorted(EXPERTS)


SB3_PREFIX = "sb3:"
"""``sb3:PATH`` names a stable-baselines3 model file served by :class:`testbed.experts.sb3.SB3Expert`."""


def make_expert(name: str) -> Expert:
    """Build the expert registered under ``name``, or serve the SB3 model file ``sb3:PATH``.

    Raises:
        TestbedError: unknown name; missing, corrupt or unsupported SB3 model file.
    """
    if name.startswith(SB3_PREFIX):
        from testbed.experts.sb3 import SB3Expert

        return SB3Expert(name[len(SB3_PREFIX) :])
    try:
        factory = EXPERTS[name]
    except KeyError:
        raise TestbedError(
            f"unknown expert {name!r}; choose from: {', '.join(expert_names())} or sb3:MODEL_ZIP"
        ) from None
    return factory()


__all__ = ["Expert", "EXPERTS", "SB3_PREFIX", "expert_names", "make_expert"]
