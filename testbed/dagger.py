"""DAgger with imitation's trainer and a privileged expert as the labeller.

imitation's ``SimpleDAggerTrainer`` expects an observation-only expert policy. Ours reads the
simulator, so we drive imitation's lower-level API ourselves: a ``DummyVecEnv`` keeps the
environments in this process, and at every step the expert labels each env's *current
simulator state* (``venv.envs[i].unwrapped``) before the ``InteractiveTrajectoryCollector``
decides (with probability beta) whether the expert's or the learner's action is applied. The
saved label is always the expert's. Training is ``DAggerTrainer.extend_and_update``: BC on
the aggregate of all rounds.

Expert queries are counted per labelled transition, so BC and DAgger can be compared at equal
numbers of expert labels.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from testbed.clone_io import make_policy
from testbed.demos import DAGGER_NOTE, DemoMetadata, Demonstrations, quiet_datasets
from testbed.errors import TestbedError
from testbed.experts import make_expert
from testbed.policies import check_expert_fits
from testbed.runtime import set_torch_threads
from testbed.scenarios import Scenario, describe_spaces, make_env
from testbed.seeds import DAGGER_SEED
from testbed.spaces import space_from_dict
from testbed.training import (
    TrainConfig,
    TrainResult,
    evaluate_fit,
    make_bc_trainer,
    observation_statistics,
    set_observation_statistics,
)


@dataclasses.dataclass(frozen=True)
class DAggerConfig:
    """DAgger schedule; the BC hyperparameters come from a :class:`TrainConfig`."""

    n_rounds: int = 5
    """Rounds of (collect, aggregate, retrain). Round 0 is pure expert driving (beta = 1)."""
    episodes_per_round: int = 20
    """Episodes collected per round."""
    rampdown_rounds: int = 3
    """beta falls linearly from 1 at round 0 to 0 at this round (imitation's
    ``LinearBetaSchedule``)."""
    epochs_per_round: int = 20
    """BC epochs over the aggregated data after each round."""
    first_seed: int = DAGGER_SEED
    """Round r's environment is seeded with ``first_seed + r`` (subsequent episodes of the
    round continue that env's generator). Keep it below the evaluation seeds (10000..)."""

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values."""
        flags = {
            "n_rounds": "--rounds",
            "episodes_per_round": "--episodes-per-round",
            "rampdown_rounds": "--rampdown-rounds",
            "epochs_per_round": "--epochs-per-round",
        }
        for name, flag in flags.items():
            if getattr(self, name) < 1:
                raise TestbedError(f"{flag} must be at least 1, got {getattr(self, name)}")
        if self.first_seed < 0:
            raise TestbedError(f"DAgger seeds must be non-negative, got {self.first_seed}")


@dataclasses.dataclass
class DAggerResult(TrainResult):
    """A :class:`TrainResult` whose log has one row per round, plus the aggregated data."""

    trajectories: Sequence[Any] = ()
    """All labelled trajectories of all rounds (expert labels)."""
    round_seeds: list[int] = dataclasses.field(default_factory=list)
    """The env seed of each round."""


def _round_demos(trainer: Any, round_num: int) -> list[Any]:
    """Trajectories the collector saved for ``round_num`` (imitation's on-disk layout)."""
    from imitation.data import serialize

    directory = trainer._demo_dir_path_for_round(round_num)
    return [serialize.load(p)[0] for p in sorted(directory.glob("*.npz"))]


def _expert_labels(venv: Any, experts: Sequence[Any], *, continuous: bool) -> np.ndarray:
    labels = [expert.act(None, env.unwrapped) for expert, env in zip(experts, venv.envs)]
    return np.array(labels, dtype=np.float32 if continuous else np.int64)


def train_dagger(
    scenario: Scenario,
    expert: str,
    config: TrainConfig,
    dagger: DAggerConfig,
    *,
    on_round_end: Callable[[int, Any, int], None] | None = None,
    progress: bool = False,
) -> DAggerResult:
    """Train a policy with DAgger, the privileged expert labelling every visited state.

    Args:
        scenario: where to drive.
        expert: expert name.
        config: BC hyperparameters (``n_epochs`` is ignored: ``dagger.epochs_per_round``).
        dagger: round schedule.
        on_round_end: called after each round's training with (round, policy, number of
            expert labels so far), e.g. to snapshot the policy for a learning curve.
        progress: print one line per round.

    Returns:
        Policy, per-round log (``round``, ``beta``, ``n_labels``, ``n_episodes``,
        ``train/loss``, ``train/accuracy`` (``train/action_mae`` for continuous actions),
        ``crash_rate`` of the round's episodes), the
        aggregated labelled trajectories and the round seeds.
    """
    import torch
    from imitation.algorithms.dagger import DAggerTrainer, LinearBetaSchedule
    from imitation.data.wrappers import RolloutInfoWrapper
    from stable_baselines3.common.vec_env import DummyVecEnv

    config.validate()
    dagger.validate()
    quiet_datasets()  # imitation saves every DAgger episode through `datasets`
    set_torch_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    spaces = describe_spaces(scenario)
    obs_space, act_space = space_from_dict(spaces["observation_space"]), space_from_dict(spaces["action_space"])
    # Box actions work as they are: imitation's collector swaps whole rows of the (n_envs,
    # act_dim) action array, and BC fits the Gaussian policy to the float labels.
    continuous = spaces["action_space"]["type"] != "Discrete"

    check_expert_fits(make_expert(expert), scenario)
    policy = make_policy(obs_space, act_space, config.net_arch)
    venv = DummyVecEnv([lambda: RolloutInfoWrapper(make_env(scenario))])
    labeller = make_expert(expert)
    rows: list[dict[str, float]] = []
    seeds: list[int] = []
    with tempfile.TemporaryDirectory(prefix="testbed-dagger-") as scratch:
        trainer = make_bc_trainer(policy, config, log_dir=scratch + "/log")
        dagger_trainer = DAggerTrainer(
            venv=venv,
            scratch_dir=scratch + "/dagger",
            rng=np.random.default_rng(config.seed),
            beta_schedule=LinearBetaSchedule(dagger.rampdown_rounds),
            bc_trainer=trainer,
            custom_logger=trainer.logger,
        )
        for round_num in range(dagger.n_rounds):
            collector = dagger_trainer.create_trajectory_collector()
            seed = dagger.first_seed + round_num
            seeds.append(seed)
            collector.seed(seed)
            collector.reset()
            labeller.reset(venv.envs[0].unwrapped, seed)
            finished, crashes = 0, 0
            while finished < dagger.episodes_per_round:
                _, _, dones, infos = collector.step(_expert_labels(venv, [labeller], continuous=continuous))
                if dones[0]:
                    finished += 1
                    crashes += bool(infos[0].get("crashed", False))
                    labeller.reset(venv.envs[0].unwrapped, seed)
            if round_num == 0:
                # Input standardisation from the first round, which the expert drove alone
                # (beta = 1, so the learner was never asked to act before this).
                round0 = np.concatenate([np.asarray(t.obs) for t in _round_demos(dagger_trainer, 0)])
                set_observation_statistics(policy, *observation_statistics(round0))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
                dagger_trainer.extend_and_update(
                    {"n_epochs": dagger.epochs_per_round, "progress_bar": False, "log_rollouts_venv": None}
                )
            trajectories = list(dagger_trainer._all_demos)  # imitation keeps the aggregate here
            obs = np.concatenate([np.asarray(t.obs[:-1]) for t in trajectories])
            acts = np.concatenate([np.asarray(t.acts) for t in trajectories])
            loss, accuracy = evaluate_fit(trainer, obs, acts)
            rows.append(
                {
                    "round": round_num,
                    "beta": float(collector.beta),
                    "n_labels": int(len(acts)),
                    "n_episodes": len(trajectories),
                    "train/loss": loss,
                    "train/action_mae" if continuous else "train/accuracy": accuracy,
                    "crash_rate": crashes / finished,
                }
            )
            if on_round_end is not None:
                on_round_end(round_num, policy, int(len(acts)))
            if progress:
                r = rows[-1]
                print(
                    f"dagger round {round_num}: beta {r['beta']:.2f}, {r['n_labels']} expert labels, "
                    f"train {'action MAE' if continuous else 'accuracy'} {accuracy:.3f}, "
                    f"crash rate while collecting {r['crash_rate']:.2f}",
                    flush=True,
                )
    venv.close()
    policy.set_training_mode(False)
    return DAggerResult(
        policy=policy,
        log=pd.DataFrame(rows),
        train_episodes=list(range(len(trajectories))),
        val_episodes=[],
        trajectories=trajectories,
        round_seeds=seeds,
    )


def as_demonstrations(result: DAggerResult, scenario: Scenario, expert: str) -> Demonstrations:
    """The aggregated DAgger data as a :class:`Demonstrations` record (for saving and for
    the run's metadata); ``seeds`` lists the round seeds."""
    # One seed per round, not per episode: the record keeps the rounds' seeds.
    meta = DemoMetadata.describe(
        scenario,
        result.trajectories,
        [0] * len(result.trajectories),
        expert={"name": expert, "params": make_expert(expert).params()},
        note=f"{DAGGER_NOTE}: episode seeds continue each round's env generator from its round seed",
    )
    return Demonstrations(list(result.trajectories), dataclasses.replace(meta, seeds=list(result.round_seeds)))
