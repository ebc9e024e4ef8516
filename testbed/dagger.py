"""DAgger with imitation's trainer and a privileged expert as the labeller.

imitation's ``SimpleDAggerTrainer`` expects an observation-only expert policy. Ours reads the
simulator, so we drive imitation's lower-level API ourselves: a ``DummyVecEnv`` keeps the
environments in this process, and at every step the expert labels each env's *current
simulator state* (``venv.envs[i].unwrapped``) before the ``InteractiveTrajectoryCollector``
decides (with probability beta) whether the expert's or the learner's action is applied. The
saved label is always the expert's. Training is ``DAggerTrainer.extend_and_update``: BC on
the aggregate of all rounds.

Three choices make BC and DAgger comparable:

- Rounds are sized in expert *labels*, not episodes, so a DAgger run and a BC run can be put
  side by side at equal numbers of expert queries.
- The learner drives with its most likely action (``deterministic=True``), as every evaluation
  in this testbed does; imitation's collector would otherwise sample from the policy
  (``policy.predict`` defaults to ``deterministic=False``) and visit states the evaluated
  policy never reaches.
- The policy after every round is kept (:attr:`DAggerResult.iterates`), so a run can report
  the iterate it selects at a label budget (:func:`select_iterate`: by any per-iterate score,
  e.g. the return each iterate drives to on development seeds, or
  :meth:`DAggerResult.best`'s validation accuracy) instead of whatever the last round left.

Two training schedules: ``continue`` (imitation's: the same network trains
``epochs_per_round`` more epochs on the aggregate after each round) and ``scratch`` (a fresh
network, fresh optimiser and input standardisation of the aggregate after each round, trained
for BC's ``TrainConfig.n_epochs``): under ``scratch`` every iterate has had exactly the gradient
steps BC takes on as many training labels, so BC and DAgger compare at equal labels *and*
equal training effort, which ``continue`` does not give (its gradient steps are a fraction of
BC's that depends on the budget).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from testbed.clone_io import make_policy
from testbed.demos import DAGGER_NOTE, DemoMetadata, Demonstrations, quiet_datasets
from testbed.errors import TestbedError
from testbed.experts import make_expert
from testbed.policies import check_expert_fits
from testbed.runtime import set_torch_threads
from testbed.scenarios import Scenario, describe_spaces, make_env
from testbed.seeds import DAGGER, DAGGER_SEED
from testbed.spaces import space_from_dict
from testbed.training import (
    TrainConfig,
    TrainResult,
    evaluate_fit,
    make_bc_trainer,
    observation_statistics,
    set_observation_statistics,
)

BetaScheduleName = Literal["expert-first", "linear"]
BETA_SCHEDULES: tuple[str, ...] = get_args(BetaScheduleName)
ScheduleName = Literal["continue", "scratch"]
TRAINING_SCHEDULES: tuple[str, ...] = get_args(ScheduleName)

CUT_DEMO = "dagger-demo-cut.npz"
"""File name of a round's cut (last, unfinished) episode in imitation's round directory. It
sorts after imitation's own ``dagger-demo-0-<uuid>.npz`` names, so the cut episode is the
round's last trajectory."""


@dataclasses.dataclass(frozen=True)
class DAggerConfig:
    """DAgger schedule; the BC hyperparameters come from a :class:`TrainConfig`."""

    n_rounds: int = 5
    """Rounds of (collect, aggregate, retrain). Round 0 is pure expert driving (beta = 1)."""
    labels_per_round: int = 500
    """Expert labels (labelled transitions) collected per round, exactly: episodes run until
    the count is reached and the episode in progress then is cut there (kept as a
    non-terminal trajectory)."""
    beta_schedule: BetaScheduleName = "expert-first"
    """Probability beta that the expert's action is applied, per round. ``expert-first``: 1 in
    round 0 and 0 after (Ross et al. 2011, sec. 3: beta = I(i = 1) "often performs best in
    practice"). ``linear``: imitation's ``LinearBetaSchedule(rampdown_rounds)``."""
    rampdown_rounds: int = 3
    """``linear`` only: beta falls linearly from 1 at round 0 to 0 at this round."""
    epochs_per_round: int = 20
    """``continue`` only: BC epochs over the aggregated data after each round."""
    training: ScheduleName = "continue"
    """``continue``: the network keeps training, ``epochs_per_round`` epochs after each round
    (imitation's ``extend_and_update``). ``scratch``: after each round a fresh network (seeded
    as BC seeds its own) trains ``TrainConfig.n_epochs`` epochs on the aggregate, with a fresh
    optimiser and the aggregate's input standardisation, exactly as BC would on that data."""
    first_seed: int = DAGGER_SEED
    """Round r's environment is seeded with ``first_seed + r`` (subsequent episodes of the
    round continue that env's generator). Every round seed must lie in the DAgger seed range
    (:data:`testbed.seeds.DAGGER`)."""
    sample_learner: bool = False
    """False: the learner drives with its most likely action (argmax, the Gaussian mean for
    continuous actions), as it is evaluated. True: it samples from its action distribution
    (imitation's default)."""

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values (naming the CLI flag)."""
        flags = {
            "n_rounds": "--rounds",
            "labels_per_round": "--labels-per-round",
            "rampdown_rounds": "--rampdown-rounds",
            "epochs_per_round": "--epochs-per-round",
        }
        for name, flag in flags.items():
            if getattr(self, name) < 1:
                raise TestbedError(f"{flag} must be at least 1, got {getattr(self, name)}")
        if self.training not in TRAINING_SCHEDULES:
            raise TestbedError(
                f"--dagger-training must be one of {', '.join(TRAINING_SCHEDULES)}, got {self.training!r}"
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            raise TestbedError(
                f"--beta-schedule must be one of {', '.join(BETA_SCHEDULES)}, got {self.beta_schedule!r}"
            )
        if self.first_seed < 0:
            raise TestbedError(f"--first-seed must be non-negative, got {self.first_seed}")
        last = self.first_seed + self.n_rounds - 1
        if self.first_seed not in DAGGER or last not in DAGGER:
            raise TestbedError(
                f"--first-seed {self.first_seed} with --rounds {self.n_rounds} seeds rounds "
                f"{self.first_seed}..{last}, outside the DAgger seed range {DAGGER.describe()}"
            )

    def beta(self, round_num: int) -> float:
        """beta of round ``round_num`` (the schedule handed to imitation's ``DAggerTrainer``)."""
        if self.beta_schedule == "linear":
            from imitation.algorithms.dagger import LinearBetaSchedule

            return float(LinearBetaSchedule(self.rampdown_rounds)(round_num))
        return 1.0 if round_num == 0 else 0.0


@dataclasses.dataclass(frozen=True)
class Iterate:
    """The policy after one DAgger round."""

    round: int
    """The round after whose training it was taken."""
    n_labels: int
    """Expert labels it was trained on (all rounds up to ``round``)."""
    val_score: float
    """Validation accuracy, or minus the action MAE for continuous actions (higher is better);
    NaN without a validation set."""
    state_dict: dict[str, Any]
    """A copy of the policy's ``state_dict`` (tensors)."""


@dataclasses.dataclass
class DAggerResult(TrainResult):
    """A :class:`TrainResult` whose log has one row per round, plus the aggregated data and the
    policy after every round. ``policy`` is the *last* iterate; :meth:`best` picks another."""

    trajectories: Sequence[Any] = ()
    """All labelled trajectories of all rounds (expert labels), each round's cut episode last
    among its round's."""
    round_seeds: list[int] = dataclasses.field(default_factory=list)
    """The env seed of each round."""
    iterates: list[Iterate] = dataclasses.field(default_factory=list)
    """The policy after each round, in round order."""

    def best(self, max_labels: int | None = None) -> tuple[Any, Iterate]:
        """The iterate with the highest validation score among those trained on at most
        ``max_labels`` expert labels (all if None); ties go to fewer labels. Without
        validation scores (all NaN) it is the last such iterate (:func:`select_iterate`).

        Returns:
            A fresh policy holding that iterate's weights (:meth:`policy_of`) and the iterate.

        Raises:
            TestbedError: no iterate within ``max_labels``.
        """
        chosen = select_iterate(self.iterates, [it.val_score for it in self.iterates], max_labels=max_labels)
        return self.policy_of(chosen), chosen

    def policy_of(self, iterate: Iterate) -> Any:
        """A fresh policy (a copy of :attr:`policy`) holding ``iterate``'s weights, in eval mode."""
        policy = copy.deepcopy(self.policy)
        policy.load_state_dict(iterate.state_dict)
        policy.set_training_mode(False)
        return policy


def select_iterate(iterates: Sequence[Iterate], scores: Sequence[float], *, max_labels: int | None = None) -> Iterate:
    """The iterate with the highest score among those trained on at most ``max_labels`` expert
    labels (all if None); ties go to fewer labels. NaN scores never win; if every score within
    the budget is NaN it is the last such iterate.

    Args:
        iterates: DAgger's iterates (:attr:`DAggerResult.iterates`), in round order.
        scores: one per iterate, higher is better: e.g. its mean return driving development
            seeds itself (on-policy selection), or its validation score.
        max_labels: the label budget.

    Raises:
        TestbedError: no iterate within ``max_labels``, or not one score per iterate.
    """
    if len(scores) != len(iterates):
        raise TestbedError(f"{len(scores)} scores for {len(iterates)} DAgger iterates")
    within = [(it, float(s)) for it, s in zip(iterates, scores) if max_labels is None or it.n_labels <= max_labels]
    if not within:
        fewest = min((it.n_labels for it in iterates), default=None)
        raise TestbedError(f"no DAgger iterate has at most {max_labels} expert labels (the fewest: {fewest})")
    scored = [(it, s) for it, s in within if not math.isnan(s)]
    if not scored:
        return within[-1][0]
    return max(scored, key=lambda pair: (pair[1], -pair[0].n_labels))[0]


def _round_demos(trainer: Any, round_num: int) -> list[Any]:
    """Trajectories saved for ``round_num`` (imitation's on-disk layout and order)."""
    from imitation.data import serialize

    directory = trainer._demo_dir_path_for_round(round_num)
    return [serialize.load(p)[0] for p in trainer._get_demo_paths(directory)]


def _expert_labels(venv: Any, experts: Sequence[Any], *, continuous: bool) -> np.ndarray:
    labels = [expert.act(None, env.unwrapped) for expert, env in zip(experts, venv.envs)]
    return np.array(labels, dtype=np.float32 if continuous else np.int64)


def _save_cut_episode(collector: Any) -> int:
    """Save the collector's unfinished episode as a non-terminal trajectory; its length.

    imitation's collector saves an episode only when it ends; the round's last episode is
    cut when the label budget is reached, so finish its accumulated steps here."""
    from imitation.data import serialize

    if len(collector.traj_accum.partial_trajectories[0]) < 2:  # the budget ran out as an episode ended
        return 0
    traj = collector.traj_accum.finish_trajectory(0, terminal=False)
    save_dir = collector.save_dir
    save_dir.mkdir(parents=True, exist_ok=True)
    serialize.save(save_dir / CUT_DEMO, [traj])
    return len(traj.acts)


def _check_validation(validation: tuple[np.ndarray, np.ndarray], obs_space: Any) -> tuple[np.ndarray, np.ndarray]:
    obs, acts = (np.asarray(a) for a in validation)
    if len(obs) != len(acts):
        raise TestbedError(f"validation set: {len(obs)} observations but {len(acts)} actions")
    if obs.shape[1:] != obs_space.shape:
        raise TestbedError(f"validation observations have shape {obs.shape[1:]}, the scenario's {obs_space.shape}")
    return obs, acts


def train_dagger(
    scenario: Scenario,
    expert: str,
    config: TrainConfig,
    dagger: DAggerConfig,
    *,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    on_round_end: Callable[[int, Any, int], None] | None = None,
    progress: bool = False,
) -> DAggerResult:
    """Train a policy with DAgger, the privileged expert labelling every visited state.

    Each round collects exactly ``dagger.labels_per_round`` labelled transitions: episodes run
    until the count is reached and the episode in progress then is cut and kept as a
    non-terminal trajectory. BC then trains on the aggregate of all rounds: the same network
    ``dagger.epochs_per_round`` more epochs, or (``dagger.training == "scratch"``) a fresh
    one ``config.n_epochs`` epochs.

    Args:
        scenario: where to drive.
        expert: expert name.
        config: BC hyperparameters (``n_epochs``: the epochs of every round under the
            ``scratch`` schedule; ignored under ``continue``).
        dagger: round schedule.
        validation: held-out (observations ``(n, *obs_shape)``, expert actions ``(n,)`` or
            ``(n, act_dim)``) scored after every round; without it the ``val/`` columns and
            the iterates' scores are NaN.
        on_round_end: called after each round's training with (round, policy, number of
            expert labels so far), e.g. to snapshot the policy for a learning curve.
        progress: print one line per round.

    Returns:
        The last iterate as ``policy``, the policy after every round (``iterates``), the
        aggregated labelled trajectories, the round seeds and a log with one row per round:
        ``round``, ``beta``, ``n_labels`` (aggregate labels BC trained on), ``round_labels``,
        ``round_cut_labels`` (labels of the round's cut episode, 0 if none),
        ``round_episodes``, ``crashes``, ``crash_rate``, ``train/loss``, ``train/accuracy``,
        ``val/loss``, ``val/accuracy`` (``.../action_mae`` for continuous actions; train on
        the aggregate).

    Note:
        ``round_episodes``, ``crashes`` and ``crash_rate`` count the episodes that *ended*
        within the round; the cut episode is not one of them (it neither crashed nor finished
        yet), so ``crash_rate`` is NaN in a round shorter than one episode.

    Raises:
        TestbedError: invalid configs, a round too small for one batch, a malformed
            validation set or an expert that cannot drive the scenario.
    """
    import torch
    from imitation.algorithms.dagger import DAggerTrainer
    from imitation.data.wrappers import RolloutInfoWrapper
    from stable_baselines3.common.vec_env import DummyVecEnv

    config.validate()
    dagger.validate()
    if dagger.labels_per_round < config.batch_size:
        raise TestbedError(
            f"--labels-per-round {dagger.labels_per_round} is smaller than --batch-size {config.batch_size}: "
            "round 0 would not fill one batch"
        )
    spaces = describe_spaces(scenario)
    obs_space, act_space = space_from_dict(spaces["observation_space"]), space_from_dict(spaces["action_space"])
    val_obs, val_acts = (
        _check_validation(validation, obs_space) if validation is not None else (np.zeros((0,)), np.zeros((0,)))
    )
    check_expert_fits(make_expert(expert), scenario)
    quiet_datasets()  # imitation saves every DAgger episode through `datasets`
    set_torch_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    # Box actions work as they are: imitation's collector swaps whole rows of the (n_envs,
    # act_dim) action array, and BC fits the Gaussian policy to the float labels.
    continuous = spaces["action_space"]["type"] != "Discrete"
    fit = "action_mae" if continuous else "accuracy"

    policy = make_policy(obs_space, act_space, config.net_arch)
    venv = DummyVecEnv([lambda: RolloutInfoWrapper(make_env(scenario))])
    labeller = make_expert(expert)
    deterministic = not dagger.sample_learner

    def learner_acts(obs: np.ndarray) -> np.ndarray:
        return policy.predict(obs, deterministic=deterministic)[0]

    rows: list[dict[str, float]] = []
    seeds: list[int] = []
    iterates: list[Iterate] = []
    trajectories: list[Any] = []
    aggregate_obs: list[np.ndarray] = []  # every round's observations so far, in imitation's order
    with tempfile.TemporaryDirectory(prefix="testbed-dagger-") as scratch:
        trainer = make_bc_trainer(policy, config, log_dir=scratch + "/log")
        dagger_trainer = DAggerTrainer(
            venv=venv,
            scratch_dir=scratch + "/dagger",
            rng=np.random.default_rng(config.seed),
            beta_schedule=dagger.beta,
            bc_trainer=trainer,
            custom_logger=trainer.logger,
        )
        for round_num in range(dagger.n_rounds):
            collector = dagger_trainer.create_trajectory_collector()
            # imitation's collector calls `policy.predict(obs)`, which samples by default.
            collector.get_robot_acts = learner_acts
            seed = dagger.first_seed + round_num
            seeds.append(seed)
            collector.seed(seed)
            collector.reset()
            labeller.reset(venv.envs[0].unwrapped, seed)
            n_steps, ended, crashes = 0, 0, 0
            while n_steps < dagger.labels_per_round:
                _, _, dones, infos = collector.step(_expert_labels(venv, [labeller], continuous=continuous))
                n_steps += 1
                if dones[0]:
                    ended += 1
                    crashes += bool(infos[0].get("crashed", False))
                    labeller.reset(venv.envs[0].unwrapped, seed)
            cut = _save_cut_episode(collector)
            round_trajs = _round_demos(dagger_trainer, round_num)
            aggregate_obs += [np.asarray(t.obs[:-1]) for t in round_trajs]
            round_labels = int(sum(len(t.acts) for t in round_trajs))
            assert round_labels == dagger.labels_per_round, (round_labels, dagger.labels_per_round)
            if round_num == 0:
                # Input standardisation from the first round, which the expert drove alone
                # (beta = 1, so the learner was never asked to act before this).
                round0 = np.concatenate([np.asarray(t.obs) for t in round_trajs])
                set_observation_statistics(policy, *observation_statistics(round0))
            epochs = dagger.epochs_per_round
            if dagger.training == "scratch":
                epochs = config.n_epochs
                _restart(dagger_trainer, policy, config, obs_space, act_space, np.concatenate(aggregate_obs))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
                dagger_trainer.extend_and_update({"n_epochs": epochs, "progress_bar": False, "log_rollouts_venv": None})
            trajectories = list(dagger_trainer._all_demos)  # imitation keeps the aggregate here
            obs = np.concatenate([np.asarray(t.obs[:-1]) for t in trajectories])
            acts = np.concatenate([np.asarray(t.acts) for t in trajectories])
            train_loss, train_fit = evaluate_fit(trainer, obs, acts)
            val_loss, val_fit = evaluate_fit(trainer, val_obs, val_acts)
            n_labels = int(len(acts))
            rows.append(
                {
                    "round": round_num,
                    "beta": float(collector.beta),
                    "n_labels": n_labels,
                    "round_labels": round_labels,
                    "round_cut_labels": cut,
                    "round_episodes": ended,
                    "crashes": crashes,
                    "crash_rate": crashes / ended if ended else float("nan"),
                    "train/loss": train_loss,
                    f"train/{fit}": train_fit,
                    "val/loss": val_loss,
                    f"val/{fit}": val_fit,
                }
            )
            iterates.append(
                Iterate(
                    round=round_num,
                    n_labels=n_labels,
                    val_score=-val_fit if continuous else val_fit,
                    state_dict={k: v.detach().clone() for k, v in policy.state_dict().items()},
                )
            )
            if on_round_end is not None:
                on_round_end(round_num, policy, n_labels)
            if progress:
                name = fit.replace("_", " ")
                print(
                    f"dagger round {round_num}: beta {rows[-1]['beta']:.2f}, {n_labels} expert labels, "
                    f"train {name} {train_fit:.3f}, "
                    + (f"validation {name} {val_fit:.3f}, " if validation is not None else "")
                    + f"{crashes} crashes in {ended} finished episodes while collecting",
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
        iterates=iterates,
    )


def _restart(
    dagger_trainer: Any, policy: Any, config: TrainConfig, obs_space: Any, act_space: Any, observations: np.ndarray
) -> None:
    """Before a ``scratch`` round's training: the weights of a fresh network (drawn after
    ``torch.manual_seed(config.seed)``, as :func:`testbed.training.train_bc` draws its own), the
    input standardisation of the aggregate the round will train on (``observations``: every
    round's so far, this one's included, in the order imitation aggregates them in
    ``extend_and_update``), and a fresh optimiser. The policy object stays the same one
    imitation's trainers hold."""
    import torch

    torch.manual_seed(config.seed)
    fresh = make_policy(obs_space, act_space, config.net_arch)
    policy.load_state_dict(fresh.state_dict())
    set_observation_statistics(policy, *observation_statistics(observations))
    bc = dagger_trainer.bc_trainer
    bc.optimizer = type(bc.optimizer)(policy.parameters(), **bc.optimizer.defaults)


def as_demonstrations(result: DAggerResult, scenario: Scenario, expert: str) -> Demonstrations:
    """The aggregated DAgger data as a :class:`Demonstrations` record (for saving and for
    the run's metadata); ``seeds`` lists the round seeds."""
    # One seed per round, not per episode: the record keeps the rounds' seeds.
    meta = DemoMetadata.describe(
        scenario,
        result.trajectories,
        [0] * len(result.trajectories),
        expert={"name": expert, "params": make_expert(expert).params()},
        note=f"{DAGGER_NOTE}: episode seeds continue each round's env generator from its round seed; "
        "each round's last episode is cut where its label budget ran out",
    )
    return Demonstrations(list(result.trajectories), dataclasses.replace(meta, seeds=list(result.round_seeds)))
