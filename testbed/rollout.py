"""Run any policy on seeded episodes, in parallel worker processes.

Every episode is a pure function of (scenario, policy spec, seed): the env is reset with the
episode's seed and any randomness of the policy is seeded from it too. Seeds are handed out
per episode, not per worker, so results are identical whatever the number of workers.

Workers are forked from a ``forkserver`` that has imported torch, gymnasium, highway-env and
this package once (``fork`` of a parent that has started torch's threads is unsafe; a
``spawn``-ed worker pays those imports, seconds, each time). The server starts at the first
pool of a process and serves every later one. Under spawn/forkserver a child does not
inherit the parent's ``import highway_env``,
so ``gym.make("highway-fast-v0")`` fails there (HighwayEnv issue #648, fixed upstream only in
releases that need gymnasium 1.x); ``testbed.scenarios.make_env`` builds the env from its
class inside each worker instead.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from imitation.data.types import TrajectoryWithRew

from testbed.errors import TestbedError
from testbed.outputs import atomic_output_file
from testbed.policies import Agent, PolicyError, PolicySpec, build_agent
from testbed.progress import Bar, track
from testbed.runtime import (
    broken_pool_error,
    environment_variable,
    init_worker,
    stop_pool,
    torch_threads,
    worker_context,
)
from testbed.scenarios import Scenario, make_env

_V = TypeVar("_V")


@dataclasses.dataclass(frozen=True)
class EpisodeRecord:
    """One episode of one policy."""

    policy: str
    """Label of the policy that drove (its spec string)."""
    seed: int
    """Seed the env (and the policy's own randomness) was reset with."""
    trajectory: TrajectoryWithRew
    """Observations (T+1, ...), actions (T,) — (T, act_dim) floats for a Box action space —,
    rewards (T,) and per-step infos (T,):
    ``speed`` [m/s], ``crashed``, ``x``/``y`` ego position [m], ``heading`` [rad], ``lane``
    (lane id, larger is further right), ``rightmost``, ``on_road``, ``lane_change`` (the
    lane id changed on the same road segment during the step), ``distance_m`` (path length
    driven during the step [m]), ``t`` (time after the step [s]) and ``applied_action`` (the
    action applied, which differs from ``acts`` only under injected noise); scenarios with
    per-step costs add ``collision`` and ``near_miss``, and with stationary traffic
    ``nearby_vehicles`` (vehicles in the window around the ego after the step,
    :mod:`testbed.recovery`); episodes run with a :class:`Scoring` add ``value_gap``. In a
    continuous-action scenario ``crashed`` is also true when the episode ended because the
    ego left the road (``offroad_terminal``), ``collided`` is the collision flag alone, and
    ``applied_action`` is a list of floats."""
    labels: np.ndarray | None = None
    """The labeller's action at each visited state (T,) or (T, act_dim), when a labeller was given."""
    executed: np.ndarray | None = None
    """Actions actually applied (T,) or (T, act_dim) when action noise was injected; ``trajectory.acts``
    then holds the driver's clean actions (the labels a DART-style dataset keeps)."""

    @property
    def infos(self) -> np.ndarray:
        """The per-step infos (T,) of :attr:`trajectory` (the harness always records them)."""
        infos = self.trajectory.infos
        assert infos is not None
        return infos


def _lane_state(vehicle: Any, env: Any) -> tuple[tuple[Any, Any], int, bool]:
    road_id = (vehicle.lane_index[0], vehicle.lane_index[1])
    lane = int(vehicle.lane_index[2])
    n_side = len(env.road.network.all_side_lanes(vehicle.lane_index))
    return road_id, lane, lane == n_side - 1


@dataclasses.dataclass(frozen=True)
class Scoring:
    """A cost-weighted error: at every ``every``-th visited state (0, every, 2 every, ...) a
    scorer (an expert with ``action_values(env) -> {action index: value}``, such as the
    planner: :meth:`testbed.experts.planner.PlannerExpert.action_values`) values every
    available action before the driver's is applied, and the step's info records
    ``value_gap`` = the best value minus the value of the action applied (0 when it is a best
    one; an unavailable action does what IDLE does and is valued as IDLE). Unscored steps
    record NaN."""

    scorer: PolicySpec
    """The valuing expert."""
    every: int = 1
    """Score every this many steps (the scorer's search costs milliseconds per state)."""


_COST_INFOS = ("collision", "near_miss", "nearby_vehicles")
"""Per-step env infos of :mod:`testbed.recovery` kept in the records when the scenario gives them."""


class EgoTracker:
    """Builds the per-step infos of :class:`EpisodeRecord` from the ego vehicle, one call per
    ``env.step`` (lane changes and distance need the previous step's state)."""

    def __init__(self, base: Any, *, offroad_is_crash: bool = False) -> None:
        """Args:
        base: the unwrapped env, just reset.
        offroad_is_crash: count an episode ended by leaving the road (``offroad_terminal``,
            continuous control) as a crash, and keep the simulator's own collision flag in
            ``collided``.
        """
        self.base = base
        self.offroad_is_crash = offroad_is_crash
        self.position = np.array(base.vehicle.position, dtype=float)
        self.road_id, self.lane, _ = _lane_state(base.vehicle, base)

    def step(self, applied: Any, terminated: bool, env_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Infos after a step that applied ``applied`` (stored as given); ``env_info`` is the
        env's own step info, whose per-step costs (``collision``, ``near_miss``: scenarios with
        :data:`testbed.recovery.COST_KEYS`) and, with stationary traffic, ``nearby_vehicles``
        are kept (a scenario without them records neither). Where collisions are recoverable
        the ego is no longer crashed after the step, so ``crashed`` is that step's
        ``collision``."""
        vehicle = self.base.vehicle
        new_position = np.array(vehicle.position, dtype=float)
        new_road, new_lane, rightmost = _lane_state(vehicle, self.base)
        costs = {k: int(env_info[k]) for k in _COST_INFOS if env_info and k in env_info}
        crashed = bool(vehicle.crashed or costs.get("collision", 0))
        info: dict[str, Any] = {"speed": float(vehicle.speed), "crashed": crashed, **costs}
        if self.offroad_is_crash:
            info["crashed"] = bool(vehicle.crashed or (terminated and not vehicle.on_road))
            info["collided"] = bool(vehicle.crashed)
        info.update(
            {
                "x": float(new_position[0]),
                "y": float(new_position[1]),
                "heading": float(vehicle.heading),
                "lane": new_lane,
                "rightmost": bool(rightmost),
                "on_road": bool(vehicle.on_road),
                "lane_change": bool(new_road == self.road_id and new_lane != self.lane),
                "distance_m": float(np.linalg.norm(new_position - self.position)),
                "t": float(self.base.time),
                "applied_action": applied,
            }
        )
        self.position, self.road_id, self.lane = new_position, new_road, new_lane
        return info


class _ActionCodec:
    """How one episode's actions are read from the agent, perturbed by injected noise and
    recorded: integers for a Discrete space, float32 arrays of the Box's shape for a Box."""

    def __init__(self, space: Any, noise: float, rng: np.random.Generator) -> None:
        import gymnasium as gym

        self.noise, self.rng = noise, rng
        self.box = isinstance(space, gym.spaces.Box)
        if self.box:
            self.shape: tuple[int, ...] = tuple(space.shape)
            self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
            self.noise_std = noise * (self.high - self.low)
            self.dtype: Any = np.float32
        else:
            self.n_actions = int(space.n)
            self.shape, self.dtype = (), np.int64

    def clean(self, raw: Any) -> Any:
        """The agent's action in the recorded type."""
        return np.asarray(raw, dtype=np.float32).reshape(self.shape) if self.box else int(raw)

    def applied(self, action: Any) -> Any:
        """The action sent to the env: ``action`` itself without noise. Discrete: with
        probability ``noise`` a uniform random action. Box: Gaussian noise on every step, std
        ``noise`` times the range of each component, clipped to the Box."""
        if self.noise <= 0:
            return action
        if self.box:
            return self.clean(np.clip(action + self.rng.normal(0.0, self.noise_std), self.low, self.high))
        if self.rng.random() < self.noise:
            return int(self.rng.integers(self.n_actions))
        return action

    def info(self, applied: Any) -> Any:
        """``applied`` as stored in the step's ``applied_action`` info."""
        return [float(x) for x in applied.ravel()] if self.box else applied


class EpisodeStepper:
    """One episode in progress: the one place that says what an episode does and records.

    :func:`run_episode` steps one to its end; :func:`run_lockstep` steps many side by side,
    asking a batched driver for all their actions at once. Both go through :meth:`label` and
    :meth:`apply` in the same order (labeller, then driver, then ``env.step``), so an episode
    is recorded identically whichever runs it.
    """

    def __init__(
        self,
        env: Any,
        agent: Agent,
        seed: int,
        *,
        policy_label: str,
        labeller: Agent | None = None,
        noise: float = 0.0,
        scorer: Agent | None = None,
        score_every: int = 1,
        kept: Kept | None = None,
    ) -> None:
        """Reset ``env`` with ``seed`` and the agents for the episode (arguments as in
        :func:`run_episode`)."""
        self.env, self.agent, self.seed = env, agent, int(seed)
        self.policy_label, self.labeller, self.noise = policy_label, labeller, noise
        self.scorer, self.score_every = scorer, max(1, int(score_every))
        self._values: dict[int, float] | None = None
        self.obs, _ = env.reset(seed=seed)
        self.base = env.unwrapped
        self.n_steps = 0
        self.terminated = self.truncated = False
        with self._where():
            agent.reset(self.base, seed)
            if labeller is not None:
                labeller.reset(self.base, seed)
            if scorer is not None:
                scorer.reset(self.base, seed)
            self.codec = _ActionCodec(env.action_space, noise, np.random.default_rng([seed, 0xDA27]))
            # Kept decisions and steps are keyed by the discrete actions applied so far (a digest).
            self.kept = None if self.codec.box else kept
            self._path = b""
            if self.kept is not None:
                self._path = hashlib.blake2b(repr((self.kept.scenario_key, self.seed)).encode()).digest()
            self.observations = [self.obs]
            self.actions: list[Any] = []
            self.executed: list[Any] = []
            self.labels: list[Any] = []
            self.rewards: list[float] = []
            self.infos: list[dict[str, Any]] = []
            self.tracker = EgoTracker(self.base, offroad_is_crash=self.codec.box)

    @property
    def done(self) -> bool:
        """Whether the episode has ended (terminated or truncated)."""
        return self.terminated or self.truncated

    @contextlib.contextmanager
    def _where(self) -> Iterator[None]:
        """Say where a user's policy failed: episode seed and step."""
        try:
            yield
        except PolicyError as e:
            raise TestbedError(f"{e} at episode seed {self.seed}, step {self.n_steps}", detail=e.detail) from None

    def step(self) -> None:
        """One decision and ``env.step``, the driver asked here for its action."""
        self.label()
        self.apply(self.decide())

    def decide(self) -> Any:
        """The driver's action at the current state."""
        with self._where():
            return self._ask(self.agent, "act")

    def label(self) -> None:
        """Record the labeller's action at the current state (before the driver's is applied)."""
        if self.labeller is not None:
            with self._where():
                self.labels.append(self.codec.clean(self._ask(self.labeller, "act")))
        if self.scorer is not None:
            scored = self.n_steps % self.score_every == 0
            self._values = self._ask(self.scorer, "action_values") if scored else None

    def _ask(self, agent: Agent, method: str) -> Any:
        """``agent.act(obs, env)`` or ``agent.action_values(env)`` at the current state, read
        from :attr:`kept` when ``agent`` keeps its decisions there and one is stored."""

        def ask() -> Any:
            return agent.act(self.obs, self.base) if method == "act" else getattr(agent, method)(self.base)

        identity = getattr(agent, "decision_identity", None) if self.kept is not None else None
        identity = identity() if identity is not None else None
        if identity is None or self.kept is None:
            return ask()
        key = (self._path, identity, method)
        memo = self.kept.decisions
        start = time.perf_counter()
        value = memo.get(key)
        found = value is not None
        if value is None:
            value = memo[key] = ask()
        LOOKUPS.count("decisions", found, time.perf_counter() - start)
        return value

    def apply(self, raw_action: Any) -> None:
        """Apply the driver's action ``raw_action`` (with any injected noise) and record the step."""
        codec = self.codec
        action = codec.clean(raw_action)
        applied = codec.applied(action)
        self.executed.append(applied)
        kept = self.kept
        if kept is not None:
            self._path = hashlib.blake2b(self._path + repr(applied).encode()).digest()
        gap = self._value_gap(applied) if self.scorer is not None else None
        steps = kept.steps if kept is not None and self.n_steps < StepMemo.first_steps else None
        start = time.perf_counter() if steps is not None else 0.0
        stored = steps.get((self._path,)) if steps is not None else None
        if stored is not None:  # this step was simulated before: continue from its outcome
            self.env, self.obs, reward, self.terminated, self.truncated, step_info = pickle.loads(stored)
            self.base = self.tracker.base = self.env.unwrapped
        else:
            self.obs, reward, self.terminated, self.truncated, step_info = self.env.step(applied)
            if steps is not None:
                steps.keep((self._path,), (self.env, self.obs, reward, self.terminated, self.truncated, step_info))
        if steps is not None:
            LOOKUPS.count("steps", stored is not None, time.perf_counter() - start)
        info = self.tracker.step(codec.info(applied), self.terminated, step_info)
        if gap is not None:
            info["value_gap"] = gap
        self.infos.append(info)
        self.observations.append(self.obs)
        self.actions.append(action)
        self.rewards.append(float(reward))
        self.n_steps += 1

    def _value_gap(self, applied: Any) -> float:
        """:class:`Scoring`'s ``value_gap`` of applying ``applied`` here (NaN if unscored)."""
        values = self._values
        if not values:
            return math.nan
        action = int(applied)
        if action not in values:  # unavailable: it does what IDLE does
            action = int(self.base.action_type.actions_indexes["IDLE"])
        return float(max(values.values()) - values[action])

    def record(self) -> EpisodeRecord:
        """The episode so far (to its end, once :attr:`done`), as an :class:`EpisodeRecord`."""
        codec = self.codec

        def stack(values: list[Any]) -> np.ndarray:
            return np.asarray(values, dtype=codec.dtype).reshape((len(values), *codec.shape))

        trajectory = TrajectoryWithRew(
            # The space's own dtype: float32 for vector sensors, uint8 for camera images (4x smaller).
            obs=np.asarray(self.observations, dtype=self.env.observation_space.dtype),
            acts=stack(self.actions),
            infos=np.asarray(self.infos, dtype=object),
            terminal=bool(self.terminated),
            rews=np.asarray(self.rewards, dtype=np.float32),
        )
        return EpisodeRecord(
            policy=self.policy_label,
            seed=self.seed,
            trajectory=trajectory,
            labels=stack(self.labels) if self.labeller is not None else None,
            executed=stack(self.executed) if self.noise > 0 else None,
        )


def run_episode(
    env: Any,
    agent: Agent,
    seed: int,
    *,
    policy_label: str,
    labeller: Agent | None = None,
    noise: float = 0.0,
    scorer: Agent | None = None,
    score_every: int = 1,
    kept: Kept | None = None,
) -> EpisodeRecord:
    """Run one episode to its end.

    Args:
        env: an env made by :func:`testbed.scenarios.make_env`.
        agent: the driver.
        seed: episode seed.
        policy_label: name stored in the record.
        labeller: optional second agent asked for its action at every visited state (before
            the driver's action is applied): the expert labelling a clone's states gives the
            on-policy error, a clone labelling the expert's states the off-policy error.
        noise: probability of applying a uniformly random action instead of the driver's
            (DART-style noise injection); the record keeps the driver's clean action in
            ``acts`` and the applied ones in ``executed``. The noise generator is seeded by
            the episode seed. For a Box action space every applied action gets Gaussian
            noise instead, with standard deviation ``noise`` times the range
            ``high - low`` of each component, clipped to the Box.
        scorer: optional expert valuing the actions every ``score_every`` steps
            (:class:`Scoring`: the infos' ``value_gap``).
        score_every: see ``scorer``.
        kept: where the decisions of an expert that keeps them
            (:meth:`~testbed.experts.Expert.decision_identity`) and the simulated steps are
            read and stored (:class:`Kept`); None: every decision is asked and every step
            simulated.

    Returns:
        The episode, with infos described in :class:`EpisodeRecord`.
    """
    stepper = EpisodeStepper(
        env,
        agent,
        seed,
        policy_label=policy_label,
        labeller=labeller,
        noise=noise,
        scorer=scorer,
        score_every=score_every,
        kept=kept,
    )
    while not stepper.done:
        stepper.step()
    return stepper.record()


def run_lockstep(
    envs: Sequence[Any],
    agents: Sequence[Agent],
    seeds: Sequence[int],
    *,
    policy_label: str,
    labellers: Sequence[Agent] | None = None,
    noise: float = 0.0,
    act_batch: Callable[[np.ndarray], Sequence[Any]] | None = None,
    scorers: Sequence[Agent] | None = None,
    score_every: int = 1,
    kept: Kept | None = None,
) -> list[EpisodeRecord]:
    """Run one episode per seed, ``len(envs)`` at a time side by side (lanes), with one
    batched call of the driver per step for the current observations of all running episodes.

    When a lane's episode ends, the lane starts the next seed not yet run, so the batch stays
    full. Every episode is an :class:`EpisodeStepper`, as in :func:`run_episode`, and the same
    function of its seed: the records equal :func:`run_episode`'s, provided ``act_batch``
    gives each row the action its lane's agent gives it alone
    (:meth:`testbed.policies.ClonePolicyAgent.act_batch` guarantees that).

    Args:
        envs: envs of one scenario, from :func:`testbed.scenarios.make_env`, one per lane.
        agents: the driver of each lane. Agents keep per-episode state (set by ``reset``), so
            lanes share one only if it keeps none (a clone).
        seeds: one episode per seed; the records come back in this order.
        policy_label: name stored in the records.
        labellers: one labelling agent per lane, or None.
        noise: as in :func:`run_episode`.
        act_batch: the drivers' actions for a stack of observations (N, ...) in one call;
            None: each lane's agent is asked in turn (the same records, nothing batched).
        scorers: one valuing expert per lane (:class:`Scoring`), or None.
        score_every: as in :func:`run_episode`.
        kept: as in :func:`run_episode`.
    """
    if len(agents) != len(envs) or (labellers is not None and len(labellers) != len(envs)):
        raise ValueError("run_lockstep needs one agent (and labeller) per env")
    results: list[EpisodeRecord | None] = [None] * len(seeds)
    queue = list(reversed(list(enumerate(seeds))))  # popped from the end: the seeds in order
    lanes: list[tuple[int, EpisodeStepper] | None] = [None] * len(envs)

    def start(lane: int) -> None:
        if not queue:
            lanes[lane] = None
            return
        index, seed = queue.pop()
        labeller = labellers[lane] if labellers is not None else None
        scorer = scorers[lane] if scorers is not None else None
        stepper = EpisodeStepper(
            envs[lane],
            agents[lane],
            seed,
            policy_label=policy_label,
            labeller=labeller,
            noise=noise,
            scorer=scorer,
            score_every=score_every,
            kept=kept,
        )
        lanes[lane] = (index, stepper)

    for lane in range(len(envs)):
        start(lane)
    while running := [entry[1] for entry in lanes if entry is not None]:
        for stepper in running:
            stepper.label()
        if act_batch is not None:
            actions = list(act_batch(np.stack([stepper.obs for stepper in running])))
        else:
            actions = [stepper.decide() for stepper in running]
        for stepper, action in zip(running, actions):
            stepper.apply(action)
        for lane, entry in enumerate(lanes):
            if entry is not None and entry[1].done:
                results[entry[0]] = entry[1].record()
                start(lane)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


# Per-process caches, so that a worker builds each env and each agent once however many
# episodes and policies it is sent (lockstep lanes: one env, and one labeller, per lane).
_ENVS: dict[tuple[str, int], Any] = {}
_AGENTS: dict[tuple[str, str, int], Agent] = {}

LOCKSTEP_WIDTH = 32
"""Episodes a process steps side by side in lockstep (:func:`run_lockstep`): batching the
clone's forward pays little beyond a few dozen rows, and every lane holds an env."""


def _agent_key(scenario_key: str, spec: PolicySpec, lane: int) -> tuple[str, str, int]:
    label = f"{spec.kind}:{spec.arg}"
    for clone in (d for d in spec.drivers() if d.kind == "clone"):
        # A run directory can be rewritten between calls (--overwrite): key on the file too
        # (of each clone in a handover).
        stat = (pathlib.Path(clone.arg) / "policy.pt").stat()
        label += f"@{stat.st_mtime_ns}:{stat.st_size}"
    return scenario_key, label, lane


def _agent(scenario: Scenario, scenario_key: str, spec: PolicySpec, lane: int = 0) -> Agent:
    key = _agent_key(scenario_key, spec, lane)
    if key not in _AGENTS:
        _AGENTS[key] = build_agent(spec, scenario)
    return _AGENTS[key]


def _env(scenario: Scenario, scenario_key: str, lane: int = 0) -> Any:
    if (scenario_key, lane) not in _ENVS:
        _ENVS[scenario_key, lane] = make_env(scenario)
    return _ENVS[scenario_key, lane]


@dataclasses.dataclass(frozen=True)
class _Task:
    """One episode to run."""

    scenario: Scenario
    spec: PolicySpec
    labeller: PolicySpec | None
    noise: float
    seed: int
    scoring: Scoring | None = None
    kept: str | None = None
    """Where experts' decisions and simulated steps are kept (:func:`_kept_place`); None: nowhere."""


@dataclasses.dataclass(frozen=True)
class _Job:
    """Episodes of one (scenario, driver, labeller, noise) that one process runs: one at a
    time, or side by side in lockstep (:func:`run_lockstep`) with ``width`` lanes."""

    tasks: tuple[_Task, ...]
    width: int = 1


def lockstep_eligible(spec: PolicySpec, labeller: PolicySpec | None) -> bool:
    """Whether episodes of ``spec`` may run in lockstep: any driver and labeller that can be
    built once per lane, i.e. not a user's Python policy (whose factory is meant to run once
    per process)."""
    return spec.kind != "python" and (labeller is None or labeller.kind != "python")


def _run_job(job: _Job) -> list[EpisodeRecord]:
    LOOKUPS.bind(job.tasks[0].kept)
    try:
        return _run_job_tasks(job)
    finally:
        LOOKUPS.flush()


def _run_job_tasks(job: _Job) -> list[EpisodeRecord]:
    first = job.tasks[0]
    if job.width <= 1:
        return [_run_task(t) for t in job.tasks]
    scenario, labeller, scoring = first.scenario, first.labeller, first.scoring
    scenario_key = json.dumps(scenario.to_dict(), sort_keys=True)
    width = min(job.width, len(job.tasks))
    driver = _agent(scenario, scenario_key, first.spec)
    act_batch = None
    if callable(getattr(driver, "act_batch", None)):  # a BatchAgent keeps no state: one for all lanes
        drivers = [driver] * width
        if getattr(driver, "batchable", False):
            act_batch = driver.act_batch  # type: ignore[attr-defined]
    else:
        drivers = [_agent(scenario, scenario_key, first.spec, lane) for lane in range(width)]
    return run_lockstep(
        [_env(scenario, scenario_key, lane) for lane in range(width)],
        drivers,
        [t.seed for t in job.tasks],
        policy_label=first.spec.label,
        labellers=[_agent(scenario, scenario_key, labeller, lane) for lane in range(width)] if labeller else None,
        noise=first.noise,
        act_batch=act_batch,
        scorers=[_agent(scenario, scenario_key, scoring.scorer, lane) for lane in range(width)] if scoring else None,
        score_every=scoring.every if scoring else 1,
        kept=_kept(first, scenario_key),
    )


def _run_task(task: _Task) -> EpisodeRecord:
    scenario_key = json.dumps(task.scenario.to_dict(), sort_keys=True)
    agent = _agent(task.scenario, scenario_key, task.spec)
    labeller = _agent(task.scenario, scenario_key, task.labeller) if task.labeller is not None else None
    scoring = task.scoring
    return run_episode(
        _env(task.scenario, scenario_key),
        agent,
        task.seed,
        policy_label=task.spec.label,
        labeller=labeller,
        noise=task.noise,
        scorer=_agent(task.scenario, scenario_key, scoring.scorer) if scoring else None,
        score_every=scoring.every if scoring else 1,
        kept=_kept(task, scenario_key),
    )


def _clear_cache() -> None:
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()
    _AGENTS.clear()


def _start_workers(executor: concurrent.futures.ProcessPoolExecutor, n: int) -> None:
    """Make ``executor`` start its ``n`` worker processes (each submission of a no-op while none
    is idle starts one; the no-ops' results are not wanted). Runs in a thread of its own,
    because starting a forkserver worker blocks until the server has imported its preload
    (:func:`testbed.runtime.worker_preload`). A failure here (a pool broken or shut down
    meanwhile) is left for the next submission to raise."""
    with contextlib.suppress(Exception):
        for _ in range(n):
            executor.submit(int)


def _check_scoring(scoring: Scoring) -> None:
    """Refuse a scorer that does not value actions, or a nonsense ``every``."""
    from testbed.experts import make_expert

    spec = scoring.scorer
    if spec.kind != "expert" or not callable(getattr(make_expert(spec.arg), "action_values", None)):
        raise TestbedError(f"scoring needs an expert that values actions (expert:planner), got {spec.label!r}")
    if scoring.every < 1:
        raise TestbedError(f"scoring's every must be at least 1, got {scoring.every}")


def _as_spec(labeller: PolicySpec | str | None) -> PolicySpec | None:
    """A labeller given by expert name (``"scripted"``) or as a spec."""
    if labeller is None or isinstance(labeller, PolicySpec):
        return labeller
    return PolicySpec.parse(labeller if ":" in labeller else f"expert:{labeller}")


class FolderMemo(Generic[_V]):
    """A memo of values by key, kept in this process's memory and, given a folder, shared with
    the other processes of one run through it: one pickle per key, written atomically (a
    temporary file renamed into place), so a reader sees a whole value or none. Two processes
    that miss the same key both compute it and write equal values. The folder is an
    optimisation only: a value that cannot be written (full or read-only disk, or a value that
    does not pickle) or read (removed, damaged) is computed instead."""

    memory_limit: ClassVar[int | None] = None
    """Values kept in memory before those are forgotten (the folder keeps them); None: no limit."""

    def __init__(self, folder: str | pathlib.Path | None = None) -> None:
        self.folder = pathlib.Path(folder) if folder is not None else None
        self._here: dict[tuple, _V] = {}

    def _path(self, folder: pathlib.Path, key: tuple) -> pathlib.Path:
        return folder / (hashlib.sha256(repr(key).encode()).hexdigest() + ".pkl")

    def get(self, key: tuple) -> _V | None:
        """The value stored under ``key`` (None: not there or unreadable)."""
        value = self._here.get(key)
        if value is None and self.folder is not None:
            try:
                with self._path(self.folder, key).open("rb") as f:
                    loaded = pickle.load(f)
            except Exception:  # noqa: BLE001 - absent, or not a whole value: compute it
                return None
            if not (isinstance(loaded, tuple) and len(loaded) == 2 and loaded[0] == key):
                return None  # a hash collision or a foreign file
            value = self._keep(key, loaded[1])
        return value

    def __setitem__(self, key: tuple, value: _V) -> None:
        self._keep(key, value)
        if self.folder is None:
            return
        try:
            with atomic_output_file(self._path(self.folder, key)) as tmp, tmp.open("wb") as f:
                pickle.dump((key, value), f, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - a disk fault, or a value that does not pickle
            pass  # not stored (and no file left): computed again where it is needed

    def _keep(self, key: tuple, value: _V) -> _V:
        if self.memory_limit is not None and len(self._here) >= self.memory_limit:
            self._here.clear()
        self._here[key] = value
        return value


class KeptLookups:
    """How often this process found what it looked up among the run's kept episodes, expert
    decisions and simulated steps (read), and how often it had to compute it (computed), with
    the seconds each took (decisions and steps: the lookup and the reading, or the computing
    and the storing; episodes are counted only, since they are computed in other processes).
    In a :func:`share_episodes` run, :meth:`flush` writes the counts to the run's folder, one
    file per process, which :func:`read_kept_lookups` adds up: a rebuild reports what its
    stores saved, measured in the run itself. The counts are an observation only: one that
    cannot be written is missing from the sum."""

    KINDS: ClassVar[tuple[str, ...]] = ("episodes", "decisions", "steps")

    def __init__(self) -> None:
        self._start(None)

    def _start(self, folder: str | None) -> None:
        """Count from zero, for this process and the run in ``folder``, into a new file."""
        self._pid = os.getpid()
        self._folder = folder
        self._rows: dict[str, list[float]] = {}
        self._file: pathlib.Path | None = None
        self._unwritten = False

    def bind(self, place: str | pathlib.Path | None) -> None:
        """Count for the run whose folder is ``place`` from now on (None or :data:`_MEMORY`:
        no shared run; the ``kept`` of a task). Counts for another run are written first, and
        this process then starts a new file."""
        folder = None if place is None or place == _MEMORY else str(place)
        if self._pid != os.getpid():  # a forked child: its parent's counts are not its own
            self._start(folder)
        elif folder != self._folder:
            self.flush()
            self._start(folder)

    def count(self, kind: str, found: bool, seconds: float = 0.0) -> None:
        """One lookup of ``kind``: ``found`` (read) or not (computed), taking ``seconds``."""
        if self._pid != os.getpid():
            self._start(None)
        row = self._rows.setdefault(kind, [0, 0.0, 0, 0.0])
        at = 0 if found else 2
        row[at] += 1
        row[at + 1] += seconds
        self._unwritten = True

    def flush(self) -> None:
        """Write this process's counts into its run's folder, if it is in one and they
        changed; a disk fault leaves the last file written."""
        if not (self._unwritten and self._folder and self._pid == os.getpid()):
            return
        if self._file is None:
            self._file = pathlib.Path(self._folder) / "lookups" / f"{os.getpid()}-{os.urandom(6).hex()}.json"
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output_file(self._file) as tmp:
                tmp.write_text(json.dumps(self._rows))
        except OSError:
            return
        self._unwritten = False


LOOKUPS = KeptLookups()
"""This process's :class:`KeptLookups`."""


def read_kept_lookups(folder: pathlib.Path) -> dict[str, dict[str, float]]:
    """The counts every process of the run in ``folder`` wrote (:meth:`KeptLookups.flush`),
    added up per kind: ``read``/``computed`` lookups and, for decisions and steps, the
    seconds they took (``read_s``/``computed_s``); ``processes``: how many files were read."""
    total = {kind: [0, 0.0, 0, 0.0] for kind in KeptLookups.KINDS}
    files = 0
    for path in sorted((folder / "lookups").glob("*.json")):
        try:
            rows = json.loads(path.read_text())
            added = {kind: [a + float(b) for a, b in zip(total[kind], row, strict=True)] for kind, row in rows.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a whole count file: left out
        total |= added
        files += 1
    out: dict[str, dict[str, float]] = {}
    for kind, (read, read_s, computed, computed_s) in total.items():
        out[kind] = {"read": int(read), "computed": int(computed)}
        if kind != "episodes":
            out[kind] |= {"read_s": round(read_s, 1), "computed_s": round(computed_s, 1)}
    out["processes"] = {"count": files}
    return out


class SharedEpisodes(FolderMemo[EpisodeRecord]):
    """The reused-episode memo (:func:`reuse_episodes`) that the processes of one run share
    through ``folder``; the decisions that experts keep (:class:`DecisionMemo`) and the
    simulated steps (:class:`StepMemo`) go to its ``decisions`` and ``steps`` sub-folders."""

    def __init__(self, folder: str | pathlib.Path) -> None:
        super().__init__(folder)


class DecisionMemo(FolderMemo[Any]):
    """Decisions of a slow expert that keeps them (:meth:`testbed.experts.Expert.decision_identity`),
    by (a BLAKE2b digest of the scenario, the episode seed and every action applied since the
    reset, chained step by step; the expert; the method asked).

    The simulator is deterministic, and nothing but ``env.step`` changes its state (policies
    only read it, :func:`_kept_place`), so the state after ``reset(seed)`` and a given
    sequence of applied discrete actions is always the same, and so is the expert's decision
    there. Clones of one teacher driving the same seed take the same actions for long
    stretches, and the teacher's own episode goes the same way: all of them ask the teacher
    about the same states. A decision found here is the one the expert would compute, to the
    bit, so no result changes; only the time does. Only inside :func:`reuse_episodes` (never
    in :func:`fresh_episodes`, whose rollouts are timed)."""

    memory_limit = 100_000


class StepMemo(FolderMemo[bytes]):
    """Simulated steps, by the digest that keys :class:`DecisionMemo` (scenario, seed and every
    action applied since the reset, this step's included): the pickled env after the step
    (wrappers and all: about 10 KB) with the step's observation, reward, end flags and info.

    For the reason :class:`DecisionMemo` gives, an episode that reaches a state another
    episode of the run reached, and applies the action that one applied, would simulate the
    same step to the bit: it continues from the kept env instead (unpickling costs a fraction
    of a step). Clones driving the same test seeds share their first steps with each other
    and with their teacher's episode. Only inside :func:`reuse_episodes`, and never for camera
    scenarios (their renderer does not pickle, and a frame is large)."""

    memory_limit = 5_000
    first_steps: ClassVar[int] = 8
    """Steps kept from the start of each episode: the shared ones come first (clones part from
    each other and from their teacher within a few steps), and a step kept costs about a tenth
    of a simulated one (pickle and file), which later steps, rarely shared, would not repay."""

    def keep(self, key: tuple, outcome: tuple[Any, ...]) -> None:
        """Store ``outcome`` (env, observation, reward, terminated, truncated, info) under
        ``key``, pickled now; an env that does not pickle is not stored."""
        try:
            blob = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - a scenario whose env does not pickle: simulate each time
            return
        self[key] = blob


@dataclasses.dataclass(frozen=True)
class Kept:
    """What an episode reads and stores kept decisions and steps in."""

    scenario_key: str
    """The scenario's resolved config as JSON (the first link of every key's digest)."""
    decisions: DecisionMemo
    """Decisions of experts that keep them."""
    steps: StepMemo | None
    """Simulated steps; None: every step simulated (a camera scenario)."""


_MEMORY = ":memory:"
""":attr:`_Task.kept` for memos in each process's memory only (no shared folder)."""
_MEMOS: dict[str, tuple[DecisionMemo, StepMemo]] = {}
_SAFE_KINDS = ("expert", "clone", "idle", "random")
"""Policies that never modify the simulator (experts promise it; the others never see it)."""


def _kept_place(spec: PolicySpec, labeller: PolicySpec | None, scoring: Scoring | None) -> str | None:
    """Where episodes of this driver, labeller and scorer keep expert decisions and simulated
    steps: the run's shared folder, this process's memory (:data:`_MEMORY`), or nowhere (None:
    outside :func:`reuse_episodes`, or a user's Python policy, which might change the
    simulator's state behind the applied actions)."""
    if _REUSED is None:
        return None
    agents = [*spec.drivers(), *([labeller] if labeller else []), *([scoring.scorer] if scoring else [])]
    if any(a.kind not in _SAFE_KINDS for a in agents):
        return None
    return str(_REUSED.folder) if isinstance(_REUSED, SharedEpisodes) else _MEMORY


def forget_kept() -> None:
    """Empty this process's :class:`DecisionMemo` and :class:`StepMemo` objects (a run's folder
    keeps its files): for code that measures what keeping them saves, block by block."""
    _MEMOS.clear()


def _kept(task: _Task, scenario_key: str) -> Kept | None:
    """This process's memos for ``task`` (one pair per place), with the scenario's key."""
    if task.kept is None:
        return None
    memos = _MEMOS.get(task.kept)
    if memos is None:
        folder = None if task.kept == _MEMORY else pathlib.Path(task.kept)
        memos = _MEMOS[task.kept] = (
            DecisionMemo(folder / "decisions" if folder else None),
            StepMemo(folder / "steps" if folder else None),
        )
    return Kept(scenario_key, memos[0], None if _camera(task.scenario) else memos[1])


SHARED_EPISODES_ENV = "TESTBED_SHARED_EPISODES"
"""Environment variable naming the :class:`SharedEpisodes` folder of a run, inherited by the
processes it starts (its scheduler's and sweeps' workers)."""

_REUSED: dict[tuple, EpisodeRecord] | SharedEpisodes | None = None
_REUSABLE_KINDS = ("expert", "idle", "random")


@contextlib.contextmanager
def reuse_episodes() -> Iterator[None]:
    """Within this block, an episode already run in this process is not run again.

    Experiments often replay the same episode: the expert on the evaluation seeds, the same
    demonstration seeds, the baselines. An episode is a deterministic function of the
    scenario's resolved config, the driving and labelling policies, the noise and the seed,
    so when all of those are equal the earlier :class:`EpisodeRecord` is returned instead.
    Only policies named by what they are (experts, ``idle``, ``random``) are reused — a
    clone is a file that may be rewritten under the same path — and camera scenarios are
    never kept (about 1 MB per episode). Records live in memory and end with the block.
    Within it, the decisions of an expert that keeps them (the planner) and the simulated
    steps are kept too, in every episode without a user's Python policy, whoever drives
    (:class:`DecisionMemo`, :class:`StepMemo`).
    """
    with _episode_store({} if _REUSED is None else _REUSED):
        yield


@contextlib.contextmanager
def share_episodes(folder: pathlib.Path) -> Iterator[None]:
    """:func:`reuse_episodes` with the records kept in ``folder`` (:class:`SharedEpisodes`),
    for this process and every process it starts within the block: ``testbed reproduce``
    runs in such a block, so an episode one step simulated is read, not simulated, by any
    other step or sweep cell of the run, whichever process it runs in."""
    with environment_variable(SHARED_EPISODES_ENV, str(folder.absolute())), _episode_store(SharedEpisodes(folder)):
        try:
            yield
        finally:
            LOOKUPS.flush()


def reuse_episodes_for_this_process() -> None:
    """:func:`reuse_episodes` for the rest of this process's life (a long-lived worker that
    runs one task after another: :mod:`testbed.scheduler`), shared through the folder of the
    run that started it (:func:`share_episodes`) if there is one."""
    global _REUSED
    folder = os.environ.get(SHARED_EPISODES_ENV)
    _REUSED = SharedEpisodes(folder) if folder else {}


@contextlib.contextmanager
def fresh_episodes() -> Iterator[None]:
    """Within this block every episode is simulated, even inside :func:`reuse_episodes`: for
    code that times its rollouts (a reused episode costs nothing and would read as free)."""
    with _episode_store(None):
        yield


@contextlib.contextmanager
def _episode_store(store: dict[tuple, EpisodeRecord] | SharedEpisodes | None) -> Iterator[None]:
    """Use ``store`` (``None``: no reuse) as the reused-episode memo within the block, then
    restore the enclosing one."""
    global _REUSED
    outer, _REUSED = _REUSED, store
    try:
        yield
    finally:
        _REUSED = outer


def _camera(scenario: Scenario) -> bool:
    """Whether ``scenario`` observes camera frames (large; their renderer does not pickle)."""
    return scenario.config.get("observation", {}).get("type") == "GrayscaleObservation"


def _reusable(task: _Task | None) -> bool:
    if task is None or _camera(task.scenario):
        return False
    others = [p for p in (task.labeller, task.scoring.scorer if task.scoring else None) if p is not None]
    return task.spec.kind in _REUSABLE_KINDS and all(p.kind in _REUSABLE_KINDS for p in others)


def _task_key(task: _Task) -> tuple:
    scenario = {k: v for k, v in task.scenario.to_dict().items() if k != "name"}
    labeller = task.labeller.label if task.labeller is not None else None
    scoring = (task.scoring.scorer.label, task.scoring.every) if task.scoring is not None else None
    return (json.dumps(scenario, sort_keys=True), task.spec.label, labeller, task.noise, task.seed, scoring)


class RolloutPool:
    """Worker processes that run episodes of any (scenario, policy) sent to them.

    Starting a worker costs seconds (importing torch, gymnasium and highway-env), so one pool
    should serve every policy of an evaluation. This process is one of the ``n_workers``: it
    runs episodes itself while ``n_workers - 1`` worker processes run the others (one child
    to start, not two, for ``n_workers=2``, and no process idle waiting for results); with
    ``n_workers=1`` every episode runs here. Episodes are pure functions of their seeds, so
    which process runs which changes nothing. Use as a context manager; leaving the block by
    an exception (or a signal made one by :func:`testbed.runtime.signals_as_exceptions`)
    terminates the workers at once.

    Note:
        The workers are a ``concurrent.futures.ProcessPoolExecutor``, not a
        ``multiprocessing.Pool``: when a worker dies (the kernel's out-of-memory killer sends
        SIGKILL) a ``Pool`` silently starts another and waits forever for the lost episode,
        whereas the executor fails every pending episode, which :meth:`imap` raises as a
        :class:`TestbedError` naming the signal. An exception raised inside a worker (a
        user's policy failing) reaches the caller unchanged, as it would in this process.
    """

    def __init__(self, n_workers: int = 1, *, lockstep: bool = False) -> None:
        """Args:
        n_workers: processes running episodes, this one included.
        lockstep: run the episodes of each call side by side, up to :data:`LOCKSTEP_WIDTH`
            per process (:func:`run_lockstep`), with one batched forward per step for a
            discrete-action clone (not for a user's Python policy: :func:`lockstep_eligible`).
            The records are the same either way; off by default, because on the scenarios
            measured the simulator, not the forward, is most of a step
            (``benchmarks/throughput.py``: lockstep/one-episode-at-a-time).
        """
        self.n_workers = max(1, int(n_workers))
        self.lockstep = lockstep
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._workers: MutableMapping[int, Any] = {}
        self._died: TestbedError | None = None
        self._starter: threading.Thread | None = None
        self._in_process = contextlib.ExitStack()

    def __enter__(self) -> RolloutPool:
        if self.n_workers > 1:
            # The workers are forked by the forkserver, which starts with the first pool of a
            # process (unless testbed.runtime.start_workers_early started it already).
            self._executor = concurrent.futures.ProcessPoolExecutor(
                self.n_workers - 1, mp_context=worker_context(), initializer=init_worker
            )
            # The executor's own dict of worker processes (private; read only to tell how a
            # worker died): it gets each worker as the executor starts it.
            self._workers = self._executor._processes
            self._died = None
            # Starting a worker waits until the forkserver has imported its preload (seconds):
            # a thread of its own waits for that, while this process runs episodes.
            self._starter = threading.Thread(
                target=_start_workers, args=(self._executor, self.n_workers - 1), name="start-workers", daemon=True
            )
            self._starter.start()
        # Episodes also run here, with the one torch thread a worker has.
        self._in_process.enter_context(torch_threads(1))
        return self

    def __exit__(self, *exc: Any) -> None:
        executor, self._executor = self._executor, None
        try:
            if executor is not None:
                stop_pool(executor, terminate=exc[0] is not None)
                if self._starter is not None:
                    self._starter.join()  # returned by now: the shutdown took the lock it held
        finally:
            self._in_process.close()
            _clear_cache()

    def imap(
        self,
        scenario: Scenario,
        spec: PolicySpec,
        seeds: Sequence[int],
        *,
        labeller: PolicySpec | str | None = None,
        noise: float = 0.0,
        scoring: Scoring | None = None,
    ) -> Iterator[EpisodeRecord]:
        """Yield one :class:`EpisodeRecord` per seed, in the order of ``seeds``
        (``labeller`` and ``noise`` as in :func:`run_episode`; ``scoring``: :class:`Scoring`)."""
        if not 0.0 <= noise <= 1.0:
            raise TestbedError(f"noise must be a probability in [0, 1], got {noise}")
        if scoring is not None:
            _check_scoring(scoring)
        labeller = _as_spec(labeller)
        kept = _kept_place(spec, labeller, scoring)
        tasks = [_Task(scenario, spec, labeller, float(noise), int(s), scoring, kept) for s in seeds]
        memo = _REUSED if _REUSED is not None and _reusable(tasks[0] if tasks else None) else None
        keys = [_task_key(t) for t in tasks] if memo is not None else []
        LOOKUPS.bind(kept)  # as the jobs it runs here do: one file for the run, whoever drives
        known = [memo.get(k) for k in keys] if memo is not None else [None] * len(tasks)
        for record in known if memo is not None else ():
            LOOKUPS.count("episodes", record is not None)
        fresh = self._map([t for t, record in zip(tasks, known) if record is None])
        for i, record in enumerate(known):
            if record is None:
                record = next(fresh)
                if memo is not None:
                    memo[keys[i]] = record
            yield record
        LOOKUPS.flush()

    def _jobs(self, tasks: list[_Task]) -> list[_Job]:
        """Cut ``tasks`` (all of one driver) into the units handed to processes: one episode
        each, or, in lockstep, blocks small enough that the processes finish together (about
        four per process) and no wider than :data:`LOCKSTEP_WIDTH`."""
        if not (self.lockstep and tasks and lockstep_eligible(tasks[0].spec, tasks[0].labeller)):
            return [_Job((t,)) for t in tasks]
        if self.n_workers == 1:  # nothing to balance: one job, its lanes refilled as episodes end
            return [_Job(tuple(tasks), LOCKSTEP_WIDTH)]
        size = min(LOCKSTEP_WIDTH, -(-len(tasks) // (4 * self.n_workers)))
        return [_Job(tuple(tasks[i : i + size]), size) for i in range(0, len(tasks), size)]

    def _map(self, tasks: list[_Task]) -> Iterator[EpisodeRecord]:
        jobs = self._jobs(tasks)
        if self._executor is None:
            return (record for job in jobs for record in _run_job(job))
        if self._died is not None:  # an earlier call lost a worker and shut the pool down
            raise TestbedError(str(self._died), detail=self._died.detail)
        return self._shared(self._executor, jobs, tasks)

    def _shared(
        self, executor: concurrent.futures.ProcessPoolExecutor, jobs: list[_Job], tasks: list[_Task]
    ) -> Iterator[EpisodeRecord]:
        """Run ``jobs`` in the workers and in this process, yielding the records in order,
        with the ``BrokenProcessPool`` of a dead worker raised as a :class:`TestbedError` that
        says how it died.

        Jobs are handed out in order: once the workers have started, each is kept two jobs
        ahead (so it never waits for this process), and this process runs the next job not
        handed out whenever the record due next is not ready (a short run may finish here
        before any worker has started). Not ``executor.map``: on leaving early it cancels the
        pending futures from this thread, and on Python 3.11 the executor's own thread,
        finding a worker dead (terminated by :meth:`__exit__`), then fails on those cancelled
        futures with an ``InvalidStateError`` traceback (CPython issue 107219, fixed in 3.12).
        Pending jobs are cancelled by the shutdown in :meth:`__exit__` instead, inside that
        thread.
        """
        from concurrent.futures.process import BrokenProcessPool

        ahead = 2 * (self.n_workers - 1)
        futures: dict[int, concurrent.futures.Future[list[EpisodeRecord]]] = {}
        ready: dict[int, list[EpisodeRecord] | Exception] = {}
        cursor = 0  # the first job not handed out yet
        try:
            for due in range(len(jobs)):
                while due not in ready:
                    # One episode per job unless in lockstep: an episode is long next to the
                    # cost of sending it, and small jobs leave no process idle at the end.
                    started = self._starter is None or not self._starter.is_alive()
                    while started and cursor < len(jobs) and sum(not f.done() for f in futures.values()) < ahead:
                        futures[cursor] = executor.submit(_run_job, jobs[cursor])
                        cursor += 1
                    if due in futures and (futures[due].done() or cursor == len(jobs)):
                        ready[due] = futures.pop(due).result()
                    else:
                        try:
                            ready[cursor] = _run_job(jobs[cursor])
                        except Exception as e:  # raised when due: an earlier seed's failure comes first
                            ready[cursor] = e
                        cursor += 1
                records = ready.pop(due)
                if isinstance(records, Exception):
                    raise records
                while records:  # a yielded record is not kept here
                    yield records.pop(0)
        except BrokenProcessPool as e:  # a worker died (or had died while the pool was idle)
            raise self._worker_died(executor, e, tasks) from None

    def _worker_died(
        self, executor: concurrent.futures.ProcessPoolExecutor, error: BaseException, tasks: list[_Task]
    ) -> TestbedError:
        what = f"{tasks[0].spec.label} on {tasks[0].scenario.name}"
        self._died = broken_pool_error(
            "rollout worker", error, executor, self._workers, consequence=f"the run of {what} was stopped"
        )
        return TestbedError(str(self._died), detail=self._died.detail)

    def run(
        self,
        scenario: Scenario,
        spec: PolicySpec,
        seeds: Sequence[int],
        *,
        labeller: PolicySpec | str | None = None,
        noise: float = 0.0,
        progress: bool | Bar = False,
        desc: str | None = None,
        scoring: Scoring | None = None,
    ) -> list[EpisodeRecord]:
        """All episodes of :meth:`imap` as a list, with an optional progress bar: ``True`` for
        a bar of its own (drawn only on a terminal, :mod:`testbed.progress`), or a stage's
        :class:`~testbed.progress.Bar` to advance by one per episode."""
        iterator = self.imap(scenario, spec, seeds, labeller=labeller, noise=noise, scoring=scoring)
        if isinstance(progress, Bar):
            return list(track(iterator, len(seeds), desc or spec.label, unit="ep", bar=progress))
        if progress:
            return list(track(iterator, len(seeds), desc or spec.label, unit="ep"))
        return list(iterator)


def rollouts(
    scenario: Scenario,
    spec: PolicySpec,
    seeds: Sequence[int],
    *,
    n_workers: int = 1,
    pool: RolloutPool | None = None,
    labeller: PolicySpec | str | None = None,
    noise: float = 0.0,
    scoring: Scoring | None = None,
    progress: bool | Bar = False,
    desc: str | None = None,
) -> list[EpisodeRecord]:
    """Run ``spec`` on every seed (in ``pool`` if given, else in a pool of ``n_workers``).

    Args:
        scenario: where to drive.
        spec: who drives.
        seeds: one episode per seed; the records come back in this order.
        n_workers: worker processes when no pool is given; 1 runs in this process.
        pool: an open :class:`RolloutPool` to reuse.
        labeller: agent (spec, or expert name) whose action is recorded at every visited state.
        noise: probability of applying a random action instead of the driver's (for a Box
            action space: Gaussian noise of std ``noise`` times the action range).
        scoring: a cost-weighted error (:class:`Scoring`) in the infos' ``value_gap``.
        progress: show a progress bar (or advance this :class:`~testbed.progress.Bar`).
        desc: progress bar label.
    """
    if pool is not None:
        return pool.run(
            scenario, spec, seeds, labeller=labeller, noise=noise, progress=progress, desc=desc, scoring=scoring
        )
    with RolloutPool(min(n_workers, max(1, len(seeds)))) as own:
        return own.run(
            scenario, spec, seeds, labeller=labeller, noise=noise, progress=progress, desc=desc, scoring=scoring
        )
