"""A person drives with the arrow keys; every step is recorded with its exact label.

highway-env's own manual control (``manual_control`` config, ``EventHandler``) applies key
presses straight to the vehicle, so the action given to ``step()`` is not what the person did.
Here key events are read by us, turned into an action by a key mapper, and that action is
passed to ``env.step()``: the recorded label *is* the applied action at every step. The
highway-env viewer is made offscreen (``offscreen_rendering``) so it never reads the event
queue itself; its frames are shown in our own window.

Key bindings (driver's point of view; the ego drives to the right of the screen, so "left"
is up on the screen):

- Discrete meta-actions: Left = LANE_LEFT, Right = LANE_RIGHT, Up = FASTER, Down = SLOWER,
  no arrow = IDLE. At each decision the most recent arrow pressed since the previous decision
  wins (so a quick tap between decisions is not lost), else a held arrow (Left, Right, Up,
  Down in that priority), else IDLE.
- Continuous (``ContinuousAction``, normalised to [-1, 1]): held Up/Down ramp the
  acceleration command up/down at ``accel_rate_per_s``; held Left/Right ramp steering at
  ``steer_rate_per_s`` up to ``max_steering``; with neither key of a pair held the command
  returns towards 0 at the same rate. An arrow tapped between two decisions counts as held
  at the next one.
- P pauses and resumes; Esc, Q or closing the window quits. An episode quit midway is then
  offered in the window: "save partial episode? Y/N" (Y keeps it, N or Esc drops it); the
  session ends after a quit.
"""

from __future__ import annotations

import dataclasses
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from imitation.data.types import TrajectoryWithRew

from testbed.demos import human_demonstrations
from testbed.errors import TestbedError
from testbed.rollout import EgoTracker
from testbed.scenarios import make_env

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


class Display(Protocol):
    """Shows a frame with text lines under it."""

    def show(self, frame: np.ndarray | None, lines: Sequence[str]) -> None:
        """Draw ``frame`` (H, W, 3 uint8, or None to keep the last) and ``lines``."""

    def close(self) -> None:
        """Close the window."""


class PygameWindow:
    """A pygame window: the highway-env frame, with the key bindings and status below it."""

    PANEL_LINES = 5
    LINE_HEIGHT = 20

    def __init__(self, width: int, height: int, *, caption: str = "testbed drive") -> None:
        import pygame

        pygame.init()
        pygame.display.set_caption(caption)
        self._pg = pygame
        self.size = (int(width), int(height))
        panel = self.PANEL_LINES * self.LINE_HEIGHT + 10
        self.screen = pygame.display.set_mode((self.size[0], self.size[1] + panel))
        self.font = pygame.font.Font(None, 22)
        self._frame: Any = None

    def show(self, frame: np.ndarray | None, lines: Sequence[str]) -> None:
        pg = self._pg
        if frame is not None:
            self._frame = pg.surfarray.make_surface(np.ascontiguousarray(np.swapaxes(frame, 0, 1)))
        self.screen.fill((20, 20, 20))
        if self._frame is not None:
            self.screen.blit(self._frame, (0, 0))
        for i, line in enumerate(list(lines)[: self.PANEL_LINES]):
            text = self.font.render(line, True, (230, 230, 230))
            self.screen.blit(text, (8, self.size[1] + 6 + i * self.LINE_HEIGHT))
        pg.display.flip()

    def close(self) -> None:
        self._pg.display.quit()


class _FrameGrabber:
    """Collects the intermediate frames highway-env renders while one action is applied.

    highway-env's ``_automatic_rendering`` hands each intermediate simulation frame to a
    RecordVideo wrapper when one is set (``_record_video_wrapper.video_recorder.capture_frame``);
    we set a stand-in that renders the frame and keeps it. Rendering only reads the scene.
    """

    def __init__(self, base: Any) -> None:
        self.base = base
        self.frames: list[np.ndarray] = []
        base._record_video_wrapper = types.SimpleNamespace(
            video_recorder=types.SimpleNamespace(capture_frame=self._capture)
        )

    def _capture(self) -> None:
        self.frames.append(self.base.render())

    def take(self) -> list[np.ndarray]:
        frames, self.frames = self.frames, []
        return frames


# ---------------------------------------------------------------------------- driving


@dataclasses.dataclass(frozen=True)
class DrivenEpisode:
    """One episode driven by a person."""

    seed: int
    """Seed the env was reset with."""
    trajectory: TrajectoryWithRew | None
    """Observations, applied actions (the labels), rewards and per-step infos (as
    :class:`testbed.rollout.EpisodeRecord` documents them); ``None`` if quit before the
    first decision."""
    end: str
    """``terminated`` (crash or goal), ``truncated`` (time limit) or ``quit``."""
    keep: bool
    """Whether the episode belongs in the dataset: always for a finished episode; for a
    quit one, the person's answer to "save partial episode?"."""

    @property
    def quit(self) -> bool:
        """The person quit (the session ends)."""
        return self.end == "quit"


def drive_episode(
    env: Any,
    seed: int,
    events: EventSource,
    *,
    mapper: KeyMapper | None = None,
    display: Display | None = None,
    realtime: bool = True,
    start_paused: bool = False,
    title: str = "",
) -> DrivenEpisode:
    """Let a person drive one episode; the action passed to ``env.step`` is the label.

    Each decision interval (``1 / policy_frequency`` seconds of wall time when ``realtime``)
    plays the frames of the previous step and reads key events; at its end the key state is
    mapped to an action, which is applied with ``env.step`` and recorded.

    Args:
        env: an env made by :func:`testbed.scenarios.make_env`; with a ``display`` it needs
            ``render_mode="rgb_array"`` and ``offscreen_rendering`` (see :func:`make_drive_env`).
        seed: episode seed.
        events: key event source (:class:`PygameEvents`, or :class:`ScriptedEvents` in tests).
        mapper: key mapper (default: :func:`make_mapper` for the env).
        display: where frames and the key bindings are shown; ``None`` shows nothing.
        realtime: pace decisions at the env's policy frequency; ``False`` polls the event
            source once per decision, with no waiting (tests, scripted drivers).
        start_paused: wait for P before the first decision.
        title: first status line (e.g. episode and seed).
    """
    base = env.unwrapped
    mapper = mapper or make_mapper(env)
    keyboard = _Keyboard()
    obs, _ = env.reset(seed=seed)
    grabber = _FrameGrabber(base) if display is not None else None
    frames: list[np.ndarray] = [base.render()] if display is not None else []
    period = 1.0 / float(base.config["policy_frequency"])
    paused = start_paused
    previous = mapper.neutral()
    observations, actions, rewards, infos = [obs], [], [], []
    # The same per-step infos as testbed.rollout.run_episode, so metrics work on human data.
    tracker = EgoTracker(base, offroad_is_crash=np.ndim(mapper.neutral()) > 0)

    def status(extra: str = "") -> list[str]:
        head = f"{title}  step {len(actions)}  t={float(base.time):.1f} s  speed {float(base.vehicle.speed):.1f} m/s"
        last = f"last action: {mapper.describe(actions[-1])}" if actions else "last action: -"
        state = "PAUSED - press P to drive" if paused else "driving"
        return [head, *mapper.bindings(), "P: pause/resume   Esc/Q: quit", f"{last}   [{state}] {extra}"]

    def poll() -> None:
        nonlocal paused
        keyboard.feed(events.poll())
        if keyboard.toggle_pause:
            keyboard.toggle_pause = False
            paused = not paused

    terminated = truncated = False
    while not (terminated or truncated):
        # One decision interval: play the previous step's frames while reading keys.
        start = time.monotonic()
        shown = 0
        while True:
            poll()
            if keyboard.quit:
                break
            if paused:
                if display is not None:
                    display.show(frames[-1] if frames else None, status())
                if realtime:
                    time.sleep(1 / 30)
                start, shown = time.monotonic(), len(frames)  # a fresh interval after resuming
                continue
            elapsed = time.monotonic() - start
            due = len(frames) if not realtime else min(len(frames), int(elapsed / period * len(frames)) + 1)
            if display is not None and shown < due:
                display.show(frames[due - 1], status())
                shown = due
            if not realtime or elapsed >= period:
                break
            time.sleep(min(1 / 60, max(0.0, period - elapsed)))
        if keyboard.quit:
            break
        action = mapper.action(keyboard.take(), previous)
        applied = int(action) if np.ndim(action) == 0 else [float(a) for a in np.asarray(action).ravel()]
        obs, reward, terminated, truncated, _ = env.step(action)
        info = tracker.step(applied, terminated)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        infos.append(info)
        previous = action
        if display is not None:
            frames = [*grabber.take(), base.render()]

    end = "terminated" if terminated else "truncated" if truncated else "quit"
    if display is not None and end != "quit":
        # Let the person see how the episode ended (the crash, or the last second).
        outcome = "CRASHED" if base.vehicle.crashed else "episode over"
        for frame in frames:
            display.show(frame, status(f"- {outcome}"))
            if realtime:
                time.sleep(period / len(frames))
        if realtime:
            time.sleep(1.0)
    trajectory = None
    if actions:
        acts = (
            np.asarray(actions, dtype=np.int64) if np.ndim(actions[0]) == 0 else np.asarray(actions, dtype=np.float32)
        )
        trajectory = TrajectoryWithRew(
            obs=np.asarray(observations, dtype=np.float32),
            acts=acts,
            infos=np.asarray(infos, dtype=object),
            terminal=bool(terminated),
            rews=np.asarray(rewards, dtype=np.float32),
        )
    keep = end != "quit"
    if end == "quit" and trajectory is not None:
        keep = _ask_keep(events, keyboard, display, len(actions), realtime=realtime)
    if grabber is not None:
        base._record_video_wrapper = None
    return DrivenEpisode(seed=int(seed), trajectory=trajectory, end=end, keep=keep)


def _ask_keep(
    events: EventSource, keyboard: _Keyboard, display: Display | None, n_steps: int, *, realtime: bool
) -> bool:
    """Ask "save partial episode? Y/N" until Y or N (Esc counts as N)."""
    while keyboard.answer is None:
        if display is not None:
            display.show(None, ["", f"Save the partial episode ({n_steps} steps)?", "Y: keep it   N / Esc: drop it"])
        keyboard.feed(events.poll())
        if realtime and keyboard.answer is None:
            time.sleep(1 / 30)
    return bool(keyboard.answer)


def make_drive_env(scenario: Any, *, render: bool = True) -> Any:
    """The scenario's env for human driving: ``rgb_array`` frames from an offscreen viewer.

    ``offscreen_rendering`` keeps highway-env's viewer from reading the pygame event queue
    (its ``EventHandler`` would apply key presses to the vehicle behind our back); it changes
    nothing in the simulation, and the dataset records the scenario's own config.
    """

    if not render:
        return make_env(scenario)
    config = {**dict(scenario.config), "offscreen_rendering": True}
    return make_env(dataclasses.replace(scenario, config=config), render_mode="rgb_array")


def drive(
    scenario: Any,
    *,
    seeds: Sequence[int],
    events: EventSource,
    display: Display | None = None,
    realtime: bool = True,
    start_paused: bool = False,
    mapper_params: Mapping[str, float] | None = None,
    progress: Any = None,
) -> tuple[Any, list[DrivenEpisode]]:
    """Drive one episode per seed until done or quit; the kept ones as demonstrations.

    Args:
        scenario: where to drive.
        seeds: episode seeds, in order.
        events: key event source.
        display: window (``None`` for none; frames are then not rendered at all).
        realtime: pace at the policy frequency (see :func:`drive_episode`).
        start_paused: each episode waits for P before its first decision.
        mapper_params: :class:`ContinuousKeyMapper` rates and limits.
        progress: called with each :class:`DrivenEpisode` as it ends (e.g. to print a line).

    Returns:
        The :class:`testbed.demos.Demonstrations` of the kept episodes (``None`` if none was
        kept) and every driven episode.
    """

    env = make_drive_env(scenario, render=display is not None)
    episodes: list[DrivenEpisode] = []
    try:
        mapper = make_mapper(env, **dict(mapper_params or {}))
        for i, seed in enumerate(seeds):
            episode = drive_episode(
                env,
                int(seed),
                events,
                mapper=mapper,
                display=display,
                realtime=realtime,
                start_paused=start_paused,
                title=f"episode {i + 1}/{len(seeds)} (seed {seed})",
            )
            episodes.append(episode)
            if progress is not None:
                progress(episode)
            if episode.quit:
                break
    finally:
        env.close()
    kept = [e for e in episodes if e.keep and e.trajectory is not None]
    if not kept:
        return None, episodes
    driving = {
        "realtime": bool(realtime),
        "episodes": [
            {
                "seed": e.seed,
                "n_steps": 0 if e.trajectory is None else len(e.trajectory.acts),
                "end": e.end,
                "kept": bool(e.keep and e.trajectory is not None),
            }
            for e in episodes
        ],
    }
    demos = human_demonstrations(
        scenario, [e.trajectory for e in kept], [e.seed for e in kept], mapper=mapper.params(), driving=driving
    )
    return demos, episodes
