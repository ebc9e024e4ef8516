"""Behavioral cloning through imitation's trainer.

Training runs ``imitation.algorithms.bc.BC``'s training loop (in a subclass with cheaper
batches and bit-identical results, :func:`bc_trainer_class`); this module adds an episode-level
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
import functools
import pathlib
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from testbed.clone_io import LOG_FILE, METADATA, POLICY_FILE, is_image_space, make_policy, save_policy
from testbed.demos import Demonstrations
from testbed.errors import TestbedError
from testbed.limits import check_net_arch, check_option
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
        check_net_arch([int(h) for h in self.net_arch])
        if not np.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise TestbedError(f"--learning-rate must be > 0, got {self.learning_rate}")
        for name in ("l2_weight", "ent_weight"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise TestbedError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise TestbedError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        # Out of bounds torch's OpenMP pool crashes the process (testbed.limits).
        check_option("torch_threads", self.torch_threads)
        if self.eval_every < 1:
            raise TestbedError(f"--eval-every must be at least 1, got {self.eval_every}")


def parse_net_arch(text: str) -> tuple[int, ...]:
    """``"64,64"`` -> ``(64, 64)``.

    Raises:
        TestbedError: not comma-separated positive integers, or a network beyond the limits
            of :func:`testbed.limits.check_net_arch`.
    """
    try:
        arch = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise TestbedError(f"--net-arch expects comma-separated integers like 64,64, got {text!r}") from None
    if not arch or any(h < 1 for h in arch):
        raise TestbedError(f"--net-arch expects positive integers like 64,64, got {text!r}")
    check_net_arch(arch)
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


# imitation's BC spends most of a small network's training time outside the network (cProfile,
# 2400 transitions x 20 epochs, net 64,64: 35 % in its DataLoader, which indexes the dataset one
# sample at a time and collates per-sample dicts; a quarter in the loss calculator, which at every
# batch also computes the statistics BCLogger logs at a few: the L2 norm of every parameter, even
# at weight 0, the value head, the probability of the expert's action). The trainer
# make_bc_trainer builds keeps imitation's BC - its training loop, optimiser, logging - and
# changes only those two pieces, so that the weights, logs and statistics stay bit for bit
# imitation's (tests/test_training.py trains both and compares).


class _GatherTransitions:
    """``collate_fn`` making a batch of imitation transitions from its indices by indexing
    tensors stacked once, instead of imitation's per-sample ``transitions_collate_fn``.

    The batch holds what BC reads, ``obs`` and ``acts``, with the values, dtype and shape of
    imitation's (which stacks the samples' numpy arrays); not ``next_obs``, ``dones`` or
    ``infos``.

    Args:
        transitions: an ``imitation.data.types.TransitionsMinimal`` with array observations.
    """

    def __init__(self, transitions: Any) -> None:
        from imitation.util import util

        # imitation's conversion: shares the arrays' memory (no second copy of a large image
        # dataset), copying only read-only arrays.
        self.obs = util.safe_to_tensor(np.asarray(transitions.obs))
        self.acts = util.safe_to_tensor(np.asarray(transitions.acts))

    def __call__(self, indices: list[int]) -> dict[str, Any]:
        import torch

        index = torch.tensor(indices, dtype=torch.int64)
        return {"obs": self.obs[index], "acts": self.acts[index]}


def _gathering_loader(loader: Any) -> Any:
    """A ``DataLoader`` yielding the batches ``loader`` yields, gathered from tensors
    (:class:`_GatherTransitions`), if ``loader`` is a single-process ``DataLoader`` over imitation
    transitions with imitation's per-sample collate (what ``BC`` and ``DAggerTrainer`` build);
    else None.

    The new loader iterates ``range(n)`` through ``loader``'s own batch sampler and generator, so
    it draws the same random numbers from the same generators (the sampler's seed and the
    iterator's base seed, torch's global generator unless ``loader`` has one) and yields the
    same indices in the same order.
    """
    from imitation.data import types
    from torch.utils.data import DataLoader

    if not (
        isinstance(loader, DataLoader)
        and loader.collate_fn is types.transitions_collate_fn
        and isinstance(loader.dataset, types.TransitionsMinimal)
        and isinstance(loader.dataset.obs, np.ndarray)  # not dict observations
        and loader.batch_sampler is not None
        and loader.num_workers == 0
    ):
        return None
    return DataLoader(
        range(len(loader.dataset)),  # type: ignore[arg-type]  # any sized, indexable dataset works
        batch_sampler=loader.batch_sampler,
        collate_fn=_GatherTransitions(loader.dataset),
        generator=loader.generator,
    )


def _plain_actor_critic(policy: Any) -> bool:
    """Whether ``policy.evaluate_actions`` is SB3's ``ActorCriticPolicy``'s, whose action
    distribution ``policy.get_distribution`` computes by the same operations."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    cls = type(policy)
    return (
        isinstance(policy, ActorCriticPolicy)
        and cls.evaluate_actions is ActorCriticPolicy.evaluate_actions
        and cls.get_distribution is ActorCriticPolicy.get_distribution
    )


class _LoggedBatchesLoss:
    """imitation's BC loss calculator, computing its statistics only for the batches BC logs.

    imitation's ``BehaviorCloningLossCalculator`` computes at every batch, besides the loss,
    statistics that ``BCLogger`` records only every ``log_interval`` batches. Between
    :meth:`begin` and :meth:`end` (one ``BC.train`` call) this calculator gives the batches
    that will not be logged the loss alone, by the same operations on the same values; every
    other call (logged batches, evaluations under ``torch.no_grad``, calls outside training) is
    imitation's calculator's. The loss alone differs from imitation's in three places, none of
    which changes a bit of the trained weights:

    - no value head (SB3's ``evaluate_actions`` computes it; the loss does not use it);
    - no mean probability of the expert's action (a statistic only);
    - at L2 weight 0, no L2 norm: imitation adds ``0 * norm``, which is +0.0 for finite
      parameters; ``+ 0.0`` keeps the loss's value (a -0.0 loss becomes +0.0 in both). The
      gradient of that term is a signed zero per parameter, which changes a gradient only
      where it is zero, and only its sign, which Adam ignores (``lerp`` to +-0 and the square
      give the same moments); the value network's parameters, whose only gradient it was,
      keep none, and Adam leaves them as imitation's zero-moment updates do: unchanged.

    The statistics a fast batch does not compute are NaN in its ``BCTrainingMetrics``.

    Args:
        full: imitation's calculator (its ``ent_weight`` and ``l2_weight`` are used).
    """

    def __init__(self, full: Any) -> None:
        self.full = full
        self.ent_weight: float = full.ent_weight
        self.l2_weight: float = full.l2_weight
        self._log_interval: int | None = None
        self._batch = 0

    def begin(self, log_interval: int | None) -> None:
        """Start a training call whose batches, numbered from 0 by :meth:`batch_done`, are
        logged when their number is a multiple of ``log_interval`` (None: compute every
        batch in full)."""
        self._log_interval = log_interval
        self._batch = 0

    def batch_done(self) -> None:
        """Count one batch of the training call (its optimiser step and logging are done)."""
        self._batch += 1

    def end(self) -> None:
        """End the training call: every later call is imitation's calculator's."""
        self._log_interval = None

    def __call__(self, policy: Any, obs: Any, acts: Any) -> Any:
        """imitation's ``BCTrainingMetrics`` of ``policy`` on (``obs``, ``acts``)."""
        import torch

        if self._log_interval is None or self._batch % self._log_interval == 0 or not torch.is_grad_enabled():
            return self.full(policy, obs, acts)
        return self._loss_only(policy, obs, acts)

    def _loss_only(self, policy: Any, obs: Any, acts: Any) -> Any:
        """imitation's ``BehaviorCloningLossCalculator.__call__`` line by line, minus what
        only its statistics use."""
        import torch
        from imitation.algorithms import bc
        from imitation.data import types
        from imitation.util import util

        tensor_obs = types.map_maybe_dict(util.safe_to_tensor, types.maybe_unwrap_dictobs(obs))
        acts = util.safe_to_tensor(acts)
        distribution = policy.get_distribution(tensor_obs)  # evaluate_actions minus the value head
        log_prob = distribution.log_prob(acts)
        entropy = distribution.entropy()
        log_prob = log_prob.mean()
        entropy = entropy.mean() if entropy is not None else None
        not_computed = torch.tensor(float("nan"))
        l2_norm: Any = not_computed
        l2_loss: Any = 0.0
        if self.l2_weight != 0:
            l2_norms = [torch.sum(torch.square(w)) for w in policy.parameters()]
            l2_norm = sum(l2_norms) / 2
            l2_loss = self.l2_weight * l2_norm
        ent_loss = -self.ent_weight * (entropy if entropy is not None else torch.zeros(1))
        neglogp = -log_prob
        loss = neglogp + ent_loss + l2_loss
        return bc.BCTrainingMetrics(
            neglogp=neglogp,
            entropy=entropy,
            ent_loss=ent_loss,
            prob_true_act=not_computed,
            l2_norm=l2_norm,
            l2_loss=torch.as_tensor(l2_loss),
            loss=loss,
        )


@functools.cache
def bc_trainer_class() -> type[Any]:
    """imitation's ``BC`` with cheaper batches, the class :func:`make_bc_trainer` builds.

    A subclass (made on first use: imitation's ``bc`` module imports stable-baselines3) that
    keeps ``BC.train``, replacing two of its pieces: the batches of imitation transitions
    come from :func:`_gathering_loader` and the loss from :class:`_LoggedBatchesLoss`. Weights,
    losses and logged statistics are bit for bit ``BC``'s.
    """
    from imitation.algorithms import base as algo_base
    from imitation.algorithms import bc
    from torch.utils.data import BatchSampler

    class CheapBatchBC(bc.BC):
        """imitation's ``BC`` with cheaper batches (see :func:`bc_trainer_class`)."""

        def __init__(self, **kwargs: Any) -> None:
            self._full_batches = False  # BC.__init__ sets the demonstrations
            super().__init__(**kwargs)
            self.loss_calculator: Any = _LoggedBatchesLoss(self.loss_calculator)

        def set_demonstrations(self, demonstrations: Any) -> None:
            # imitation's own first: its checks, errors and side effects (it iterates a
            # DataLoader once, drawing from torch's generator), then its loader is swapped.
            super().set_demonstrations(demonstrations)
            current: Any = self._demo_data_loader
            wrapped = isinstance(current, algo_base._WrappedDataLoader)
            loader = _gathering_loader(current.data_loader if wrapped else current)
            if loader is None:
                self._full_batches = False
                return
            if wrapped:  # keep imitation's batch-size check
                current.data_loader = loader
            else:
                self._demo_data_loader = loader
            sampler = loader.batch_sampler
            self._full_batches = (
                isinstance(sampler, BatchSampler)
                and sampler.drop_last
                and sampler.batch_size == self.minibatch_size == self.batch_size
            )

        def train(
            self, *, log_interval: int = 500, on_batch_end: Callable[[], None] | None = None, **kwargs: Any
        ) -> None:
            """``BC.train``, with statistics computed only at the batches it logs.

            That needs BC's batch numbers: it numbers the batches of a call from 0, logs
            those whose number is a multiple of ``log_interval`` and calls ``on_batch_end``
            after each one's logging. With partial batches or gradient accumulation over
            minibatches the numbers are not one per loader batch: every batch is then
            computed in full.
            """
            calculator = self.loss_calculator
            fast = self._full_batches and _plain_actor_critic(self.policy)
            calculator.begin(log_interval if fast else None)

            def counted_batch_end() -> None:
                calculator.batch_done()
                if on_batch_end is not None:
                    on_batch_end()

            try:
                super().train(log_interval=log_interval, on_batch_end=counted_batch_end, **kwargs)
            finally:
                calculator.end()

    return CheapBatchBC


def make_bc_trainer(policy: Any, config: TrainConfig, *, log_dir: str, demonstrations: Any = None) -> Any:
    """imitation's ``BC`` trainer for ``policy`` with ``config``'s hyperparameters, on the
    CPU, logging silently into ``log_dir`` — or, inside :func:`tensorboard_logging`, to
    TensorBoard event files in that block's folder. The trainer is :func:`bc_trainer_class`'s
    ``BC`` subclass: imitation's training loop with cheaper batches, bit-identical results."""
    from imitation.util import logger as im_logger

    tensorboard = _TENSORBOARD.get()
    if tensorboard is None:
        custom_logger = im_logger.configure(log_dir, format_strs=[])
    else:
        custom_logger = im_logger.configure(tensorboard.folder, format_strs=["tensorboard"])
        tensorboard.loggers.append(custom_logger)

    return bc_trainer_class()(
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
