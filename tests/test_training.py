"""BC training, safe policy files, and a statistical test that cloning works."""

from __future__ import annotations

import os
import pathlib

import gymnasium as gym
import highway_env  # noqa: F401  (registers highway-fast-v0 for the plain-gym test)
import numpy as np
import pandas as pd
import pytest
import torch

from testbed.clone_io import load_clone, load_policy, read_clone_metadata
from testbed.demos import load_demos
from testbed.errors import TestbedError
from testbed.metrics import episodes_table, summarize
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.training import TrainConfig, parse_net_arch, split_episodes, train_bc


def test_split_is_by_episode_and_disjoint() -> None:
    train, val = split_episodes(20, 0.2, seed=0)
    assert len(val) == 4 and len(train) == 16
    assert not set(train) & set(val) and set(train) | set(val) == set(range(20))
    assert split_episodes(20, 0.2, seed=0) == (train, val)
    assert split_episodes(1, 0.2, seed=0) == ([0], [])
    assert split_episodes(5, 0.0, seed=0)[1] == []


def test_training_log_and_metadata(clone_dir: pathlib.Path) -> None:
    log = pd.read_csv(clone_dir / "train_log.csv")
    assert list(log.columns) == ["epoch", "train/loss", "train/accuracy", "val/loss", "val/accuracy"]
    assert list(log["epoch"]) == list(range(10, 61, 10))  # evaluated every 10 epochs and at the end
    assert log["train/loss"].iloc[-1] < log["train/loss"].iloc[0]
    assert log["train/accuracy"].iloc[-1] > 0.6
    meta = read_clone_metadata(clone_dir)
    assert meta["algorithm"] == "bc" and meta["config"]["n_epochs"] == 60
    train_seeds, val_seeds = meta["demos"]["train_seeds"], meta["demos"]["val_seeds"]
    assert len(val_seeds) == 6 and not set(train_seeds) & set(val_seeds)
    # Label counting counts only the labels trained on, not the validation split's.
    demos = load_demos(meta["demos"]["path"])
    lengths = {seed: len(t.acts) for seed, t in zip(demos.seeds, demos.trajectories)}
    assert meta["demos"]["n_train_labels"] == sum(lengths[s] for s in train_seeds) < demos.n_transitions


def test_training_is_deterministic(demos_dir: pathlib.Path) -> None:
    demos = load_demos(demos_dir)
    config = TrainConfig(n_epochs=2, batch_size=32, seed=3)
    a, b = train_bc(demos, config), train_bc(demos, config)
    pd.testing.assert_frame_equal(a.log, b.log)
    for p, q in zip(a.policy.parameters(), b.policy.parameters()):
        assert torch.equal(p, q)


def test_policy_round_trip(clone_dir: pathlib.Path, demos_dir: pathlib.Path) -> None:
    policy = load_policy(clone_dir / "policy.pt")
    again = load_policy(clone_dir / "policy.pt")
    obs = np.stack([t.obs[0] for t in load_demos(demos_dir).trajectories])
    a, _ = policy.predict(obs, deterministic=True)
    b, _ = again.predict(obs, deterministic=True)
    assert np.array_equal(a, b)


def test_clone_drives_plain_gym_env(clone_dir: pathlib.Path) -> None:
    policy = load_clone(clone_dir)
    env = gym.make("highway-fast-v0")
    obs, _ = env.reset(seed=12345)
    for _ in range(5):
        action, _ = policy.predict(obs, deterministic=True)
        assert env.action_space.contains(int(action))
        obs, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            break
    env.close()


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/testbed-pwned",))


def test_loader_never_executes_code(tmp_path: pathlib.Path) -> None:
    marker = pathlib.Path("/tmp/testbed-pwned")
    marker.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "data": {"x": _Boom()}}, evil)
    with pytest.raises(TestbedError, match="not a loadable policy file"):
        load_policy(evil)
    assert not marker.exists()


def test_loader_rejects_non_policies(tmp_path: pathlib.Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(TestbedError, match="not a loadable policy file"):
        load_policy(text)
    tensors = tmp_path / "tensors.pt"
    torch.save({"weights": torch.zeros(3)}, tensors)
    with pytest.raises(TestbedError, match="not a policy file"):
        load_policy(tensors)
    with pytest.raises(TestbedError, match="not found"):
        load_policy(tmp_path / "missing.pt")


def test_bad_configs(demos_dir: pathlib.Path) -> None:
    demos = load_demos(demos_dir)
    with pytest.raises(TestbedError, match="fewer than --batch-size"):
        train_bc(demos, TrainConfig(n_epochs=1, batch_size=10**6))
    for bad in (TrainConfig(n_epochs=0), TrainConfig(val_fraction=1.0), TrainConfig(learning_rate=-1.0)):
        with pytest.raises(TestbedError):
            bad.validate()
    with pytest.raises(TestbedError):
        parse_net_arch("64,x")
    assert parse_net_arch("128, 32") == (128, 32)


@pytest.mark.slow
def test_clone_beats_random(scenario, clone_dir: pathlib.Path) -> None:
    """Statistical learning test: the clone's paired return advantage over uniform random
    actions has a 95% CI entirely above zero on held-out seeds."""
    seeds = list(range(10_000, 10_030))
    specs = [PolicySpec.parse(f"clone:{clone_dir}"), PolicySpec.parse("random")]
    with RolloutPool(2) as pool:
        records = [r for spec in specs for r in pool.run(scenario, spec, seeds)]
    summary = summarize(episodes_table((r.policy, r.seed, r.trajectory) for r in records), reference="random")
    clone = summary[summary["policy"] == specs[0].label].iloc[0]
    assert clone["return_diff_ci_low"] > 0, clone.to_dict()


def test_committed_clones_still_load() -> None:
    """The committed clone loads through the safe allow-list (the rebuilt clone no longer names
    testbed.training.zero_schedule, the pre-clone_io format the allow-list still accepts)."""
    from testbed.clone_io import load_clone

    run = pathlib.Path(__file__).resolve().parent.parent / "results" / "pipeline" / "highway-fast" / "clone"
    from testbed.scenarios import get_scenario

    policy = load_clone(run, scenario=get_scenario("highway-fast"))
    assert policy.action_space.n == 5


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True")  # imitation logs float(loss)
@pytest.mark.parametrize(
    ("actions", "l2_weight", "through_loader"),
    [("discrete", 0.0, False), ("discrete", 1e-2, True), ("continuous", 0.0, False)],
)
def test_cheap_batch_trainer_is_imitations_bc_bit_for_bit(
    demos_dir: pathlib.Path, tmp_path: pathlib.Path, actions: str, l2_weight: float, through_loader: bool
) -> None:
    """The trainer make_bc_trainer builds (batches gathered from stacked tensors, statistics
    computed only for logged batches) trains exactly as an unmodified imitation BC on the same
    data and seed: the same weights to the bit, the same bc/* statistics at every logged batch,
    the same losses in mid-training evaluations and the same draws from torch's generator; given
    transitions (BC's case) or a DataLoader over them (DAgger's), at L2 weight 0 (no L2 norm in
    its cheap batches) or not, for discrete and continuous actions."""
    from imitation.algorithms import bc
    from imitation.data import rollout, types
    from imitation.util import logger as im_logger
    from torch.utils.data import DataLoader

    from testbed.clone_io import make_policy
    from testbed.spaces import space_from_dict
    from testbed.training import bc_trainer_class, make_bc_trainer, observation_statistics

    demos = load_demos(demos_dir)
    transitions = rollout.flatten_trajectories(demos.trajectories)
    obs_space = space_from_dict(demos.metadata.observation_space)
    act_space: gym.Space = space_from_dict(demos.metadata.action_space)
    if actions == "continuous":
        act_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        labels = np.random.default_rng(0).uniform(-1, 1, (len(transitions), 2)).astype(np.float32)
        transitions = types.Transitions(
            obs=transitions.obs,
            acts=labels,
            infos=transitions.infos,
            next_obs=transitions.next_obs,
            dones=transitions.dones,
        )
    config = TrainConfig(batch_size=32, net_arch=(32, 32), l2_weight=l2_weight, seed=5)
    used = make_bc_trainer(make_policy(obs_space, act_space, (8,)), config, log_dir=str(tmp_path / "unused"))
    assert type(used) is bc_trainer_class()
    mean, std = observation_statistics(transitions.obs)

    runs = {}
    for name, trainer_class in (("imitation", bc.BC), ("testbed", bc_trainer_class())):
        torch.manual_seed(config.seed)
        policy = make_policy(obs_space, act_space, config.net_arch, obs_mean=mean, obs_std=std)
        data = transitions
        if through_loader:  # as DAggerTrainer hands over its aggregate
            data = DataLoader(transitions, 32, shuffle=True, drop_last=True, collate_fn=types.transitions_collate_fn)
        trainer = trainer_class(
            observation_space=obs_space,
            action_space=act_space,
            rng=np.random.default_rng(config.seed),
            policy=policy,
            demonstrations=data,
            batch_size=config.batch_size,
            optimizer_kwargs={"lr": config.learning_rate},
            ent_weight=config.ent_weight,
            l2_weight=config.l2_weight,
            device="cpu",
            custom_logger=im_logger.configure(str(tmp_path / name), format_strs=["csv"]),
        )
        evaluations: list[float] = []

        def evaluate(trainer=trainer, policy=policy, evaluations=evaluations) -> None:
            with torch.no_grad():
                evaluations.append(trainer.loss_calculator(policy, transitions.obs, transitions.acts).loss.item())

        trainer.train(n_epochs=3, log_interval=4, on_epoch_end=evaluate, progress_bar=False)
        trainer.logger.close()
        runs[name] = (
            policy.state_dict(),
            evaluations,
            torch.get_rng_state(),
            (tmp_path / name / "progress.csv").read_text(),
        )

    (weights, evaluations, rng_state, statistics), (weights2, evaluations2, rng_state2, statistics2) = runs.values()
    assert list(weights) == list(weights2)
    assert all(weights[k].numpy().tobytes() == weights2[k].numpy().tobytes() for k in weights)
    assert evaluations == evaluations2 and len(evaluations) == 3
    assert torch.equal(rng_state, rng_state2)
    assert statistics == statistics2
    logged = pd.read_csv(tmp_path / "testbed" / "progress.csv")
    assert len(logged) == len(range(0, 3 * (len(transitions) // 32), 4))  # batches 0, 4, 8, ...
    assert logged["bc/prob_true_act"].notna().all() and logged["bc/l2_norm"].notna().all()
