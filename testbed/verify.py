"""Re-simulate demonstrations from their seeds and actions, and check data and labels match.

Every episode of a demonstration directory (human or expert) is a pure function of the
scenario config, its seed and the actions applied. The replay applies each step's
``applied_action`` info (``acts`` where a record has none) and must give the recorded
observations, rewards and end of episode bit for bit. That alone says nothing about the
labels (``acts``, what a clone is trained on): an edited label replays as well as a faithful
one. So each label is checked too, against what the kind of data says it is:

- **clean expert data** (``noise`` None) and **human data** (``driving`` recorded, expert
  ``human``): the label *is* the applied action, at every step (Box actions compared
  exactly, as stored, with the float32 applied action);
- **noisy (DART-style) data** (``noise`` recorded): the applied action is the perturbed one
  and the label is the expert's clean action. The recorded expert (``expert.name``, built
  with :func:`testbed.experts.make_expert`, whose parameters must equal the recorded
  ``expert.params``) is re-queried in every replayed state, called exactly as
  :func:`testbed.rollout.run_episode` calls its driver (``reset(env, seed)`` after each
  ``env.reset``, ``act(obs, env)`` before each step), and the label must equal its answer.
  Experts are deterministic functions of the simulator state, so the answer is the label.
- **DAgger aggregates** (:func:`testbed.dagger.as_demonstrations`, marked by their ``note``)
  cannot be verified: their record keeps one seed per round, not per episode, later episodes
  of a round start from the env generator the earlier ones left, imitation stores a round's
  episodes in random order, and the mixture's applied actions are not recorded. They are
  refused with a :class:`testbed.errors.TestbedError` saying so, never passed.

A mismatch means the data were edited, the labels are not what the record says they are, or
the simulator (or the expert) differs from the recording one.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, cast

import gymnasium as gym
import numpy as np
from imitation.data.types import TrajectoryWithRew

from testbed.demos import DAGGER_NOTE, METADATA, DemoMetadata, load_demos
from testbed.errors import TestbedError
from testbed.experts import make_expert
from testbed.outputs import read_json
from testbed.policies import Agent, check_expert_fits
from testbed.rollout import _ActionCodec
from testbed.scenarios import Scenario, make_env


@dataclasses.dataclass(frozen=True)
class EpisodeCheck:
    """The verdict on one replayed episode."""

    index: int
    """Position of the episode in the dataset."""
    seed: int
    """Seed it was replayed with."""
    n_steps: int
    """Recorded actions."""
    problem: str | None = None
    """The first mismatch, e.g. ``"step 12: observation differs (max |diff| 0.0123)"`` or
    ``"step 7: label 3 differs from the applied action 1"``; ``None`` if the replay matched
    exactly and every label is what the record says it is."""

    @property
    def ok(self) -> bool:
        """Replay and labels matched exactly."""
        return self.problem is None

    def line(self) -> str:
        """One printable line."""
        head = f"episode {self.index} (seed {self.seed}, {self.n_steps} steps): "
        return head + ("OK" if self.ok else f"MISMATCH at {self.problem}")


@dataclasses.dataclass(frozen=True)
class Labeller:
    """The expert whose clean actions are the labels of noisy data, re-queried in the replay."""

    agent: Agent
    """The rebuilt expert (``reset(env, seed)``, ``act(obs, env)``)."""
    name: str
    """Its spec in messages, e.g. ``"expert:scripted"``."""


def _applied(trajectory: TrajectoryWithRew, t: int, space: gym.Space) -> Any:
    info = trajectory.infos[t] if trajectory.infos is not None else None
    raw = info["applied_action"] if isinstance(info, dict) and "applied_action" in info else trajectory.acts[t]
    if isinstance(space, gym.spaces.Discrete):
        return int(np.asarray(raw).item())
    return np.asarray(raw, dtype=space.dtype).reshape(space.shape)


def _same_action(label: Any, reference: Any) -> bool:
    """``label`` (as stored) equals ``reference`` (an int, or an array of the space's dtype)
    exactly: no rounding of the label, so an edit below float32 resolution still shows."""
    stored = np.asarray(label)
    if isinstance(reference, int):
        return stored.size == 1 and stored.item() == reference
    return bool(np.array_equal(stored, np.asarray(reference)))


def _show(action: Any) -> str:
    """An action in a message: an integer, or the shortest digits that identify each
    component (as float32 when that is exact: datasets read float32 actions back as float64)."""
    value = np.asarray(action)
    if value.ndim == 0 and np.issubdtype(value.dtype, np.integer):
        return str(int(value))
    if value.dtype == np.float64 and np.array_equal(value.astype(np.float32), value):
        value = value.astype(np.float32)
    return "[" + ", ".join(np.format_float_positional(x, unique=True, trim="-") for x in value.ravel()) + "]"


def _diff(recorded: np.ndarray, replayed: np.ndarray) -> str | None:
    # Datasets hold float32 values (read back as float64, exactly); compare in float32.
    a = np.asarray(recorded, dtype=np.float32)
    b = np.asarray(replayed, dtype=np.float32)
    if a.shape != b.shape:
        return f"shape {a.shape} recorded vs {b.shape} replayed"
    if np.array_equal(a, b, equal_nan=True):
        return None
    return f"max |diff| {float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))):.3g}"


def replay_episode(
    env: gym.Env,
    trajectory: TrajectoryWithRew,
    seed: int,
    *,
    index: int = 0,
    labeller: Labeller | None = None,
) -> EpisodeCheck:
    """Reset ``env`` with ``seed``, apply the recorded actions and compare every step.

    Checks the first observation; then at each step the label (before the action is
    applied), and after the action the observation and reward; that the episode does not end
    before the last recorded action, and that it ends (terminated) exactly when the recording
    says so.

    Args:
        env: an env made by :func:`testbed.scenarios.make_env` for the recorded scenario.
        trajectory: the recorded episode.
        seed: its seed.
        index: its position in the dataset (for the verdict).
        labeller: ``None``: each label must equal the applied action (clean expert data,
            human data). Otherwise the expert whose clean action each label must be, asked
            in the replayed state exactly as :func:`testbed.rollout.run_episode` asks its
            driver (noisy data).
    """
    n = len(trajectory.acts)

    def fail(problem: str) -> EpisodeCheck:
        return EpisodeCheck(index=index, seed=int(seed), n_steps=n, problem=problem)

    obs, _ = env.reset(seed=int(seed))
    base = env.unwrapped
    if labeller is not None:
        labeller.agent.reset(base, int(seed))
    codec = _ActionCodec(env.action_space, 0.0, np.random.default_rng(0))  # its clean(): how labels are recorded
    recorded = cast(np.ndarray, trajectory.obs)  # array observations (the testbed records no dict spaces)
    if (d := _diff(recorded[0], obs)) is not None:
        return fail(f"reset: observation differs ({d})")
    rews = trajectory.rews if isinstance(trajectory, TrajectoryWithRew) else None
    infos = trajectory.infos
    for t in range(n):
        label = trajectory.acts[t]
        applied = _applied(trajectory, t, env.action_space)
        if labeller is None:
            if not _same_action(label, applied):
                return fail(f"step {t}: label {_show(label)} differs from the applied action {_show(applied)}")
        else:
            if infos is None or not isinstance(infos[t], dict) or "applied_action" not in infos[t]:
                return fail(f"step {t}: no applied_action info (noisy data must record the applied action)")
            expected = codec.clean(labeller.agent.act(obs, base))
            if not _same_action(label, expected):
                return fail(
                    f"step {t}: label {_show(label)} differs from what {labeller.name} does in the replayed "
                    f"state ({_show(expected)})"
                )
        obs, reward, terminated, truncated, _ = env.step(applied)
        if (d := _diff(recorded[t + 1], obs)) is not None:
            return fail(f"step {t}: observation differs ({d})")
        if rews is not None and np.float32(rews[t]) != np.float32(reward):
            return fail(f"step {t}: reward {float(rews[t])!r} recorded vs {float(np.float32(reward))!r} replayed")
        if (terminated or truncated) and t < n - 1:
            return fail(f"step {t}: the replay ended, but {n} actions were recorded")
        if t == n - 1 and bool(terminated) != bool(trajectory.terminal):
            return fail(f"step {t}: terminal {bool(trajectory.terminal)} recorded vs {bool(terminated)} replayed")
    return EpisodeCheck(index=index, seed=int(seed), n_steps=n)


def _refuse_dagger_aggregate(root: pathlib.Path) -> None:
    """Raise if ``root`` holds a DAgger aggregate (whatever else is wrong with it is left to
    :func:`testbed.demos.load_demos`)."""
    if not (root / METADATA).is_file():
        return
    try:
        note = DemoMetadata.from_dict(read_json(root / METADATA, what="demonstration metadata")).note
    except TestbedError:
        return  # load_demos reports it, with the path
    if note is not None and note.startswith(DAGGER_NOTE):
        raise TestbedError(
            f"{root} is a DAgger aggregate, whose episodes and labels cannot be verified: its record keeps one "
            "seed per round, not per episode, and records neither the order of a round's episodes nor the applied "
            "(mixture) actions"
        )


def recorded_labeller(metadata: DemoMetadata, scenario: Scenario, *, where: str) -> Labeller:
    """Rebuild the expert a noisy dataset's record names, with its recorded parameters.

    Args:
        metadata: the dataset's record (``expert = {"name": ..., "params": {...}}``).
        scenario: the recorded scenario (the expert must drive its action type).
        where: the dataset, for messages.

    Raises:
        TestbedError: no expert named, an unknown or unbuildable one (e.g. a missing SB3
            model file), one that does not fit the scenario, or one whose parameters now
            differ from the recorded ones (an SB3 model file that changed, new defaults).
    """
    name = metadata.expert.get("name")
    prefix = f"cannot re-query the expert that labelled the noisy data at {where}"
    if not isinstance(name, str) or name in ("", "?"):
        raise TestbedError(f"{prefix}: the metadata names no expert")
    recorded = metadata.expert.get("params") or {}
    if name == "scripted" and isinstance(recorded, dict) and recorded and "rules" not in recorded:
        name = "scripted-v1"  # recorded before rule set 2 became ``scripted``: the original rules
    try:
        expert = make_expert(name)
        check_expert_fits(expert, scenario)
        params = json.loads(json.dumps(expert.params()))
    except TestbedError as e:
        raise TestbedError(f"{prefix}: {e}") from None
    if not isinstance(recorded, dict):
        raise TestbedError(f"{prefix}: its recorded params are not a JSON object")
    if params != recorded:
        keys = sorted(k for k in {*params, *recorded} if params.get(k) != recorded.get(k))
        raise TestbedError(
            f"{prefix}: expert {name!r} now has other parameters than recorded (differing: {', '.join(keys)})"
        )
    return Labeller(agent=expert, name=f"expert:{name}")


def _labeller(metadata: DemoMetadata, scenario: Scenario, *, where: str) -> Labeller | None:
    """What the labels must be: ``None`` (the applied actions) for human and clean expert
    data, the recorded expert for noisy data."""
    human = metadata.driving is not None or metadata.expert.get("name") == "human"
    if human or metadata.noise is None:
        return None
    return recorded_labeller(metadata, scenario, where=where)


def verify_demos(path: str | pathlib.Path, *, progress: Any = None) -> list[EpisodeCheck]:
    """Replay every episode of a demonstration directory with the scenario config it records,
    and check every label against what the record says it is (see the module docstring).

    Args:
        path: a directory written by ``testbed collect`` or ``testbed drive``.
        progress: called with each :class:`EpisodeCheck` as it is made.

    Raises:
        TestbedError: the directory is missing or unreadable (see :func:`testbed.demos.load_demos`),
            is a DAgger aggregate (which cannot be verified), or holds noisy data whose
            expert cannot be rebuilt as recorded (see :func:`recorded_labeller`).
    """
    root = pathlib.Path(path)
    _refuse_dagger_aggregate(root)
    demos = load_demos(root)
    scenario = Scenario.from_dict(demos.metadata.scenario)
    labeller = _labeller(demos.metadata, scenario, where=str(root))
    env = make_env(scenario)
    checks = []
    try:
        for i, (trajectory, seed) in enumerate(zip(demos.trajectories, demos.seeds)):
            check = replay_episode(env, trajectory, seed, index=i, labeller=labeller)
            checks.append(check)
            if progress is not None:
                progress(check)
    finally:
        env.close()
    return checks
