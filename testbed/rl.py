"""Train reinforcement-learning experts with stable-baselines3.

``train_expert`` trains SB3's DQN or PPO on a scenario's environment (the Kinematics
observation the clones see) and writes a run directory:

- ``model.zip`` — SB3's own ``model.save`` format, served by ``expert:sb3:DIR/model.zip``
  (:mod:`testbed.experts.sb3` loads it without unpickling anything);
- ``training_curve.csv`` — one row per finished training episode: ``episode``, ``seed``,
  ``timesteps`` (total environment steps when it ended), ``return``, ``length``, ``crashed``;
- ``metadata.json`` — scenario, spaces, algorithm and hyperparameters, seeds, wall time,
  provenance (package versions, git commit).

Training episodes are seeded explicitly from the RL-training range of the seed protocol
(:data:`testbed.seeds.RL`): episode ``k`` resets the env with seed
``RL.first + (seed + k) mod RL.size``, so training never sees a demonstration, development or
test seed.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import pandas as pd

from testbed.errors import TestbedError
from testbed.limits import check_net_arch, check_option
from testbed.outputs import atomic_output_dir, write_json
from testbed.progress import enabled as progress_enabled
from testbed.provenance import provenance
from testbed.runtime import set_torch_threads
from testbed.scenarios import Scenario, make_env
from testbed.seeds import RL
from testbed.spaces import space_to_dict

MODEL_FILE = "model.zip"
CURVE_FILE = "training_curve.csv"
METADATA = "metadata.json"

TRAIN_SEED_LIMIT = RL.size
"""Run seeds (``--seed``) are below this; training env seeds are ``RL.first`` onwards."""

Algo = Literal["dqn", "ppo"]

# highway-env's documented DQN setting for highway-fast (scripts/sb3_highway_dqn.py).
DQN_DEFAULTS: dict[str, Any] = {
    "policy_kwargs": {"net_arch": [256, 256]},
    "learning_rate": 5e-4,
    "buffer_size": 15_000,
    "learning_starts": 200,
    "batch_size": 32,
    "gamma": 0.8,
    "train_freq": 1,
    "gradient_steps": 1,
    "target_update_interval": 50,
    "exploration_fraction": 0.7,
}
# The analogous PPO setting of highway-env's docs (scripts/sb3_highway_ppo.py), with one
# environment instead of six: a rollout of 512 steps (~17 episodes) per update.
PPO_DEFAULTS: dict[str, Any] = {
    "policy_kwargs": {"net_arch": {"pi": [256, 256], "vf": [256, 256]}},
    "learning_rate": 5e-4,
    "n_steps": 512,
    "batch_size": 64,
    "n_epochs": 10,
    "gamma": 0.8,
}


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """What to train and how."""

    algo: Algo = "dqn"
    """``dqn`` or ``ppo``."""
    n_timesteps: int = 20_000
    """Environment steps (decisions) to train for."""
    seed: int = 0
    """Seeds the algorithm (network initialisation, exploration, replay sampling) and the
    first training episode's env; must be in [0, 10000)."""
    learning_rate: float | None = None
    """Adam learning rate; ``None`` takes the algorithm's default above."""
    gamma: float | None = None
    """Discount factor; ``None`` takes the algorithm's default (0.8)."""
    net_arch: tuple[int, ...] | None = None
    """Hidden layers (for PPO: of both policy and value networks); ``None``: 256, 256."""
    torch_threads: int = 1
    """Torch intra-op threads (1 is fastest for small MLPs on few cores)."""

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values."""
        if self.algo not in ("dqn", "ppo"):
            raise TestbedError(f"--algo must be dqn or ppo, got {self.algo!r}")
        check_option("timesteps", self.n_timesteps)
        if not 0 <= self.seed < TRAIN_SEED_LIMIT:
            raise TestbedError(
                f"--seed must be in [0, {TRAIN_SEED_LIMIT}) (training episodes use the RL seed range {RL.describe()}), "
                f"got {self.seed}"
            )
        if self.learning_rate is not None and (not np.isfinite(self.learning_rate) or self.learning_rate <= 0):
            raise TestbedError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if self.gamma is not None and not 0.0 <= self.gamma <= 1.0:
            raise TestbedError(f"--gamma must be in [0, 1], got {self.gamma}")
        if self.net_arch is not None and (not self.net_arch or any(int(h) < 1 for h in self.net_arch)):
            raise TestbedError(f"--net-arch needs positive layer sizes, got {list(self.net_arch)}")
        if self.net_arch is not None:
            check_net_arch([int(h) for h in self.net_arch])
        # Out of bounds torch's OpenMP pool crashes the process (testbed.limits).
        check_option("torch_threads", self.torch_threads)

    def hyperparameters(self) -> dict[str, Any]:
        """Keyword arguments for the SB3 algorithm's constructor (JSON-serialisable)."""
        params = dict(DQN_DEFAULTS if self.algo == "dqn" else PPO_DEFAULTS)
        params["policy_kwargs"] = dict(params["policy_kwargs"])
        if self.learning_rate is not None:
            params["learning_rate"] = float(self.learning_rate)
        if self.gamma is not None:
            params["gamma"] = float(self.gamma)
        if self.net_arch is not None:
            arch = [int(h) for h in self.net_arch]
            params["policy_kwargs"]["net_arch"] = arch if self.algo == "dqn" else {"pi": arch, "vf": list(arch)}
        return params


def episode_seed(seed: int, episode: int) -> int:
    """Env seed of training episode ``episode`` (0-based) of a run seeded ``seed``."""
    return RL.first + (seed + episode) % RL.size


class SeededEpisodes(gym.Wrapper):
    """Reset every episode with the next seed of :func:`episode_seed` (whatever seed the
    caller passes) and record each finished episode's return, length and crash."""

    def __init__(self, env: gym.Env, seed: int) -> None:
        super().__init__(env)
        self._seed = seed
        self._episode = 0
        self._timesteps = 0
        self._current: dict[str, Any] | None = None
        self.records: list[dict[str, Any]] = []
        """One dict per finished episode (the rows of ``training_curve.csv``)."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        del seed  # the schedule decides
        env_seed = episode_seed(self._seed, self._episode)
        self._episode += 1
        self._current = {"episode": self._episode - 1, "seed": env_seed, "return": 0.0, "length": 0, "crashed": False}
        return self.env.reset(seed=env_seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._timesteps += 1
        current = self._current
        if current is not None:
            current["return"] += float(reward)
            current["length"] += 1
            current["crashed"] = bool(info.get("crashed", False))
            if terminated or truncated:
                self.records.append({**current, "timesteps": self._timesteps})
                self._current = None
        return obs, reward, terminated, truncated, info


@dataclasses.dataclass
class RLResult:
    """What :func:`train_expert` returns."""

    model: Any
    """The trained SB3 algorithm (``DQN`` or ``PPO``)."""
    curve: pd.DataFrame
    """One row per finished training episode (columns of ``training_curve.csv``)."""
    wall_time_s: float
    """Training wall time [s]."""


def train_expert(scenario: Scenario, config: RLConfig, *, progress: bool = False) -> RLResult:
    """Train an SB3 agent on ``scenario``'s environment.

    Same scenario and config give the same model and curve (single environment, seeded
    algorithm, seeded episodes, one torch thread, CPU).

    Raises:
        TestbedError: invalid config.
    """
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import DummyVecEnv

    config.validate()
    set_torch_threads(config.torch_threads)
    recorder = SeededEpisodes(make_env(scenario), config.seed)
    venv = DummyVecEnv([lambda: recorder])
    cls = DQN if config.algo == "dqn" else PPO
    model = cls("MlpPolicy", venv, seed=config.seed, device="cpu", verbose=0, **config.hyperparameters())
    # A logger with no output: SB3 would otherwise make an empty /tmp/SB3-<time> folder per run.
    model.set_logger(Logger(folder=None, output_formats=[]))
    start = time.perf_counter()
    model.learn(total_timesteps=config.n_timesteps, progress_bar=progress and progress_enabled())
    wall = time.perf_counter() - start
    venv.close()
    columns = ["episode", "seed", "timesteps", "return", "length", "crashed"]
    curve = pd.DataFrame(recorder.records, columns=columns)
    return RLResult(model=model, curve=curve, wall_time_s=wall)


def save_expert(
    path: str | pathlib.Path, result: RLResult, *, scenario: Scenario, config: RLConfig, overwrite: bool = False
) -> pathlib.Path:
    """Write ``model.zip``, ``training_curve.csv`` and ``metadata.json`` atomically."""
    import hashlib

    curve = result.curve
    last = curve.tail(100)
    metadata = {
        "algorithm": config.algo,
        "library": "stable-baselines3",
        "policy": "MlpPolicy",
        "model_file": MODEL_FILE,
        "config": {
            **dataclasses.asdict(config),
            "net_arch": None if config.net_arch is None else list(config.net_arch),
        },
        "hyperparameters": config.hyperparameters(),
        "n_timesteps": int(config.n_timesteps),
        "wall_time_s": round(result.wall_time_s, 1),
        "seeds": {
            "algorithm": config.seed,
            "env_rule": f"episode k resets with seed {RL.first} + (seed + k) mod {RL.size}",
            "range": RL.record(),
            "n_episodes": len(curve),
            "first": int(curve["seed"].iloc[0]) if len(curve) else None,
            "last": int(curve["seed"].iloc[-1]) if len(curve) else None,
        },
        "scenario": scenario.to_dict(),
        "observation_space": space_to_dict(result.model.observation_space),
        "action_space": space_to_dict(result.model.action_space),
        "final": {
            "n_episodes": int(len(last)),
            "mean_return": float(last["return"].mean()) if len(last) else None,
            "crash_rate": float(last["crashed"].mean()) if len(last) else None,
            "note": "over the last (up to) 100 training episodes, with exploration",
        },
        "provenance": provenance(),
    }
    with atomic_output_dir(path, overwrite=overwrite) as tmp:
        result.model.save(tmp / MODEL_FILE)
        metadata["model_sha256"] = hashlib.sha256((tmp / MODEL_FILE).read_bytes()).hexdigest()
        curve.to_csv(tmp / CURVE_FILE, index=False)
        write_json(tmp / METADATA, metadata)
    return pathlib.Path(path)


__all__ = [
    "RLConfig",
    "RLResult",
    "train_expert",
    "save_expert",
    "episode_seed",
    "SeededEpisodes",
    "DQN_DEFAULTS",
    "PPO_DEFAULTS",
]
