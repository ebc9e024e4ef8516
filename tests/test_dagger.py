"""DAgger (testbed.dagger): rounds sized in labels, the learner's argmax while collecting, beta
schedules, per-round iterates and the choice of the best one, determinism, bad values."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from testbed.dagger import DAggerConfig, DAggerResult, Iterate, train_dagger
from testbed.errors import TestbedError
from testbed.scenarios import Scenario, get_scenario
from testbed.seeds import DAGGER
from testbed.training import TrainConfig

LABELS = 40
"""Labels per round: more than one highway-fast episode (~30 steps), so a round holds episodes
that ended and one that is cut."""
TINY = TrainConfig(batch_size=16, net_arch=(16,), seed=0)
"""One epoch per round of this net leaves the policy close to uniform over the 5 actions, so
sampling from it would rarely give its argmax."""


@pytest.fixture(scope="module")
def highway() -> Scenario:
    return get_scenario("highway-fast")


@pytest.fixture(scope="module")
def validation(highway: Scenario) -> tuple[np.ndarray, np.ndarray]:
    from testbed.collect import collect

    demos = collect(highway, "scripted", n_episodes=1, seed=0)
    t = demos.trajectories[0]
    return np.asarray(t.obs[:-1]), np.asarray(t.acts)


@pytest.fixture(scope="module")
def linear_config() -> DAggerConfig:
    return DAggerConfig(
        n_rounds=3, labels_per_round=LABELS, beta_schedule="linear", rampdown_rounds=2, epochs_per_round=2
    )


@pytest.fixture(scope="module")
def linear_run(
    highway: Scenario, linear_config: DAggerConfig, validation: tuple[np.ndarray, np.ndarray]
) -> DAggerResult:
    return train_dagger(highway, "scripted", TINY, linear_config, validation=validation)


@dataclasses.dataclass
class Spy:
    """What the collector did at every step, and every ``deterministic`` flag the learner's
    ``predict`` was called with."""

    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    flags: list[bool] = dataclasses.field(default_factory=list)
    round_ends: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    """(round, number of steps so far) at each round's end."""


def _spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    from imitation.algorithms.dagger import InteractiveTrajectoryCollector
    from stable_baselines3.common.policies import BasePolicy

    spy = Spy()
    step_async, predict = InteractiveTrajectoryCollector.step_async, BasePolicy.predict

    def spied_step_async(self: Any, actions: np.ndarray) -> None:
        obs = np.array(self._last_obs)
        step_async(self, actions)
        # DummyVecEnv keeps the actions it was asked to apply.
        spy.steps.append(
            {"beta": self.beta, "obs": obs, "label": np.array(actions), "applied": np.array(self.venv.actions)}
        )

    def spied_predict(
        self: Any, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> Any:
        spy.flags.append(deterministic)
        return predict(self, observation, state, episode_start, deterministic)

    monkeypatch.setattr(InteractiveTrajectoryCollector, "step_async", spied_step_async)
    monkeypatch.setattr(BasePolicy, "predict", spied_predict)
    return spy


def _run_spied(
    monkeypatch: pytest.MonkeyPatch, scenario: Scenario, *, sample_learner: bool
) -> tuple[Spy, DAggerResult]:
    spy = _spy(monkeypatch)

    def on_round_end(round_num: int, policy: Any, n_labels: int) -> None:
        assert n_labels == LABELS * (round_num + 1)
        spy.round_ends.append((round_num, len(spy.steps)))

    config = DAggerConfig(n_rounds=3, labels_per_round=LABELS, epochs_per_round=1, sample_learner=sample_learner)
    result = train_dagger(scenario, "scripted", TINY, config, on_round_end=on_round_end)
    monkeypatch.undo()
    assert spy.round_ends == [(0, LABELS), (1, 2 * LABELS), (2, 3 * LABELS)]
    return spy, result


def _policy_of(result: DAggerResult, iterate: Iterate) -> Any:
    policy = result.best(max_labels=iterate.n_labels)[0]  # no validation: the last within the budget
    for key, value in policy.state_dict().items():
        assert torch.equal(value, iterate.state_dict[key])
    return policy


def _learner_steps(spy: Spy, round_num: int) -> tuple[np.ndarray, np.ndarray]:
    steps = spy.steps[round_num * LABELS : (round_num + 1) * LABELS]
    assert all(s["beta"] == 0.0 for s in steps)  # expert-first: the learner drives every step
    return np.concatenate([s["obs"] for s in steps]), np.concatenate([s["applied"] for s in steps])


def test_the_learner_drives_with_its_argmax(monkeypatch: pytest.MonkeyPatch, highway: Scenario) -> None:
    """Every action applied in rounds >= 1 is the argmax of the policy trained in the round
    before; a policy this uncertain would almost never give it by sampling."""
    spy, result = _run_spied(monkeypatch, highway, sample_learner=False)
    # Round 0 is the expert's alone; after it the learner is asked once per step, for its argmax.
    assert all(s["beta"] == 1.0 and np.array_equal(s["applied"], s["label"]) for s in spy.steps[:LABELS])
    assert spy.flags == [True] * (2 * LABELS)
    for round_num in (1, 2):
        obs, applied = _learner_steps(spy, round_num)
        policy = _policy_of(result, result.iterates[round_num - 1])
        with torch.no_grad():
            probs = policy.get_distribution(torch.as_tensor(obs)).distribution.probs.numpy()
        # Sampling would pick another action than the argmax with probability > 0.4 per step.
        assert probs.max(axis=1).mean() < 0.6
        np.testing.assert_array_equal(applied, probs.argmax(axis=1))


def test_sample_learner_samples(monkeypatch: pytest.MonkeyPatch, highway: Scenario) -> None:
    """The control: with sample_learner the same check sees sampled, non-argmax actions."""
    spy, result = _run_spied(monkeypatch, highway, sample_learner=True)
    assert spy.flags == [False] * (2 * LABELS)
    obs, applied = _learner_steps(spy, 1)
    policy = _policy_of(result, result.iterates[0])
    argmax = policy.predict(obs, deterministic=True)[0]
    assert np.mean(applied != argmax) > 0.2


def test_beta_schedules() -> None:
    assert [DAggerConfig().beta(r) for r in range(3)] == [1.0, 0.0, 0.0]
    linear = DAggerConfig(beta_schedule="linear", rampdown_rounds=2)
    assert [linear.beta(r) for r in range(3)] == [1.0, 0.5, 0.0]


def test_rounds_hold_exactly_their_labels(linear_run: DAggerResult, linear_config: DAggerConfig) -> None:
    log = linear_run.log
    assert list(log["beta"]) == [1.0, 0.5, 0.0]
    assert list(log["round_labels"]) == [LABELS] * 3
    assert list(log["n_labels"]) == [LABELS, 2 * LABELS, 3 * LABELS]
    assert [it.n_labels for it in linear_run.iterates] == list(log["n_labels"])
    assert linear_run.round_seeds == [linear_config.first_seed + r for r in range(3)]
    # The aggregate splits into the rounds at trajectory boundaries; in each round the
    # episodes that ended are counted (with their crashes) and the cut one is last.
    trajs = list(linear_run.trajectories)
    assert sum(len(t.acts) for t in trajs) == 3 * LABELS
    for _, row in log.iterrows():
        in_round, n = [], 0
        while n < LABELS:
            in_round.append(trajs.pop(0))
            n += len(in_round[-1].acts)
        assert n == LABELS
        ended = [t for t in in_round if t.terminal]
        cut = [t for t in in_round if not t.terminal]
        assert len(ended) == row["round_episodes"] >= 1
        assert row["crashes"] == sum(bool(t.infos[-1].get("crashed")) for t in ended)
        assert row["crash_rate"] == row["crashes"] / row["round_episodes"]
        assert [len(t.acts) for t in cut] == ([row["round_cut_labels"]] if row["round_cut_labels"] else [])
        assert not cut or in_round[-1] is cut[0]
    assert not trajs


def test_validation_scores_every_iterate(linear_run: DAggerResult) -> None:
    log = linear_run.log
    assert log[["val/loss", "val/accuracy", "train/loss", "train/accuracy"]].notna().all().all()
    assert [it.val_score for it in linear_run.iterates] == list(log["val/accuracy"])
    policy, chosen = linear_run.best()
    assert chosen.val_score == log["val/accuracy"].max()
    # result.policy is the last iterate.
    for key, value in linear_run.policy.state_dict().items():
        assert torch.equal(value, linear_run.iterates[-1].state_dict[key])


def test_same_seeds_same_run(
    linear_run: DAggerResult, highway: Scenario, linear_config: DAggerConfig, validation: tuple[np.ndarray, np.ndarray]
) -> None:
    again = train_dagger(highway, "scripted", TINY, linear_config, validation=validation)
    pd.testing.assert_frame_equal(again.log, linear_run.log)
    for a, b in zip(again.iterates, linear_run.iterates, strict=True):
        assert a.state_dict.keys() == b.state_dict.keys()
        assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    for a, b in zip(again.trajectories, linear_run.trajectories, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.acts, b.acts)


def _synthetic(scores: list[float]) -> DAggerResult:
    from testbed.clone_io import make_policy

    policy = make_policy(gym.spaces.Box(-1, 1, (5, 5)), gym.spaces.Discrete(5), (8,))
    iterates = [
        Iterate(
            round=r,
            n_labels=40 * (r + 1),
            val_score=score,
            state_dict={k: torch.full_like(v, float(r)) for k, v in policy.state_dict().items()},
        )
        for r, score in enumerate(scores)
    ]
    return DAggerResult(policy=policy, log=pd.DataFrame(), train_episodes=[], val_episodes=[], iterates=iterates)


def test_best_iterate() -> None:
    result = _synthetic([0.5, 0.7, 0.7, 0.9])
    assert result.best()[1].round == 3
    assert result.best(max_labels=150)[1].round == 1  # 0.7 twice: fewer labels
    assert result.best(max_labels=40)[1].round == 0
    with pytest.raises(TestbedError, match="at most 39 expert labels"):
        result.best(max_labels=39)
    policy, chosen = result.best(max_labels=100)
    assert policy is not result.policy and not policy.training
    assert all(torch.equal(v, chosen.state_dict[k]) for k, v in policy.state_dict().items())
    assert all(torch.equal(v, torch.full_like(v, 1.0)) for v in policy.state_dict().values())
    assert not torch.equal(result.policy.action_net.weight, policy.action_net.weight)  # a copy, loaded


def test_best_without_validation_is_the_last_within_budget() -> None:
    result = _synthetic([float("nan")] * 4)
    assert result.best()[1].round == 3
    assert result.best(max_labels=100)[1].round == 1


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"n_rounds": 0}, "--rounds"),
        ({"labels_per_round": 0}, "--labels-per-round"),
        ({"epochs_per_round": 0}, "--epochs-per-round"),
        ({"rampdown_rounds": 0}, "--rampdown-rounds"),
        ({"beta_schedule": "cosine"}, "--beta-schedule"),
        ({"first_seed": -1}, "--first-seed"),
        ({"first_seed": 0}, "--first-seed"),  # the demonstrations' range
        ({"first_seed": DAGGER.stop - 1, "n_rounds": 2}, "--first-seed"),
    ],
)
def test_bad_config(changes: dict[str, Any], flag: str, highway: Scenario) -> None:
    config = DAggerConfig(**changes)
    with pytest.raises(TestbedError, match=flag):
        config.validate()
    with pytest.raises(TestbedError, match=flag):
        train_dagger(highway, "scripted", TINY, config)


def test_bad_sizes(highway: Scenario) -> None:
    with pytest.raises(TestbedError, match="--batch-size"):
        train_dagger(highway, "scripted", TINY, DAggerConfig(labels_per_round=TINY.batch_size - 1))
    obs = np.zeros((3, 5, 5), dtype=np.float32)
    with pytest.raises(TestbedError, match="validation"):
        train_dagger(highway, "scripted", TINY, DAggerConfig(), validation=(obs, np.zeros(2, dtype=np.int64)))
    with pytest.raises(TestbedError, match="validation"):
        train_dagger(highway, "scripted", TINY, DAggerConfig(), validation=(obs[:, :4], np.zeros(3, dtype=np.int64)))


def test_scratch_schedule_takes_bcs_gradient_steps(monkeypatch: pytest.MonkeyPatch, highway: Scenario) -> None:
    """Under ``training="scratch"`` every round trains a fresh network for ``n_epochs`` epochs
    on the aggregate: as many optimiser steps as a BC run (:func:`testbed.training.train_bc`,
    every label trained on) takes on the same labels, the same input standardisation as that
    BC run computes, and the weights each round starts from are a fresh network's, not the
    last round's."""
    import testbed.dagger as dagger_module
    from testbed.clone_io import make_policy
    from testbed.dagger import as_demonstrations
    from testbed.training import observation_statistics, stack_transitions, train_bc

    steps: list[int] = []
    real_step = torch.optim.Adam.step

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return real_step(self, *args, **kwargs)

    starts: list[dict[str, torch.Tensor]] = []
    real_restart = dagger_module._restart

    def spying_restart(dagger_trainer, policy, *args, **kwargs):
        real_restart(dagger_trainer, policy, *args, **kwargs)
        starts.append({k: v.detach().clone() for k, v in policy.state_dict().items()})

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    monkeypatch.setattr(dagger_module, "_restart", spying_restart)
    config = dataclasses.replace(TINY, n_epochs=3, val_fraction=0.0)
    dagger = DAggerConfig(n_rounds=3, labels_per_round=LABELS, training="scratch", epochs_per_round=99)
    per_round: list[tuple[int, int]] = []
    result = train_dagger(
        highway, "scripted", config, dagger, on_round_end=lambda r, p, n: per_round.append((len(steps), n))
    )
    counts = np.diff([0] + [s for s, _ in per_round])
    labels = [n for _, n in per_round]
    assert labels == [LABELS, 2 * LABELS, 3 * LABELS]
    assert list(counts) == [config.n_epochs * (n // config.batch_size) for n in labels]  # not epochs_per_round
    # BC on the same labels (the aggregate up to each round) takes exactly those steps and
    # standardises its inputs exactly as that round did.
    aggregate = as_demonstrations(result, highway, "scripted")
    aggregate = aggregate.with_trajectories(aggregate.trajectories, range(len(aggregate.trajectories)))  # a seed each
    for n, count, iterate in zip(labels, counts, result.iterates, strict=True):
        data = aggregate.first_transitions(n)
        assert data.n_transitions == n
        steps.clear()
        train_bc(data, config)
        assert len(steps) == count, n
        mean, std = (
            torch.as_tensor(v, dtype=torch.float32)
            for v in observation_statistics(stack_transitions(data.trajectories)[0])
        )
        buffers = [k for k in iterate.state_dict if k.endswith("features_extractor.mean")]
        assert buffers
        for key in buffers:
            assert torch.equal(iterate.state_dict[key], mean), key
            assert torch.equal(iterate.state_dict[key.replace(".mean", ".std")], std), key
    # Every round starts from BC's initialisation for this seed (the standardisation aside).
    torch.manual_seed(config.seed)
    fresh = make_policy(result.policy.observation_space, result.policy.action_space, config.net_arch).state_dict()
    assert len(starts) == 3
    for start in starts:
        for key, value in fresh.items():
            if "features_extractor" not in key:
                assert torch.equal(start[key], value), key
    # Continuing instead: epochs_per_round epochs on the aggregate after every round, no restart.
    steps.clear()
    per_round.clear()
    cont = dataclasses.replace(dagger, training="continue", epochs_per_round=2)
    train_dagger(highway, "scripted", config, cont, on_round_end=lambda r, p, n: per_round.append((len(steps), n)))
    assert list(np.diff([0] + [s for s, _ in per_round])) == [2 * (n // config.batch_size) for n in labels]
    assert len(starts) == 3


def test_bad_training_schedule(highway: Scenario) -> None:
    with pytest.raises(TestbedError, match="--dagger-training"):
        train_dagger(highway, "scripted", TINY, DAggerConfig(training="nope"))  # type: ignore[arg-type]
