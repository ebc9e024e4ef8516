"""Keys to actions: key state, key mappers (discrete and continuous) and event sources."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from testbed.errors import TestbedError

ARROWS = ("left", "right", "up", "down")


@dataclasses.dataclass(frozen=True)
class KeyState:
    """The arrow keys as a key mapper sees them at one decision."""

    held: frozenset[str] = frozenset()
    """Arrows (``left``/``right``/``up``/``down``) held down at the decision instant."""
    tapped: tuple[str, ...] = ()
    """Arrows pressed since the previous decision, oldest first (including released ones)."""

    def active(self, arrow: str) -> bool:
        """Held now, or tapped since the previous decision."""
        return arrow in self.held or arrow in self.tapped


class KeyMapper(Protocol):
    """Turns the key state into the action applied at a decision (a pure function)."""

    def action(self, keys: KeyState, previous: Any) -> Any:
        """Action for this decision, from the keys and the previous decision's action."""

    def neutral(self) -> Any:
        """The action with no key pressed (the ``previous`` of an episode's first decision)."""

    def describe(self, action: Any) -> str:
        """A short label of an action, shown on screen."""

    def bindings(self) -> list[str]:
        """Key binding lines drawn on screen."""

    def params(self) -> dict[str, Any]:
        """Everything that defines the mapping, stored in the dataset metadata."""


@dataclasses.dataclass(frozen=True)
class DiscreteKeyMapper:
    """Arrow keys to highway-env discrete meta-actions."""

    actions: Mapping[str, int]
    """Meta-action name to index, e.g. ``{"LANE_LEFT": 0, "IDLE": 1, ...}`` (the env's
    ``action_type.actions_indexes``); names it lacks map to IDLE."""

    BINDINGS = {"left": "LANE_LEFT", "right": "LANE_RIGHT", "up": "FASTER", "down": "SLOWER"}

    def _index(self, arrow: str) -> int:
        return int(self.actions.get(self.BINDINGS[arrow], self.actions["IDLE"]))

    def action(self, keys: KeyState, previous: Any = None) -> int:
        """The last arrow tapped since the previous decision, else a held arrow, else IDLE."""
        for arrow in reversed(keys.tapped):
            if arrow in self.BINDINGS:
                return self._index(arrow)
        for arrow in ARROWS:
            if arrow in keys.held:
                return self._index(arrow)
        return int(self.actions["IDLE"])

    def neutral(self) -> int:
        return int(self.actions["IDLE"])

    def describe(self, action: Any) -> str:
        names = {int(v): k for k, v in self.actions.items()}
        return names.get(int(action), str(action))

    def bindings(self) -> list[str]:
        return ["Left: lane left   Right: lane right   Up: faster   Down: slower   none: idle"]

    def params(self) -> dict[str, Any]:
        return {
            "type": "discrete",
            "actions": {k: int(v) for k, v in self.actions.items()},
            "bindings": dict(self.BINDINGS),
            "rule": "last arrow tapped since the previous decision, else held arrow (left, right, up, down), else IDLE",
        }


@dataclasses.dataclass(frozen=True)
class ContinuousKeyMapper:
    """Arrow keys to a normalised ``ContinuousAction`` ([acceleration, steering] in [-1, 1])."""

    longitudinal: bool = True
    """The action has an acceleration component (first when both are present)."""
    lateral: bool = True
    """The action has a steering component."""
    policy_frequency_hz: float = 1.0
    """Decisions per simulated second [Hz]; ramps are per second, so per decision they are
    ``rate / policy_frequency_hz``."""
    accel_rate_per_s: float = 2.0
    """Change of the acceleration command per second of holding Up/Down [1/s]."""
    steer_rate_per_s: float = 1.0
    """Change of the steering command per second of holding Left/Right [1/s]."""
    max_steering: float = 0.5
    """Largest steering command magnitude (1 is the env's full steering range)."""

    def __post_init__(self) -> None:
        if not (self.longitudinal or self.lateral):
            raise TestbedError("a continuous action needs an acceleration or a steering component")
        if not (self.policy_frequency_hz > 0 and self.accel_rate_per_s > 0 and self.steer_rate_per_s > 0):
            raise TestbedError("policy frequency and ramp rates must be > 0")
        if not 0 < self.max_steering <= 1:
            raise TestbedError(f"max_steering must be in (0, 1], got {self.max_steering}")

    @property
    def size(self) -> int:
        """Length of the action vector."""
        return int(self.longitudinal) + int(self.lateral)

    @staticmethod
    def _ramp(value: float, up: bool, down: bool, step: float, limit: float) -> float:
        if up and not down:
            return min(limit, value + step)
        if down and not up:
            return max(-limit, value - step)
        return max(0.0, value - step) if value > 0 else min(0.0, value + step)

    def action(self, keys: KeyState, previous: Any = None) -> np.ndarray:
        """The previous command ramped by the keys, as float32 of shape (size,)."""
        prev = self.neutral() if previous is None else np.asarray(previous, dtype=np.float64).reshape(self.size)
        out = []
        i = 0
        if self.longitudinal:
            step = self.accel_rate_per_s / self.policy_frequency_hz
            out.append(self._ramp(float(prev[i]), keys.active("up"), keys.active("down"), step, 1.0))
            i += 1
        if self.lateral:
            step = self.steer_rate_per_s / self.policy_frequency_hz
            out.append(self._ramp(float(prev[i]), keys.active("right"), keys.active("left"), step, self.max_steering))
        return np.asarray(out, dtype=np.float32)

    def neutral(self) -> np.ndarray:
        return np.zeros(self.size, dtype=np.float32)

    def describe(self, action: Any) -> str:
        a = np.asarray(action, dtype=np.float64).reshape(self.size)
        parts = []
        if self.longitudinal:
            parts.append(f"accel {a[0]:+.2f}")
        if self.lateral:
            parts.append(f"steer {a[-1]:+.2f}")
        return "  ".join(parts)

    def bindings(self) -> list[str]:
        lines = []
        if self.longitudinal:
            lines.append("Up/Down (hold): accelerate/brake")
        if self.lateral:
            lines.append("Left/Right (hold): steer")
        return ["   ".join(lines) + "   (commands ramp while held, return to 0 when released)"]

    def params(self) -> dict[str, Any]:
        return {"type": "continuous", **dataclasses.asdict(self)}


def make_mapper(env: Any, **continuous: float) -> KeyMapper:
    """The key mapper for ``env``'s action space (Discrete meta-actions or a continuous Box).

    Args:
        env: an env made by :func:`testbed.scenarios.make_env`.
        **continuous: :class:`ContinuousKeyMapper` rates and limits.

    Raises:
        TestbedError: an action type other than ``DiscreteMetaAction`` or ``ContinuousAction``.
    """
    import gymnasium as gym
    from highway_env.envs.common.action import ContinuousAction, DiscreteMetaAction

    base = env.unwrapped
    action_type = base.action_type
    if isinstance(env.action_space, gym.spaces.Discrete) and isinstance(action_type, DiscreteMetaAction):
        return DiscreteKeyMapper(actions=dict(action_type.actions_indexes))
    if isinstance(env.action_space, gym.spaces.Box) and isinstance(action_type, ContinuousAction):
        return ContinuousKeyMapper(
            longitudinal=bool(action_type.longitudinal),
            lateral=bool(action_type.lateral),
            policy_frequency_hz=float(base.config["policy_frequency"]),
            **continuous,
        )
    raise TestbedError(
        f"human driving supports DiscreteMetaAction and ContinuousAction, not {type(action_type).__name__}"
    )


# ---------------------------------------------------------------------------- events


class EventSource(Protocol):
    """Where key events come from: the pygame queue, or a script in tests."""

    def poll(self) -> list[Any]:
        """Events since the last poll (objects with pygame's ``type`` and, for keys, ``key``)."""


class PygameEvents:
    """The pygame event queue (needs a pygame display, e.g. :class:`PygameWindow`)."""

    def poll(self) -> list[Any]:
        import pygame

        return pygame.event.get()


class ScriptedEvents:
    """Events fed from a script: poll ``i`` returns ``script[i]``, then nothing.

    With pacing off, :func:`drive_episode` polls once per decision (and once per waiting
    loop while paused or asking a question), so ``script[i]`` is what the person did before
    decision ``i``.
    """

    def __init__(self, script: Sequence[Sequence[Any]], *, max_extra_polls: int = 10_000) -> None:
        self.script = [list(s) for s in script]
        self.n_polls = 0
        self.max_extra_polls = max_extra_polls

    def poll(self) -> list[Any]:
        i = self.n_polls
        self.n_polls += 1
        if i >= len(self.script) + self.max_extra_polls:
            raise RuntimeError("event script exhausted (waiting for a key that never comes?)")
        return self.script[i] if i < len(self.script) else []


_KEY_NAMES = {
    "left": "K_LEFT",
    "right": "K_RIGHT",
    "up": "K_UP",
    "down": "K_DOWN",
    "pause": "K_p",
    "quit": "K_ESCAPE",
    "q": "K_q",
    "yes": "K_y",
    "no": "K_n",
}


def key_event(name: str, *, down: bool = True) -> Any:
    """A pygame KEYDOWN (or KEYUP) event for ``left``, ``right``, ``up``, ``down``, ``pause``,
    ``quit`` (Esc), ``q``, ``yes`` (Y) or ``no`` (N)."""
    import pygame

    return pygame.event.Event(pygame.KEYDOWN if down else pygame.KEYUP, key=getattr(pygame, _KEY_NAMES[name]))


def tap(name: str) -> list[Any]:
    """Key down then up: a press shorter than one decision."""
    return [key_event(name), key_event(name, down=False)]


class _Keyboard:
    """Held arrows, arrows tapped since the last decision, and the control keys."""

    def __init__(self) -> None:
        import pygame

        self._pg = pygame
        self._arrows = {pygame.K_LEFT: "left", pygame.K_RIGHT: "right", pygame.K_UP: "up", pygame.K_DOWN: "down"}
        self.held: set[str] = set()
        self.tapped: list[str] = []
        self.toggle_pause = False
        self.quit = False
        self.answer: bool | None = None

    def feed(self, events: Iterable[Any]) -> None:
        pg = self._pg
        for event in events:
            key = getattr(event, "key", None)
            if self.quit:
                # After a quit only the answer to "save partial episode?" matters.
                if event.type == pg.QUIT or (event.type == pg.KEYDOWN and key in (pg.K_n, pg.K_ESCAPE)):
                    self.answer = False
                elif event.type == pg.KEYDOWN and key == pg.K_y:
                    self.answer = True
            elif event.type == pg.QUIT:
                self.quit = True
            elif event.type == pg.KEYDOWN:
                if key in self._arrows:
                    self.held.add(self._arrows[key])
                    self.tapped.append(self._arrows[key])
                elif key == pg.K_p:
                    self.toggle_pause = not self.toggle_pause
                elif key in (pg.K_ESCAPE, pg.K_q):
                    self.quit = True
            elif event.type == pg.KEYUP and key in self._arrows:
                self.held.discard(self._arrows[key])

    def take(self) -> KeyState:
        state = KeyState(held=frozenset(self.held), tapped=tuple(self.tapped))
        self.tapped.clear()
        return state


# ---------------------------------------------------------------------------- display
