"""Behavioral cloning through imitation's trainer, and safe policy loading.

Training uses ``imitation.algorithms.bc.BC`` unchanged; this module adds an episode-level
validation split, a per-epoch log (loss, train and validation accuracy), deliberate torch
threading, and a policy file that loads under torch >= 2.6.

A run directory holds ``policy.pt`` (stable-baselines3's ``policy.save`` format:
``{"state_dict", "data"}``), ``train_log.csv`` and ``metadata.json``.

Loading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` with an explicit
allow-list of the few classes a saved policy's constructor arguments need. SB3 2.2.1's
``policy.load`` and imitation's ``bc.reconstruct_policy`` call ``torch.load`` without that and
fail under torch's ``weights_only`` default.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import warnings
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import pandas as pd

from testbed.demos import Demonstrations, check_spaces
from testbed.errors import TestbedError
from testbed.outputs import atomic_output_dir, read_json, write_json
from testbed.provenance import provenance
from testbed.scenarios import Scenario, space_from_dict, space_to_dict

POLICY_FILE = "policy.pt"
LOG_FILE = "train_log.csv"
METADATA = "metadata.json"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Behavioral-cloning hyperparameters."""

    n_epochs: int = 100
    """Passes over the training split (30 underfits 100 highway-fast episodes badly)."""
    batch_size: int = 64
    """Samples per gradient step."""
    net_arch: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the policy MLP (shared by policy and value heads; the value
    head is unused by BC)."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    l2_weight: float = 0.0
    """Weight of the L2 penalty on the policy's parameters (imitation's ``l2_weight``)."""
    ent_weight: float = 1e-3
    """Weight of the entropy bonus (imitation's ``ent_weight``)."""
    val_fraction: float = 0.2
    """Fraction of *episodes* held out for validation accuracy (0 disables it)."""
    seed: int = 0
    """Seeds torch (initialisation, batch order) and the episode split."""
    torch_threads: int = 1
    """Torch intra-op threads. On 2 cores the default of 2 makes a small MLP ~10x slower."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, recorded with every run."""
        return {**dataclasses.asdict(self), "net_arch": list(self.net_arch)}

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values."""
        if self.n_epochs < 1:
            raise TestbedError(f"--epochs must be at least 1, got {self.n_epochs}")
        if self.batch_size < 1:
            raise TestbedError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.net_arch or any(int(h) < 1 for h in self.net_arch):
            raise TestbedError(f"--net-arch needs positive layer sizes, got {list(self.net_arch)}")
        if not np.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise TestbedError(f"--learning-rate must be > 0, got {self.learning_rate}")
        for name in ("l2_weight", "ent_weight"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise TestbedError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise TestbedError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.torch_threads < 1:
            raise TestbedError(f"--torch-threads must be at least 1, got {self.torch_threads}")


def parse_net_arch(text: str) -> tuple[int, ...]:
    """``"64,64"`` -> ``(64, 64)``."""
    try:
        arch = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise TestbedError(f"--net-arch expects comma-separated integers like 64,64, got {text!r}") from None
    if not arch or any(h < 1 for h in arch):
        raise TestbedError(f"--net-arch expects positive integers like 64,64, got {text!r}")
    return arch


def split_episodes(n_episodes: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of training and validation episodes (validation is never empty when
    ``val_fraction > 0`` and there are at least two episodes)."""
    order = np.random.default_rng(seed).permutation(n_episodes)
    n_val = int(round(val_fraction * n_episodes))
    if val_fraction > 0 and n_episodes >= 2:
        n_val = min(max(n_val, 1), n_episodes - 1)
    else:
        n_val = 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_bc` returns."""

    policy: Any
    """The trained ``ActorCriticPolicy``."""
    log: pd.DataFrame
    """One row per epoch: ``epoch``, ``train/loss``, ``train/accuracy``, ``val/loss``,
    ``val/accuracy`` (NaN without a validation split). For a Box action space the accuracy
    columns are replaced by ``train/action_mae`` and ``val/action_mae`` (see
    :func:`evaluate_fit`)."""
    train_episodes: list[int]
    """Indices (into the demonstrations) of training episodes."""
    val_episodes: list[int]
    """Indices of validation episodes."""


def _stack(trajectories: Sequence[Any], indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    if not indices:
        return np.zeros((0,)), np.zeros((0,), dtype=np.int64)
    obs = np.concatenate([np.asarray(trajectories[i].obs[:-1]) for i in indices])
    acts = np.concatenate([np.asarray(trajectories[i].acts) for i in indices])
    return obs, acts


def zero_schedule(progress_remaining: float) -> float:
    """SB3 learning-rate schedule placeholder stored in policy files (BC has its own optimiser)."""
    del progress_remaining
    return 0.0


def observation_statistics(observations: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-feature mean and std of a batch of observations, flattened.

    The std is floored at 1e-3; a feature that never changed in the data gets std 1, so
    that a value it takes only later (a lidar ray that always read the full range, an
    occupancy cell never occupied) enters the network shifted, not multiplied by 1000."""
    flat = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)
    std = flat.std(axis=0)
    return flat.mean(axis=0).tolist(), np.where(std == 0, 1.0, np.maximum(std, 1e-3)).tolist()


def is_image_space(space: Any) -> bool:
    """Whether observations are uint8 images in [0, 255] (the camera sensor), which go
    through a CNN instead of the standardised MLP input."""
    from stable_baselines3.common.preprocessing import is_image_space as sb3_is_image_space

    return sb3_is_image_space(space, check_channels=False)


def make_policy(
    observation_space: Any,
    action_space: Any,
    config: TrainConfig,
    *,
    obs_mean: list[float] | None = None,
    obs_std: list[float] | None = None,
) -> Any:
    """A fresh SB3 ``ActorCriticPolicy`` for BC: an MLP on standardised inputs, or, for image
    observations, an MLP on the features of SB3's ``NatureCNN`` (SB3 divides the uint8
    pixels by 255 before the CNN; the mean and std are then unused)."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    from testbed.networks import CNN_FEATURES, StandardizedFlattenExtractor

    if is_image_space(observation_space):
        from stable_baselines3.common.torch_layers import NatureCNN

        extractor: dict[str, Any] = {
            "features_extractor_class": NatureCNN,
            "features_extractor_kwargs": {"features_dim": CNN_FEATURES},
        }
    else:
        extractor = {
            "features_extractor_class": StandardizedFlattenExtractor,
            "features_extractor_kwargs": {"mean": obs_mean, "std": obs_std},
        }
    return ActorCriticPolicy(
        observation_space=observation_space,
        action_space=action_space,
        lr_schedule=zero_schedule,
        net_arch=list(config.net_arch),
        **extractor,
    )


def set_observation_statistics(policy: Any, mean: list[float], std: list[float]) -> None:
    """Set a policy's input standardisation (buffers and the constructor record that
    :func:`save_policy` stores); a no-op for image policies, which have none."""
    if not hasattr(policy.features_extractor, "set_statistics"):
        return
    policy.features_extractor.set_statistics(mean, std)
    policy.features_extractor_kwargs = {"mean": list(mean), "std": list(std)}


def save_policy(policy: Any, path: str | pathlib.Path) -> None:
    """Save like SB3's ``policy.save`` (``{"state_dict", "data"}``), except that the stored
    schedule is :func:`zero_schedule`: SB3 stores its static ``_dummy_schedule``, which
    pickles through ``builtins.getattr`` — a global no safe loader should allow."""
    import torch

    data = policy._get_constructor_parameters()
    data["lr_schedule"] = zero_schedule
    # Fresh spaces: one that has been sampled (NatureCNN samples the observation space to
    # size its linear layer) pickles its numpy Generator, which the safe loader refuses.
    for key in ("observation_space", "action_space"):
        data[key] = space_from_dict(space_to_dict(data[key]))
    torch.save({"state_dict": policy.state_dict(), "data": data}, str(path))


def make_bc_trainer(policy: Any, config: TrainConfig, *, log_dir: str, demonstrations: Any = None) -> Any:
    """imitation's ``BC`` trainer for ``policy`` with ``config``'s hyperparameters, on the
    CPU, logging silently into ``log_dir``."""
    from imitation.algorithms import bc
    from imitation.util import logger as im_logger

    return bc.BC(
        observation_space=policy.observation_space,
        action_space=policy.action_space,
        rng=np.random.default_rng(config.seed),
        policy=policy,
        demonstrations=demonstrations,
        batch_size=config.batch_size,
        optimizer_kwargs={"lr": config.learning_rate},
        ent_weight=config.ent_weight,
        l2_weight=config.l2_weight,
        device="cpu",
        custom_logger=im_logger.configure(log_dir, format_strs=[]),
    )


def set_torch_threads(n: int) -> None:
    """Set torch's intra-op threads (and inter-op, the first time it is possible)."""
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # can only be set once, before any inter-op work
        pass


def train_bc(demos: Demonstrations, config: TrainConfig, *, progress: bool = False) -> TrainResult:
    """Clone the demonstrations with imitation's BC trainer.

    Args:
        demos: expert episodes.
        config: hyperparameters.
        progress: show imitation's progress bar.

    Raises:
        TestbedError: invalid config, or too little data for one batch.
    """
    import torch
    from imitation.data import rollout as im_rollout

    config.validate()
    set_torch_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    train_idx, val_idx = split_episodes(len(demos.trajectories), config.val_fraction, config.seed)
    train_trajs = [demos.trajectories[i] for i in train_idx]
    transitions = im_rollout.flatten_trajectories(train_trajs)
    if len(transitions) < config.batch_size:
        raise TestbedError(
            f"only {len(transitions)} training transitions, fewer than --batch-size {config.batch_size}; "
            "collect more episodes or lower the batch size"
        )
    obs_space = space_from_dict(demos.metadata["observation_space"])
    act_space = space_from_dict(demos.metadata["action_space"])
    train_obs, train_acts = _stack(demos.trajectories, train_idx)
    mean, std = (None, None) if is_image_space(obs_space) else observation_statistics(train_obs)  # training only: no leak
    policy = make_policy(obs_space, act_space, config, obs_mean=mean, obs_std=std)
    val_obs, val_acts = _stack(demos.trajectories, val_idx)
    fit = "accuracy" if not isinstance(act_space, gym.spaces.Box) else "action_mae"
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="testbed-bc-log-") as log_dir:
        trainer = make_bc_trainer(policy, config, log_dir=log_dir, demonstrations=transitions)

        def on_epoch_end() -> None:
            train_loss, train_acc = evaluate_fit(trainer, train_obs, train_acts)
            val_loss, val_acc = evaluate_fit(trainer, val_obs, val_acts)
            rows.append(
                {
                    "epoch": len(rows) + 1,
                    "train/loss": train_loss,
                    f"train/{fit}": train_acc,
                    "val/loss": val_loss,
                    f"val/{fit}": val_acc,
                }
            )

        with warnings.catch_warnings():
            # imitation 1.0.1 logs float(loss) of a tensor that still requires grad.
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
            trainer.train(
                n_epochs=config.n_epochs, on_epoch_end=on_epoch_end, progress_bar=progress, log_interval=10**9
            )
    policy.set_training_mode(False)
    return TrainResult(policy=policy, log=pd.DataFrame(rows), train_episodes=train_idx, val_episodes=val_idx)


def evaluate_fit(trainer: Any, obs: np.ndarray, acts: np.ndarray) -> tuple[float, float]:
    """BC loss (imitation's, with its entropy and L2 terms) and action accuracy of the
    trainer's policy on the given samples; NaNs when there are none.

    For a Box action space accuracy means nothing; the second value is then the mean
    absolute error of the policy's deterministic action (the Gaussian mean, clipped to the
    Box) against the recorded one, averaged over samples and action components, in action
    units (highway-env's continuous actions span [-1, 1])."""
    import torch

    if len(acts) == 0:
        return float("nan"), float("nan")
    policy = trainer.policy
    was_training = policy.training
    policy.set_training_mode(False)
    with torch.no_grad():
        loss = trainer.loss_calculator(policy, obs, acts).loss.item()
        predicted = policy._predict(torch.as_tensor(obs), deterministic=True).cpu().numpy()
    policy.set_training_mode(was_training)
    if isinstance(policy.action_space, gym.spaces.Box):
        predicted = np.clip(predicted, policy.action_space.low, policy.action_space.high)
        return float(loss), float(np.mean(np.abs(predicted - acts)))
    return float(loss), float(np.mean(predicted == acts))


def action_accuracy(policy: Any, trajectories: Sequence[Any]) -> float:
    """Fraction of (observation, action) pairs where the policy's most likely action equals
    the recorded one (open-loop accuracy)."""
    import torch

    obs, acts = _stack(trajectories, list(range(len(trajectories))))
    with torch.no_grad():
        predicted = policy._predict(torch.as_tensor(obs), deterministic=True).cpu().numpy()
    return float(np.mean(predicted == acts))


def save_clone(
    path: str | pathlib.Path,
    result: TrainResult,
    *,
    demos: Demonstrations,
    demos_path: str,
    config: TrainConfig,
    algorithm: str = "bc",
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write a run directory (policy, training log, metadata) atomically.

    Args:
        path: run directory to create.
        result: what the trainer returned.
        demos: the data trained on; for BC, ``result``'s episode indices refer to it.
        demos_path: where that data lives (recorded only).
        config: BC hyperparameters.
        algorithm: ``bc`` or ``dagger``.
        extra: more metadata (e.g. the DAgger schedule).
        overwrite: replace an existing directory.
    """
    if algorithm == "bc":
        train_seeds = [demos.seeds[i] for i in result.train_episodes]
        val_seeds = [demos.seeds[i] for i in result.val_episodes]
    else:  # the data's own seed record (DAgger: round seeds)
        train_seeds, val_seeds = list(demos.seeds), []
    metadata = {
        "algorithm": algorithm,
        "config": config.to_dict(),
        **(extra or {}),
        "demos": {
            "path": str(demos_path),
            "expert": demos.metadata.get("expert"),
            "n_episodes": len(demos.trajectories),
            "n_transitions": demos.n_transitions,
            "train_seeds": train_seeds,
            "val_seeds": val_seeds,
        },
        "scenario": demos.metadata["scenario"],
        "observation_space": demos.metadata["observation_space"],
        "action_space": demos.metadata["action_space"],
        "final": {k: (None if pd.isna(v) else float(v)) for k, v in result.log.iloc[-1].items()},
        "provenance": provenance(),
    }
    with atomic_output_dir(path, overwrite=overwrite) as tmp:
        save_policy(result.policy, tmp / POLICY_FILE)
        result.log.to_csv(tmp / LOG_FILE, index=False)
        write_json(tmp / METADATA, metadata)
    return pathlib.Path(path)


def _safe_globals() -> list[Any]:
    """The classes and functions a saved ``ActorCriticPolicy``'s constructor data refers to."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common import torch_layers

    from testbed.networks import StandardizedFlattenExtractor

    numpy_dtypes = [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32", "uint8", "bool")]
    return [
        gym.spaces.Box,
        gym.spaces.Discrete,
        np.ndarray,
        np.dtype,
        *numpy_dtypes,
        np._core.multiarray._reconstruct,
        np._core.multiarray.scalar,
        torch.nn.Tanh,
        torch.nn.ReLU,
        torch.optim.Adam,
        torch_layers.FlattenExtractor,
        torch_layers.NatureCNN,
        StandardizedFlattenExtractor,
        zero_schedule,
    ]


def load_policy(path: str | pathlib.Path) -> Any:
    """Load an SB3 ``ActorCriticPolicy`` saved with ``policy.save`` — safely.

    Uses ``torch.load(weights_only=True)`` with the allow-list of :func:`_safe_globals`, so a
    file that would need any other class to unpickle is rejected, never executed.

    Raises:
        TestbedError: the file is missing, not a policy, or needs classes outside the list.
    """
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    p = pathlib.Path(path)
    if not p.is_file():
        raise TestbedError(f"policy file not found: {p}")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            saved = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip/unsafe-global errors all mean "not a policy we can load"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TestbedError(f"{p} is not a loadable policy file: {reason}") from None
    if not isinstance(saved, dict) or "state_dict" not in saved or "data" not in saved:
        raise TestbedError(f"{p} is not a policy file (expected SB3's {{'state_dict', 'data'}})")
    try:
        policy = ActorCriticPolicy(**saved["data"])
        policy.load_state_dict(saved["state_dict"])
    except Exception as e:
        raise TestbedError(f"{p} does not hold a valid ActorCriticPolicy: {str(e).splitlines()[0]}") from None
    policy.set_training_mode(False)
    return policy


def read_clone_metadata(run_dir: str | pathlib.Path) -> dict[str, Any]:
    """The ``metadata.json`` of a run directory."""
    meta = read_json(pathlib.Path(run_dir) / METADATA, what="clone metadata")
    if not isinstance(meta, dict) or "observation_space" not in meta or "scenario" not in meta:
        raise TestbedError(f"clone metadata is missing fields ({pathlib.Path(run_dir) / METADATA})")
    return meta


def load_clone(run_dir: str | pathlib.Path, *, scenario: Scenario | None = None) -> Any:
    """Load a run directory's policy, checking it fits ``scenario``.

    Raises:
        TestbedError: missing/corrupt files or mismatched spaces.
    """
    meta = read_clone_metadata(run_dir)
    if scenario is not None:
        check_spaces(meta, scenario, what=f"the clone at {run_dir}")
    set_torch_threads(1)
    return load_policy(pathlib.Path(run_dir) / POLICY_FILE)


__all__ = [
    "TrainConfig", "TrainResult", "train_bc", "save_clone", "load_policy", "load_clone",
    "read_clone_metadata", "parse_net_arch", "split_episodes", "action_accuracy",
]
