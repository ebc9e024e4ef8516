"""Behavioral cloning through imitation's trainer.

Training uses ``imitation.algorithms.bc.BC`` unchanged; this module adds an episode-level
validation split, a per-epoch log (loss, train and validation accuracy) and deliberate torch
threading. The run directory it writes (policy file, log, metadata) is :mod:`testbed.clone_io`'s.

Progress is one bar over epochs (on a terminal only, :mod:`testbed.progress`), not imitation's
batch bar, which also prints a line per epoch. TensorBoard logging is opt-in: inside
:func:`tensorboard_logging`, every trainer :func:`make_bc_trainer` builds (BC's and DAgger's)
writes imitation's ``bc/*`` batch statistics as event files (BC: at each epoch's first batch;
inside DAgger: at each round's first batch and every 500 batches, imitation's default), and
:func:`train_bc` adds its own per-epoch ``train/*`` and ``val/*`` evaluations.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import pathlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from testbed.clone_io import LOG_FILE, METADATA, POLICY_FILE, is_image_space, make_policy, save_policy
from testbed.demos import Demonstrations
from testbed.errors import TestbedError
from testbed.outputs import atomic_output_dir, write_json
from testbed.progress import Bar
from testbed.provenance import provenance
from testbed.runtime import set_torch_threads
from testbed.spaces import space_from_dict


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
    eval_every: int = 10
    """Epochs between the log's full train and validation evaluations (the last epoch is always
    evaluated; 1 logs every epoch). Evaluating never changes the weights, only the time: every
    epoch it costs as much as training itself."""

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
        if self.eval_every < 1:
            raise TestbedError(f"--eval-every must be at least 1, got {self.eval_every}")


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
    """One row per evaluated epoch (every ``eval_every``-th and the last): ``epoch``,
    ``train/loss``, ``train/accuracy``, ``val/loss``, ``val/accuracy`` (NaN without a validation
    split). For a Box action space the accuracy columns are replaced by ``train/action_mae``
    and ``val/action_mae`` (see :func:`evaluate_fit`)."""
    train_episodes: list[int]
    """Indices (into the demonstrations) of training episodes."""
    val_episodes: list[int]
    """Indices of validation episodes."""


def stack_transitions(trajectories: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """All (observation, action) pairs of ``trajectories``, stacked: ``(obs, acts)``."""
    return _stack(trajectories, list(range(len(trajectories))))


def _stack(trajectories: Sequence[Any], indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    if not indices:
        return np.zeros((0,)), np.zeros((0,), dtype=np.int64)
    obs = np.concatenate([np.asarray(trajectories[i].obs[:-1]) for i in indices])
    acts = np.concatenate([np.asarray(trajectories[i].acts) for i in indices])
    return obs, acts


def observation_statistics(observations: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-feature mean and std of a batch of observations, flattened.

    The std is floored at 1e-3; a feature that never changed in the data gets std 1, so
    that a value it takes only later (a lidar ray that always read the full range, an
    occupancy cell never occupied) enters the network shifted, not multiplied by 1000."""
    flat = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)
    std = flat.std(axis=0)
    return flat.mean(axis=0).tolist(), np.where(std == 0, 1.0, np.maximum(std, 1e-3)).tolist()


def set_observation_statistics(policy: Any, mean: list[float], std: list[float]) -> None:
    """Set a policy's input standardisation (buffers and the constructor record that
    :func:`save_policy` stores); a no-op for image policies, which have none."""
    if not hasattr(policy.features_extractor, "set_statistics"):
        return
    policy.features_extractor.set_statistics(mean, std)
    policy.features_extractor_kwargs = {"mean": list(mean), "std": list(std)}


TENSORBOARD_DIR = "tensorboard"
"""Where a run directory keeps its TensorBoard event files (``testbed train --tensorboard``)."""


@dataclasses.dataclass
class _TensorBoardRun:
    folder: pathlib.Path
    loggers: list[Any] = dataclasses.field(default_factory=list)


_TENSORBOARD: contextvars.ContextVar[_TensorBoardRun | None] = contextvars.ContextVar("tensorboard", default=None)


def check_tensorboard() -> None:
    """Raise :class:`TestbedError` (with the install command) if TensorBoard logging cannot work."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise TestbedError("--tensorboard needs the tensorboard package: pip install tensorboard") from None


@contextlib.contextmanager
def tensorboard_logging(folder: str | pathlib.Path) -> Iterator[pathlib.Path]:
    """Within the block, BC trainers built by :func:`make_bc_trainer` log to TensorBoard
    event files under ``folder`` (through imitation's logger, ``format_strs=["tensorboard"]``);
    their writers are closed when the block ends. Logging never changes the weights.

    Raises:
        TestbedError: tensorboard is not installed.
    """
    check_tensorboard()
    run = _TensorBoardRun(pathlib.Path(folder))
    run.folder.mkdir(parents=True, exist_ok=True)
    token = _TENSORBOARD.set(run)
    try:
        yield run.folder
    finally:
        _TENSORBOARD.reset(token)
        for logger in run.loggers:
            logger.close()


def tensorboard_scalars(folder: str | pathlib.Path, log: pd.DataFrame, *, step: str, prefix: str) -> None:
    """Write every numeric column of ``log`` (one row per step) as TensorBoard scalars
    ``PREFIX/COLUMN`` at the step in column ``step`` (e.g. DAgger's per-round table)."""
    check_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    try:
        for _, row in log.iterrows():
            for column, value in row.items():
                if column != step and isinstance(value, int | float | np.number) and not pd.isna(value):
                    writer.add_scalar(f"{prefix}/{column}", float(value), int(row[step]))
    finally:
        writer.close()


def make_bc_trainer(policy: Any, config: TrainConfig, *, log_dir: str, demonstrations: Any = None) -> Any:
    """imitation's ``BC`` trainer for ``policy`` with ``config``'s hyperparameters, on the
    CPU, logging silently into ``log_dir`` — or, inside :func:`tensorboard_logging`, to
    TensorBoard event files in that block's folder."""
    from imitation.algorithms import bc
    from imitation.util import logger as im_logger

    tensorboard = _TENSORBOARD.get()
    if tensorboard is None:
        custom_logger = im_logger.configure(log_dir, format_strs=[])
    else:
        custom_logger = im_logger.configure(tensorboard.folder, format_strs=["tensorboard"])
        tensorboard.loggers.append(custom_logger)

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
        custom_logger=custom_logger,
    )


def train_bc(demos: Demonstrations, config: TrainConfig, *, progress: bool = False) -> TrainResult:
    """Clone the demonstrations with imitation's BC trainer.

    Args:
        demos: expert episodes.
        config: hyperparameters.
        progress: show one bar over the epochs (on a terminal only: :mod:`testbed.progress`).

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
    obs_space = space_from_dict(demos.metadata.observation_space)
    act_space = space_from_dict(demos.metadata.action_space)
    train_obs, train_acts = _stack(demos.trajectories, train_idx)
    mean, std = (
        (None, None) if is_image_space(obs_space) else observation_statistics(train_obs)
    )  # training only: no leak
    policy = make_policy(obs_space, act_space, config.net_arch, obs_mean=mean, obs_std=std)
    val_obs, val_acts = _stack(demos.trajectories, val_idx)
    fit = "accuracy" if not isinstance(act_space, gym.spaces.Box) else "action_mae"
    rows: list[dict[str, float]] = []
    tensorboard = _TENSORBOARD.get() is not None
    with (
        tempfile.TemporaryDirectory(prefix="testbed-bc-log-") as log_dir,
        Bar(config.n_epochs, "train", unit="epoch", show=None if progress else False) as bar,
    ):
        trainer = make_bc_trainer(policy, config, log_dir=log_dir, demonstrations=transitions)

        epoch = 0

        def on_epoch_end() -> None:
            nonlocal epoch
            epoch += 1
            bar.update()
            if epoch % config.eval_every and epoch != config.n_epochs:
                return
            train_loss, train_acc = evaluate_fit(trainer, train_obs, train_acts)
            val_loss, val_acc = evaluate_fit(trainer, val_obs, val_acts)
            row = {
                "epoch": epoch,
                "train/loss": train_loss,
                f"train/{fit}": train_acc,
                "val/loss": val_loss,
                f"val/{fit}": val_acc,
            }
            rows.append(row)
            bar.set_postfix(f"val {fit.replace('_', ' ')} {val_acc:.3f}" if val_idx else f"{fit} {train_acc:.3f}")
            if tensorboard:  # same step as imitation's bc/* points: epochs completed
                for key, value in row.items():
                    if key != "epoch" and not np.isnan(value):
                        trainer.logger.record(key, value)
                trainer.logger.dump(epoch)

        # Logging reads the weights, never changes them: with TensorBoard, imitation logs its
        # bc/* statistics at the first batch of every epoch; without, only once.
        batches_per_epoch = max(1, len(transitions) // config.batch_size)
        with warnings.catch_warnings():
            # imitation 1.0.1 logs float(loss) of a tensor that still requires grad.
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
            trainer.train(
                n_epochs=config.n_epochs,
                on_epoch_end=on_epoch_end,
                progress_bar=False,  # imitation's bar prints one line per epoch; ours is one per stage
                log_interval=batches_per_epoch if tensorboard else 10**9,
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
    tensorboard_dir: str | pathlib.Path | None = None,
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
        tensorboard_dir: TensorBoard event files written while training (by
            :func:`tensorboard_logging`), copied into the run's ``tensorboard/``.
    """
    if algorithm == "bc":
        train_seeds = [demos.seeds[i] for i in result.train_episodes]
        val_seeds = [demos.seeds[i] for i in result.val_episodes]
        n_train_labels = int(sum(len(demos.trajectories[i].acts) for i in result.train_episodes))
    else:  # the data's own seed record (DAgger: round seeds); the iterate's labels if given
        train_seeds, val_seeds = list(demos.seeds), []
        n_train_labels = int((extra or {}).get("iterate", {}).get("n_labels", demos.n_transitions))
    metadata = {
        "algorithm": algorithm,
        "config": config.to_dict(),
        **(extra or {}),
        "demos": {
            "path": str(demos_path),
            "expert": demos.metadata.expert,
            "n_episodes": len(demos.trajectories),
            "n_transitions": demos.n_transitions,
            # The labels the model trained on: not the validation split's.
            "n_train_labels": n_train_labels,
            "train_seeds": train_seeds,
            "val_seeds": val_seeds,
        },
        "scenario": demos.metadata.scenario,
        "observation_space": demos.metadata.observation_space,
        "action_space": demos.metadata.action_space,
        "final": {k: (None if pd.isna(v) else float(v)) for k, v in result.log.iloc[-1].items()},
        "provenance": provenance(),
    }
    with atomic_output_dir(path, overwrite=overwrite) as tmp:
        save_policy(result.policy, tmp / POLICY_FILE)
        result.log.to_csv(tmp / LOG_FILE, index=False)
        write_json(tmp / METADATA, metadata)
        if tensorboard_dir is not None:
            shutil.copytree(tensorboard_dir, tmp / TENSORBOARD_DIR)
    return pathlib.Path(path)


__all__ = [
    "TrainConfig",
    "TrainResult",
    "train_bc",
    "save_clone",
    "parse_net_arch",
    "tensorboard_logging",
    "tensorboard_scalars",
    "split_episodes",
    "action_accuracy",
]
