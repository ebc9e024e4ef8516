"""Expert drivers behind one interface, and a registry to build them by name."""

from __future__ import annotations

from typing import Callable

from testbed.errors import TestbedError
from testbed.experts.base import Expert


def _scripted() -> Expert:
    from testbed.experts.scripted import ScriptedExpert

    return ScriptedExpert()


def _planner() -> Expert:
    from testbed.experts.planner import PlannerExpert

    return PlannerExpert()


EXPERTS: dict[str, Callable[[], Expert]] = {"scripted": _scripted, "planner": _planner}
"""Expert name -> factory. Factories import lazily so the registry has no import cost."""


def expert_names() -> list[str]:
    """Names accepted by :func:`make_expert`."""
    return sorted(EXPERTS)


def make_expert(name: str) -> Expert:
    """Build the expert registered under ``name``.

    Raises:
        TestbedError: unknown name.
    """
    try:
        factory = EXPERTS[name]
    except KeyError:
        raise TestbedError(f"unknown expert {name!r}; choose from: {', '.join(expert_names())}") from None
    return factory()


__all__ = ["Expert", "EXPERTS", "expert_names", "make_expert"]
