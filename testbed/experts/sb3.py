"""Any stable-baselines3 model file as an expert (``expert:sb3:PATH``), loaded safely.

An RL expert is *not* privileged: it drives from the observation alone. It still implements
the :class:`~testbed.experts.base.Expert` interface (``act(env)``) by computing the
observation from the simulator (``env.observation_type.observe()``), so it can drive, label
a clone's states for DAgger and audit drift exactly like the scripted expert. Predictions are
deterministic (the greedy action).

Loading never unpickles anything. SB3's own ``load`` rebuilds the algorithm from the zip's
``data`` entry, whose spaces, schedules and classes are cloudpickle blobs (base64 inside
JSON; ``stable_baselines3/common/save_util.py``): unpickling those runs whatever code the
file's author chose. Instead this module reads

- ``data`` as plain JSON (bounded in size and depth: :mod:`testbed.safe_json`; the zip's
  members are checked and read without inflating past their declared sizes:
  :mod:`testbed.safe_zip`), using only the human-readable fields SB3 writes beside each blob
  (a space's ``_shape``, ``dtype``, ``n``; the policy class's ``__module__``), and
- ``policy.pth`` with ``torch.load(weights_only=True)`` (a state dict: tensors only),

and rebuilds the policy network (``DQNPolicy`` for DQN, ``ActorCriticPolicy`` for PPO and
A2C) from the stored ``policy_kwargs`` and the shapes of the weights. Custom classes in
``policy_kwargs`` other than torch's activation functions and SB3's ``FlattenExtractor`` /
``NatureCNN`` are refused with a clear message rather than imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pathlib
import weakref
import zipfile
from typing import Any

import numpy as np

from testbed import safe_json, safe_zip
from testbed.errors import TestbedError
from testbed.experts.base import Expert
from testbed.scenarios import describe_spaces
from testbed.spaces import MAX_SPACE_SIZE, describe_space, jsonable, space_from_dict

# policy_kwargs entries SB3 could not store as JSON are kept as str(value); these are the
# only class names we map back (to classes imported here, never by name from the file).
_ACTIVATIONS = ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Softplus", "SELU", "Mish")
_IGNORED_KWARGS = ("optimizer_class", "optimizer_kwargs")  # training only; inference needs no optimiser


@dataclasses.dataclass
class SB3Model:
    """A stable-baselines3 policy rebuilt from a model zip, plus what the zip says about it."""

    path: pathlib.Path
    """The model file."""
    algorithm: str
    """``dqn``, ``ppo`` or ``a2c``."""
    policy: Any
    """The SB3 policy (``DQNPolicy`` or ``ActorCriticPolicy``), in evaluation mode."""
    observation_space: Any
    """Observation space rebuilt from the zip's readable fields (shape, dtype, scalar bounds)."""
    action_space: Any
    """Action space rebuilt from the zip's readable fields."""
    sha256: str
    """Hash of the model file, recorded as provenance."""


def _fail(path: pathlib.Path, reason: str) -> TestbedError:
    return TestbedError(f"{path} is not a loadable SB3 model zip: {reason}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _space(entry: Any, key: str, path: pathlib.Path) -> Any:
    """Rebuild a Box or Discrete space from SB3's readable record of it (no unpickling)."""
    import gymnasium as gym

    if not isinstance(entry, dict) or ":type:" not in entry:
        raise _fail(path, f"'data' has no readable {key}")
    kind = str(entry[":type:"])
    try:
        if kind.endswith(".Discrete'>"):
            n, start = int(str(entry["n"])), int(str(entry.get("start", 0)))
            if not 1 <= n <= MAX_SPACE_SIZE:
                raise _fail(path, f"its {key} declares {n} actions (1..{MAX_SPACE_SIZE} are served)")
            return gym.spaces.Discrete(n, start=start)
        if kind.endswith(".Box'>"):
            shape = entry["_shape"]
            if isinstance(shape, str):
                shape = safe_json.loads(shape, where=f"{path}: the {key}'s _shape")
            shape = tuple(int(s) for s in shape)
            if not shape or min(shape) < 1 or int(np.prod(shape, dtype=np.float64)) > MAX_SPACE_SIZE:
                raise _fail(path, f"its {key} has shape {list(shape)} (1..{MAX_SPACE_SIZE} elements are served)")
            dtype = np.dtype(str(entry["dtype"]))
            low, high = _scalar_bound(entry.get("low_repr"), -np.inf), _scalar_bound(entry.get("high_repr"), np.inf)
            if np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                low, high = max(low, info.min), min(high, info.max)
            return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)  # type: ignore[arg-type]  # gymnasium's stub omits np.dtype
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise _fail(path, f"unreadable {key} record ({_first_line(e)})") from None
    raise TestbedError(
        f"{path}: unsupported {key} {kind.strip('<>')}; only Box observations and Discrete actions are served"
    )


def _scalar_bound(text: Any, default: float) -> float:
    """A Box bound SB3 recorded as a scalar repr (``"-inf"``, ``"0"``, ``"255"``); array
    reprs fall back to ``default`` (only image normalisation depends on bounds)."""
    try:
        return float(str(text))
    except (TypeError, ValueError):
        return default


def _policy_kwargs(data: dict[str, Any], family: str, state: dict[str, Any], path: pathlib.Path) -> dict[str, Any]:
    import torch
    from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN

    raw = data.get("policy_kwargs") or {}
    if not isinstance(raw, dict):
        raise _fail(path, "policy_kwargs is not a mapping")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(":") or key in _IGNORED_KWARGS:
            continue
        if key == "activation_fn":
            name = str(value).rsplit(".", 1)[-1].strip("'>")
            if name not in _ACTIVATIONS:
                raise TestbedError(f"{path}: unsupported activation_fn {value!r} in policy_kwargs")
            kwargs[key] = getattr(torch.nn, name)
        elif key == "features_extractor_class":
            name = str(value).rsplit(".", 1)[-1].strip("'>")
            classes = {"FlattenExtractor": FlattenExtractor, "NatureCNN": NatureCNN}
            if name not in classes:
                raise TestbedError(f"{path}: unsupported features_extractor_class {value!r} in policy_kwargs")
            kwargs[key] = classes[name]
        elif isinstance(value, str) and value.startswith("<"):
            raise TestbedError(f"{path}: unsupported policy_kwargs entry {key}={value!r}")
        else:
            kwargs[key] = value
    # CnnPolicy differs from MlpPolicy only by its default extractor, which the zip does not
    # name in readable form; the weights do.
    if "features_extractor_class" not in kwargs and any(".cnn." in k or k.startswith("cnn.") for k in state):
        kwargs["features_extractor_class"] = NatureCNN
    if family == "actor_critic" and "use_sde" in data:
        kwargs.setdefault("use_sde", bool(data["use_sde"]))
    return kwargs


def _constant_schedule(progress_remaining: float) -> float:
    del progress_remaining
    return 0.0


def load_sb3_model(path: str | pathlib.Path) -> SB3Model:
    """Rebuild the policy of a stable-baselines3 DQN, PPO or A2C model zip, safely.

    Raises:
        TestbedError: missing file, not a zip, missing or corrupt entries, members that declare
            or inflate to more than :mod:`testbed.safe_zip` reads (zip bombs), ``data`` JSON
            beyond :mod:`testbed.safe_json`'s limits, an algorithm or space this module does
            not serve, or weights that do not fit the network.
    """
    import gymnasium as gym
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.dqn.policies import DQNPolicy

    p = pathlib.Path(path)
    if not p.is_file():
        raise TestbedError(f"SB3 model file not found: {p}")
    if p.stat().st_size > safe_zip.MAX_ARCHIVE_BYTES:
        raise _fail(p, f"the file is larger than {safe_zip.MAX_ARCHIVE_BYTES} bytes")
    raw = p.read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = set(archive.namelist())
            missing = [n for n in ("data", "policy.pth") if n not in names]
            if missing:
                raise _fail(p, f"no {' or '.join(missing)} entry")
            # Declared sizes and compression ratios first, then reads that stop at the declared size.
            safe_zip.check_members(archive, where=str(p))
            data_bytes = safe_zip.read_member(archive, "data", where=str(p))
            policy_bytes = safe_zip.read_member(archive, "policy.pth", where=str(p))
    # RuntimeError: an encrypted entry; NotImplementedError: a compression method zipfile lacks.
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        UnicodeDecodeError,
        RuntimeError,
        NotImplementedError,
    ) as e:
        raise _fail(p, _first_line(e)) from None
    try:
        data = safe_json.loads(data_bytes, where="its 'data' entry")
    except TestbedError as e:
        raise _fail(p, str(e)) from None
    if not isinstance(data, dict):
        raise _fail(p, "'data' is not a JSON object")
    safe_zip.check_archive(policy_bytes, where=f"{p}: policy.pth")  # torch's format is a zip too
    try:
        state = torch.load(io.BytesIO(policy_bytes), map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors, unsafe globals, truncated files
        raise _fail(p, f"policy.pth is not a plain state dict ({_first_line(e)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(p, "policy.pth is not a state dict of tensors")

    cls: type[DQNPolicy] | type[ActorCriticPolicy]
    if any(k.startswith("q_net.") for k in state):
        family, algorithm, cls = "dqn", "dqn", DQNPolicy
    elif "action_net.weight" in state and "value_net.weight" in state:
        family, cls = "actor_critic", ActorCriticPolicy
        algorithm = "ppo" if "clip_range" in data else "a2c"
    else:
        module = (
            data.get("policy_class", {}).get("__module__", "?") if isinstance(data.get("policy_class"), dict) else "?"
        )
        raise TestbedError(f"{p}: unsupported SB3 model (policy from {module}); only DQN, PPO and A2C are served")
    observation_space = _space(data.get("observation_space"), "observation space", p)
    action_space = _space(data.get("action_space"), "action space", p)
    if not isinstance(action_space, gym.spaces.Discrete):
        raise TestbedError(f"{p}: only Discrete action spaces are served")
    kwargs = _policy_kwargs(data, family, state, p)
    try:
        policy = cls(observation_space, action_space, _constant_schedule, **kwargs)
        policy.load_state_dict(state)
    except Exception as e:
        raise _fail(p, f"weights do not fit a {cls.__name__} with {kwargs} ({_first_line(e)})") from None
    policy.set_training_mode(False)
    return SB3Model(
        path=p,
        algorithm=algorithm,
        policy=policy,
        observation_space=observation_space,
        action_space=action_space,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


class SB3Expert(Expert):
    """Drives with a stable-baselines3 model's greedy action, from the observation."""

    name = "sb3"

    def __init__(self, path: str | pathlib.Path) -> None:
        self.model = load_sb3_model(path)
        self._checked: weakref.WeakSet[Any] = weakref.WeakSet()
        """Envs already checked (weakly held: an env freed and another made at its address is
        checked again; an id would pass it unchecked)."""

    def check_spaces(self, observation_space: Any, action_space: Any, *, where: str = "the environment") -> None:
        """Fail unless the model's spaces match (Box: shape and dtype; Discrete: size and start).

        Raises:
            TestbedError: one line naming both spaces.
        """
        for what, ours, theirs in (
            ("observation", self.model.observation_space, observation_space),
            ("action", self.model.action_space, action_space),
        ):
            if describe_space(ours) != describe_space(theirs):
                raise TestbedError(
                    f"SB3 model {self.model.path} expects {what} space {describe_space(ours)} but {where} has "
                    f"{describe_space(theirs)}"
                )

    def check_scenario(self, scenario: Any) -> None:
        """Fail, before any simulation, unless the model fits ``scenario`` (spaces and, for a
        model from ``testbed train-expert``, observation config).

        Raises:
            TestbedError: one line naming what differs.
        """
        spaces = describe_spaces(scenario)
        self.check_spaces(
            space_from_dict(spaces["observation_space"]),
            space_from_dict(spaces["action_space"]),
            where=f"scenario {scenario.name!r}",
        )
        observation = scenario.to_dict()["config"].get("observation")
        self._check_observation_config(observation, where=f"scenario {scenario.name!r}")

    def _check_env(self, env: Any) -> None:
        if env in self._checked:
            return
        name = getattr(getattr(env, "spec", None), "id", None) or type(env).__name__
        self.check_spaces(env.observation_space, env.action_space, where=f"env {name}")
        observation = jsonable(dict(env.config.get("observation", {}))) if hasattr(env, "config") else None
        self._check_observation_config(observation, where="the env")
        self._checked.add(env)

    def _check_observation_config(self, ours: Any, *, where: str) -> None:
        """If ``testbed train-expert`` wrote this model, its observation config must match
        ``ours`` too: same shape is not enough (relative vs absolute Kinematics)."""
        meta_path = self.model.path.parent / "metadata.json"
        try:
            meta = safe_json.read_file(meta_path, what="SB3 model metadata") if meta_path.is_file() else None
        except TestbedError:  # unreadable (or hostile) metadata: as if there were none
            meta = None
        if not isinstance(meta, dict) or meta.get("model_file") != self.model.path.name:
            return
        theirs = meta.get("scenario", {}).get("config", {}).get("observation")
        if theirs is not None and ours is not None and theirs != ours:
            raise TestbedError(
                f"SB3 model {self.model.path} was trained with observation config {theirs}, but {where} uses {ours}"
            )

    def reset(self, env: Any, seed: int) -> None:
        self._check_env(env)

    def act(self, obs: Any, env: Any) -> int:
        self._check_env(env)
        # The observation the env would return now (for Kinematics with the default "sorted"
        # order this reads the simulator and touches no RNG).
        observed = env.observation_type.observe()
        action, _ = self.model.policy.predict(observed, deterministic=True)
        return int(action)

    def params(self) -> dict[str, Any]:
        return {"path": str(self.model.path), "algorithm": self.model.algorithm, "sha256": self.model.sha256}


__all__ = ["SB3Expert", "SB3Model", "load_sb3_model"]
