"""The drive loop: one episode at the keyboard, and a session of episodes as demonstrations."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from imitation.data.types import TrajectoryWithRew

from testbed.demos import human_demonstrations
from testbed.human.keys import EventSource, KeyMapper, _Keyboard, make_mapper
from testbed.human.window import Display, _FrameGrabber
from testbed.rollout import EgoTracker
from testbed.scenarios import make_env


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
    observations: list[Any] = [obs]
    actions: list[Any] = []
    rewards: list[float] = []
    infos: list[dict[str, Any]] = []
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
        if grabber is not None:
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
        scenario,
        [e.trajectory for e in kept if e.trajectory is not None],
        [e.seed for e in kept],
        mapper=mapper.params(),
        driving=driving,
    )
    return demos, episodes
