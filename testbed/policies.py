"""Drivers the rollout harness can run, named by a spec string.

Specs (the same strings the command line takes):

- ``expert:NAME`` — a privileged expert from :mod:`testbed.experts` (``expert:scripted``);
- ``expert:sb3:PATH`` — a stable-baselines3 model file (DQN, PPO, A2C) driving from the observation;
- ``clone:RUN_DIR`` — a policy written by ``testbed train``;
- ``idle`` — always the IDLE meta-action (keep lane and speed); the zero action (no
  acceleration, no steering) in a continuous-action scenario;
- ``random`` — uniform random actions, from a generator seeded by the episode seed;
- ``handover:AT:FIRST->SECOND`` — ``FIRST`` drives the first ``AT`` decisions of each
  episode, then ``SECOND`` (reset at the handover) drives the rest, e.g.
  ``handover:10:clone:runs/bc->expert:planner``: the expert taking over from a clone's own
  state (:class:`HandoverAgent`; Spencer et al. 2021, "Feedback in imitation learning: the
  three regimes of covariate shift"). ``FIRST`` and ``SECOND`` are any other specs;
- ``MODULE:FUNCTION`` — a user's Python policy (:class:`PythonAgent`), e.g.
  ``my_policies:keep_right``: a callable ``f(obs) -> action``, or a factory ``f()`` returning
  an object with ``predict(obs)`` (stable-baselines3's ``PolicyPredictor``), an
  :class:`Agent`, or a callable ``g(obs) -> action``. The module is imported as ``python -m``
  would (current directory first on ``sys.path``), in each worker process.

In scenarios with a Box (continuous) action space agents return float32 arrays of the
space's shape instead of integers.

A spec is a small picklable value; each worker process turns it into an :class:`Agent` once.
Experts read the simulator; clones and baselines read only the observation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
import pathlib
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from testbed.clone_io import load_clone
from testbed.errors import TestbedError
from testbed.experts import SB3_PREFIX, Expert, expert_names, make_expert
from testbed.scenarios import Scenario, describe_spaces
from testbed.spaces import space_to_dict


class Agent(Protocol):
    """Anything the harness can drive with; experts (:class:`testbed.experts.Expert`) are
    agents as they are."""

    def reset(self, env: Any, seed: int) -> None:
        """Start an episode. ``env`` is the unwrapped highway-env env, already reset."""

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        """Action for the current step, from the observation and/or the simulator (an
        array for a Box action space)."""


class BatchAgent(Agent, Protocol):
    """An agent that keeps no per-episode state (one serves every lane of
    :func:`testbed.rollout.run_lockstep`) and may act for many episodes at once."""

    batchable: bool
    """Whether :meth:`act_batch` gives exactly the actions :meth:`act` gives row by row."""

    def act_batch(self, obs: np.ndarray) -> Sequence[int | np.ndarray]:
        """Actions for a stack of observations (N, ...), one per row, each equal to what
        ``act`` returns for that row alone."""


TIE_MARGIN = 1e-3
"""Relative gap between the two largest logits under which :meth:`ClonePolicyAgent.act_batch`
recomputes a row alone. Torch's matrix product over N rows does not add in the order of one
row's (measured under torch 2.13 CPU, 1 thread: the logits of a 256x256 MLP differ in the
last bits for every batch size from 2 to 500, by at most 1.1e-5 on logits up to 30, i.e.
4e-7 relative); the argmax is the same whenever the gap exceeds twice that, and this margin
is ~1000x wider."""


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """A parsed policy spec."""

    kind: str
    """One of ``expert``, ``clone``, ``idle``, ``random``, ``handover``, ``python``."""
    arg: str = ""
    """Expert name, clone run directory, ``AT:FIRST->SECOND`` or ``MODULE:FUNCTION``; empty for
    baselines."""
    name: str = ""
    """The policy's name in tables, if not the spec as written: a clone trained inside an
    output directory that is still being written is named by its final location."""

    @property
    def label(self) -> str:
        """The policy's name in tables: :attr:`name`, else the spec as written."""
        return self.name or self.text

    @property
    def text(self) -> str:
        """The spec as written (what :meth:`parse` takes), whatever :attr:`name` says."""
        if self.kind == "python":
            return self.arg
        return f"{self.kind}:{self.arg}" if self.arg else self.kind

    def drivers(self) -> tuple[PolicySpec, ...]:
        """The specs that drive under this one: the two of a handover, else itself. The parts
        are not checked again (:meth:`parse` checked them): this is cheap enough for every
        episode, where parsing would load an ``expert:sb3:`` model each time."""
        if self.kind != HANDOVER:
            return (self,)
        _, first, second = split_handover(self.text)
        return _unchecked(first), _unchecked(second)

    @classmethod
    def handover(cls, first: PolicySpec, at: int, second: PolicySpec) -> PolicySpec:
        """The spec ``handover:AT:FIRST->SECOND``, named by the labels of ``first`` and
        ``second`` (a clone by its final location, :func:`testbed.kit.clone_spec`).

        Raises:
            TestbedError: as :meth:`parse` for the text.
        """
        spec = cls.parse(f"{HANDOVER}:{at}:{first.text}{HANDOVER_ARROW}{second.text}")
        return dataclasses.replace(spec, name=f"{HANDOVER}:{at}:{first.label}{HANDOVER_ARROW}{second.label}")

    @classmethod
    def parse(cls, text: str) -> PolicySpec:
        """Parse ``expert:NAME``, ``expert:sb3:PATH``, ``clone:DIR``, ``idle``, ``random``,
        ``handover:AT:FIRST->SECOND`` or ``MODULE:FUNCTION``.

        Raises:
            TestbedError: anything else, or an unknown expert / missing run directory.
        """
        kind, _, arg = text.partition(":")
        if kind == HANDOVER:
            _, first, second = split_handover(text)
            for part in (first, second):
                try:
                    cls.parse(part)  # fail now, not in a worker
                except TestbedError as e:
                    raise TestbedError(f"in handover spec {text!r}: {e}") from None
            return cls(kind, arg)
        if kind in ("idle", "random") and not arg:
            return cls(kind)
        if kind == "expert" and arg:
            if arg.startswith(SB3_PREFIX):
                make_expert(arg)  # fail now, not in a worker, on a missing or corrupt model file
                return cls(kind, arg)
            if arg not in expert_names():
                raise TestbedError(f"unknown expert {arg!r}; choose from: {', '.join(expert_names())} or sb3:MODEL_ZIP")
            return cls(kind, arg)
        if kind == "clone" and arg:
            if not pathlib.Path(arg).is_dir():
                raise TestbedError(f"clone run directory not found: {arg}")
            return cls(kind, arg)
        if kind and kind not in ("expert", "clone", "idle", "random") and arg and ":" not in arg:
            import_policy_callable(text)
            return cls("python", text)
        raise TestbedError(
            f"bad policy spec {text!r}; use expert:NAME, expert:sb3:MODEL_ZIP, clone:RUN_DIR, idle, random, "
            "handover:AT:FIRST->SECOND or MODULE:FUNCTION"
        )


HANDOVER = "handover"
"""Kind of the specs ``handover:AT:FIRST->SECOND``."""


def _unchecked(text: str) -> PolicySpec:
    """The spec :meth:`PolicySpec.parse` gives for ``text`` once it has accepted it, without its
    checks (no file is read, no expert built, no module imported)."""
    kind, _, arg = text.partition(":")
    return PolicySpec(kind, arg) if kind in ("expert", "clone", "idle", "random") else PolicySpec("python", text)


HANDOVER_ARROW = "->"
"""What separates the two drivers of a handover spec."""


def split_handover(text: str) -> tuple[int, str, str]:
    """``(at, first, second)`` of ``handover:AT:FIRST->SECOND`` (or of a handover spec's
    label, which names the same step): what an analysis reads back from a record's ``policy``.
    Only the syntax is checked, not the two specs.

    Raises:
        TestbedError: not that form: AT not a non-negative integer, not exactly one ``->``,
            an empty or nested (handover) driver.
    """
    usage = (
        f"bad handover spec {text!r}; use {HANDOVER}:AT:FIRST{HANDOVER_ARROW}SECOND with AT a decision count, "
        f"e.g. {HANDOVER}:10:clone:RUN_DIR{HANDOVER_ARROW}expert:planner"
    )
    kind, _, rest = text.partition(":")
    at, sep, pair = rest.partition(":")
    if kind != HANDOVER or not sep or not (at.isascii() and at.isdigit()) or pair.count(HANDOVER_ARROW) != 1:
        raise TestbedError(usage)
    first, _, second = pair.partition(HANDOVER_ARROW)
    if not first or not second:
        raise TestbedError(usage)
    if any(p.partition(":")[0] == HANDOVER for p in (first, second)):
        raise TestbedError(f"bad handover spec {text!r}: a handover cannot contain another")
    return int(at), first, second


class HandoverAgent:
    """Drives with ``first`` for the first ``at`` decisions of an episode, then with ``second``.

    ``second`` is reset (``reset(env, seed)``, the env as it is at the handover, mid-episode)
    just before its first decision, so a stateful driver starts from the state it takes over
    and not from the episode's start; an episode that ends before decision ``at`` never
    calls it. A record of this agent's episode holds its handover step in its ``policy``
    label (:func:`split_handover`): decisions ``0 .. at-1`` are ``first``'s.
    """

    def __init__(self, first: Agent, at: int, second: Agent) -> None:
        if at < 0:
            raise ValueError(f"the handover step must be >= 0, got {at}")
        self.first, self.at, self.second = first, int(at), second
        self.n_decisions = 0
        """Decisions taken so far in the current episode."""

    def reset(self, env: Any, seed: int) -> None:
        self.seed, self.n_decisions = int(seed), 0
        self.first.reset(env, seed)

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        if self.n_decisions == self.at:
            self.second.reset(env, self.seed)
        driver = self.first if self.n_decisions < self.at else self.second
        self.n_decisions += 1
        return driver.act(obs, env)


class IdleAgent:
    """Always IDLE: keeps its lane and target speed."""

    def reset(self, env: Any, seed: int) -> None:
        self._idle: int | np.ndarray
        if _is_box(env.action_space):
            self._idle = np.zeros(env.action_space.shape, dtype=np.float32)
            return
        self._idle = int(env.action_type.actions_indexes["IDLE"])

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        return self._idle.copy() if isinstance(self._idle, np.ndarray) else self._idle


class RandomAgent:
    """Uniform random actions (discrete, or uniform in a Box); the generator is seeded by the
    episode seed, so the same seed gives the same actions whatever worker runs it."""

    def reset(self, env: Any, seed: int) -> None:
        # A stream of its own, distinct from the env's (which reset(seed) seeds).
        self._rng = np.random.default_rng([seed, 0x5EED])
        self._box: tuple[np.ndarray, np.ndarray] | None
        if _is_box(env.action_space):
            self._box = (env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64))
            return
        self._box = None
        self._n = int(env.action_space.n)

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        if self._box is not None:
            return self._rng.uniform(*self._box).astype(np.float32)
        return int(self._rng.integers(self._n))


class ClonePolicyAgent:
    """Drives with a trained policy (deterministic: the most likely action, or the mean of a
    Gaussian policy clipped to the Box)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        # Batched actions are exact only as an argmax (see act_batch): not for a Box's means.
        self.batchable = not _is_box(policy.action_space)

    def reset(self, env: Any, seed: int) -> None:
        pass

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        action, _ = self.policy.predict(obs, deterministic=True)
        if _is_box(self.policy.action_space):
            return np.asarray(action, dtype=np.float32)
        return int(action)

    def act_batch(self, obs: np.ndarray) -> list[int]:
        """The action :meth:`act` gives each row of ``obs`` (N, ...), from one forward of all N.

        The batched logits may differ from a row's own in the last bits (:data:`TIE_MARGIN`),
        so the argmax is taken from them only where the two largest are far apart; a row
        with a near tie is recomputed alone by :meth:`act`, exactly as one episode at a time
        would (rare: a few rows in a thousand on the committed clone). Discrete actions only
        (:attr:`batchable`).
        """
        import torch

        if not self.batchable:
            raise TypeError("act_batch needs a discrete action space")
        policy = self.policy
        policy.set_training_mode(False)  # as predict does
        with torch.no_grad():
            tensor, _ = policy.obs_to_tensor(obs)
            logits = policy.get_distribution(tensor).distribution.logits
        top2 = torch.topk(logits, 2, dim=1).values
        scale = 1.0 + logits.abs().amax(dim=1)
        clear = ((top2[:, 0] - top2[:, 1]) > TIE_MARGIN * scale).tolist()
        best = logits.argmax(dim=1).tolist()
        return [int(a) if ok else int(self.act(row, None)) for a, ok, row in zip(best, clear, obs)]


def import_policy_callable(text: str) -> Any:
    """The object named by ``MODULE:FUNCTION``, imported with the current directory on
    ``sys.path`` (as ``python -m`` has it; spawned workers inherit the path).

    Raises:
        TestbedError: the module cannot be imported or has no such callable.
    """
    module_name, _, name = text.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.startswith(e.name):
            raise TestbedError(
                f"bad policy spec {text!r}: no module named {e.name!r} (use expert:NAME, clone:RUN_DIR, idle, "
                "random or MODULE:FUNCTION with MODULE importable from the current directory)"
            ) from None
        raise TestbedError(f"policy module {module_name!r} failed to import: {e}") from None
    except Exception as e:  # the user's module raised while importing
        raise TestbedError(f"policy module {module_name!r} failed to import: {type(e).__name__}: {e}") from None
    target: Any = module
    for part in name.split("."):
        if not hasattr(target, part):
            raise TestbedError(f"bad policy spec {text!r}: module {module_name!r} has no {name!r}")
        target = getattr(target, part)
    if not callable(target):
        raise TestbedError(f"bad policy spec {text!r}: {name!r} is not callable")
    return target


def _required_positional(fn: Any) -> int | None:
    """Number of positional parameters ``fn`` requires, or None if it has no signature."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


class PythonAgent:
    """Drives with a user's Python policy (spec ``MODULE:FUNCTION``).

    ``FUNCTION`` is either the policy itself, ``f(obs) -> action`` (one required argument),
    or a factory ``f()`` (no required argument) called once per worker, returning an
    :class:`Agent` (``reset(env, seed)`` and ``act(obs, env)``), an object with
    ``predict(obs)`` returning an action or stable-baselines3's ``(action, state)`` (called
    with ``deterministic=True`` when it accepts that), or a callable ``g(obs) -> action``.
    Actions outside the env's discrete action space are an error.
    """

    def __init__(self, text: str) -> None:
        self.label = text
        target = import_policy_callable(text)
        self._agent: Any = None
        self._fn: Any = None
        if _required_positional(target) == 0:
            try:
                made = target()
            except Exception as e:
                raise TestbedError(
                    f"policy factory {text!r} raised {type(e).__name__}: {e}".splitlines()[0],
                    detail=traceback.format_exc(),
                ) from None
        else:
            made = target
        self.policy = made
        if hasattr(made, "act") and hasattr(made, "reset"):
            self._agent = made
        elif hasattr(made, "predict"):
            try:
                takes_flag = "deterministic" in inspect.signature(made.predict).parameters
            except (TypeError, ValueError):
                takes_flag = False
            self._fn = (lambda obs: made.predict(obs, deterministic=True)) if takes_flag else made.predict
        elif callable(made):
            self._fn = made
        else:
            raise TestbedError(
                f"policy {text!r} gave a {type(made).__name__}, which has neither act/reset nor predict "
                "and is not callable"
            )

    def reset(self, env: Any, seed: int) -> None:
        self._space = env.action_space
        if self._agent is not None:
            with _user_code(self.label, "reset"):
                self._agent.reset(env, seed)

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        with _user_code(self.label):
            raw = self._agent.act(obs, env) if self._agent is not None else self._fn(obs)
        if isinstance(raw, tuple):  # SB3's predict returns (action, state)
            raw = raw[0]
        return checked_action(raw, self._space, who=f"policy {self.label}")


class PolicyError(TestbedError):
    """A user's policy failed: it raised, or returned something that is not an action. The
    rollout harness adds where (episode seed and step); ``detail`` holds the user's traceback."""


@contextlib.contextmanager
def _user_code(label: str, what: str = "") -> Iterator[None]:
    """Turn an exception raised by a user's policy into a :class:`PolicyError` whose
    ``detail`` is the traceback (shown with ``--debug``)."""
    try:
        yield
    except TestbedError:
        raise
    except Exception as e:
        message = f"policy {label}{f' {what}' if what else ''} raised {type(e).__name__}: {e}".strip()
        raise PolicyError(message.splitlines()[0], detail=traceback.format_exc()) from None


def checked_action(raw: Any, space: gym.Space, *, who: str) -> int | np.ndarray:
    """``raw`` as an action of ``space`` (an int for Discrete, a float32 array for a Box).

    Raises:
        TestbedError: ``raw`` is not an action of ``space`` (wrong type, shape, out of range,
            not finite), naming ``who`` returned it.
    """
    if isinstance(space, gym.spaces.Box):
        try:
            array = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):
            raise PolicyError(f"{who} returned {_short(raw)}, not an action of {space}") from None
        if array.size != int(np.prod(space.shape)):
            raise PolicyError(f"{who} returned an action of shape {array.shape}, expected {space.shape}")
        array = array.reshape(space.shape)
        if not space.contains(array):
            raise PolicyError(f"{who} returned action {array.tolist()}, outside {space}")
        return array
    try:
        action = int(np.asarray(raw).item())
    except (TypeError, ValueError, OverflowError):
        raise PolicyError(f"{who} returned {_short(raw)}, not a discrete action") from None
    if not space.contains(action):
        raise PolicyError(f"{who} returned action {action}, outside {space}")
    return action


def _short(value: Any) -> str:
    """``repr`` on one line of at most 80 characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _check_declared_spaces(policy: Any, scenario: Scenario, *, what: str) -> None:
    """If ``policy`` declares ``observation_space``/``action_space`` (as SB3 models and
    policies do), refuse a scenario whose spaces differ."""
    declared = {k: getattr(policy, k, None) for k in ("observation_space", "action_space")}
    if all(v is None for v in declared.values()):
        return
    expected = describe_spaces(scenario)
    for key, space in declared.items():
        if space is None:
            continue
        try:
            mine = space_to_dict(space)
        except TestbedError:
            continue
        if mine != expected[key]:
            raise TestbedError(
                f"{what} was made for a different {key.replace('_', ' ')} than scenario {scenario.name!r}"
            )


def _is_box(space: Any) -> bool:
    return isinstance(space, gym.spaces.Box)


def check_expert_fits(expert: Expert, scenario: Scenario) -> None:
    """Refuse an expert built for another kind of action (or, if it reads the observation,
    another observation) than the scenario's.

    Experts may declare ``action_types`` (names of highway-env action types they drive
    with); one without it is taken to drive discrete meta-actions.

    Raises:
        TestbedError: naming the expert, the scenario and its action type.
    """
    supported = getattr(expert, "action_types", ("DiscreteMetaAction",))
    kind = dict(scenario.config.get("action", {})).get("type")
    if kind not in supported:
        raise TestbedError(
            f"expert {getattr(expert, 'name', expert)!r} drives with {', '.join(supported)} actions; "
            f"scenario {scenario.name!r} has {kind} actions"
        )
    # Experts that read the observation (SB3 models) also check it before any simulation.
    check_scenario = getattr(expert, "check_scenario", None)
    if check_scenario is not None:
        check_scenario(scenario)


def build_agent(spec: PolicySpec, scenario: Scenario) -> Agent:
    """Turn a spec into an agent for ``scenario`` (loads clone weights, checks spaces).

    Raises:
        TestbedError: a clone trained for other spaces, or an unreadable policy file.
    """
    if spec.kind == "expert":
        expert = make_expert(spec.arg)
        check_expert_fits(expert, scenario)
        return expert
    if spec.kind == "idle":
        return IdleAgent()
    if spec.kind == "random":
        return RandomAgent()
    if spec.kind == "clone":
        return ClonePolicyAgent(load_clone(spec.arg, scenario=scenario))
    if spec.kind == HANDOVER:
        first, second = spec.drivers()
        return HandoverAgent(build_agent(first, scenario), split_handover(spec.text)[0], build_agent(second, scenario))
    if spec.kind == "python":
        agent = PythonAgent(spec.arg)
        _check_declared_spaces(agent.policy, scenario, what=f"policy {spec.label!r}")
        return agent
    raise TestbedError(f"unknown policy kind {spec.kind!r}")
