"""Same seed, same episode; worker count never changes results."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from testbed.policies import PolicySpec
from testbed.rollout import EpisodeRecord, RolloutPool, rollouts
from testbed.scenarios import Scenario


def _same(a: list[EpisodeRecord], b: list[EpisodeRecord]) -> None:
    assert [r.seed for r in a] == [r.seed for r in b]
    for x, y in zip(a, b):
        assert np.array_equal(x.trajectory.obs, y.trajectory.obs)
        assert np.array_equal(x.trajectory.acts, y.trajectory.acts)
        assert np.array_equal(x.trajectory.rews, y.trajectory.rews)
        assert list(x.trajectory.infos) == list(y.trajectory.infos)
        assert x.trajectory.terminal == y.trajectory.terminal


def test_expert_rollouts_are_deterministic(scenario: Scenario) -> None:
    spec = PolicySpec.parse("expert:scripted")
    _same(rollouts(scenario, spec, [5, 6]), rollouts(scenario, spec, [5, 6]))


@pytest.mark.slow
def test_one_and_two_workers_agree(scenario: Scenario, clone_dir) -> None:
    seeds = [100, 101, 102, 103, 104]
    specs = [PolicySpec.parse("random"), PolicySpec.parse(f"clone:{clone_dir}"), PolicySpec.parse("expert:scripted")]
    with RolloutPool(1) as one, RolloutPool(2) as two:
        for spec in specs:
            _same(one.run(scenario, spec, seeds), two.run(scenario, spec, seeds))


def test_random_policy_depends_on_seed_only(scenario: Scenario) -> None:
    spec = PolicySpec.parse("random")
    a = rollouts(scenario, spec, [7, 8])
    b = rollouts(scenario, spec, [8, 7])
    _same(a, list(reversed(b)))
    assert not np.array_equal(a[0].trajectory.acts[:5], a[1].trajectory.acts[:5])


def test_record_contents(scenario: Scenario) -> None:
    (record,) = rollouts(scenario, PolicySpec.parse("expert:scripted"), [11])
    traj = record.trajectory
    n = len(traj.acts)
    assert traj.obs.shape == (n + 1, 5, 5)
    assert len(traj.infos) == n == len(traj.rews)
    assert record.policy == "expert:scripted" and record.seed == 11
    times = [i["t"] for i in traj.infos]
    assert times == sorted(times) and times[0] > 0
    assert all(i["distance_m"] >= 0 for i in traj.infos)
    assert traj.terminal == bool(traj.infos[-1]["crashed"])


def test_labeller_records_expert_actions(scenario: Scenario) -> None:
    # The expert labelling its own states must agree with the actions it took.
    (record,) = rollouts(scenario, PolicySpec.parse("expert:scripted"), [12], labeller="scripted")
    assert record.labels is not None
    assert np.array_equal(record.labels, record.trajectory.acts)
    (idle,) = rollouts(scenario, PolicySpec.parse("idle"), [12], labeller="scripted")
    assert len(idle.labels) == len(idle.trajectory.acts)


def test_noise_keeps_clean_labels(scenario: Scenario) -> None:
    spec = PolicySpec.parse("expert:scripted")
    (noisy,) = rollouts(scenario, spec, [13], noise=0.5, labeller="scripted")
    again = rollouts(scenario, spec, [13], noise=0.5)[0]
    assert np.array_equal(noisy.executed, again.executed)
    # The recorded action is the expert's own choice in the visited state, not the applied one.
    assert np.array_equal(noisy.trajectory.acts, noisy.labels)
    assert noisy.executed is not None and len(noisy.executed) == len(noisy.trajectory.acts)
    clean = rollouts(scenario, spec, [13])[0]
    assert clean.executed is None
    assert np.any(noisy.executed != noisy.trajectory.acts)  # P(no perturbation) ~ 0.6**len


def test_reuse_episodes_returns_earlier_records_only_for_identical_inputs(scenario: Scenario, clone_dir) -> None:
    import dataclasses

    from testbed.rollout import fresh_episodes, reuse_episodes

    expert, clone = PolicySpec.parse("expert:scripted"), PolicySpec.parse(f"clone:{clone_dir}")
    denser = dataclasses.replace(scenario, config={**scenario.config, "vehicles_density": 1.5})
    with RolloutPool(1) as pool:
        with reuse_episodes():
            first = pool.run(scenario, expert, [5, 6])
            mixed = pool.run(scenario, expert, [7, 6, 5])  # hits and a miss, in the order asked
            assert mixed[1] is first[1] and mixed[2] is first[0] and mixed[0].seed == 7
            assert pool.run(denser, expert, [5])[0] is not first[0]  # another config
            assert pool.run(scenario, expert, [5], noise=0.2)[0] is not first[0]  # other noise
            assert pool.run(scenario, expert, [5], labeller="scripted")[0] is not first[0]  # a labeller
            c1, c2 = pool.run(scenario, clone, [5]), pool.run(scenario, clone, [5])
            assert c1[0] is not c2[0]  # clones are files: never reused
            with fresh_episodes():  # timing code opts out
                assert pool.run(scenario, expert, [5])[0] is not first[0]
            assert pool.run(scenario, expert, [5])[0] is first[0]  # and back in
        assert pool.run(scenario, expert, [5])[0] is not first[0]  # the block is over
        _same(mixed, pool.run(scenario, expert, [7, 6, 5]))  # a reused record equals a fresh one


CHILD_RUN = """
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool, reuse_episodes_for_this_process
from testbed.scenarios import get_scenario

reuse_episodes_for_this_process()  # as a scheduler or sweep worker starts
with RolloutPool(1) as pool:
    print(pool.run(get_scenario("highway-fast"), PolicySpec.parse("expert:scripted"), [5])[0].policy)
"""


def test_shared_episodes_reach_the_processes_a_run_starts(scenario: Scenario, tmp_path) -> None:
    import dataclasses
    import os
    import pickle
    import subprocess
    import sys

    import testbed.rollout
    from testbed.rollout import SHARED_EPISODES_ENV, SharedEpisodes, share_episodes

    folder = tmp_path / "episodes"
    expert = PolicySpec.parse("expert:scripted")
    with RolloutPool(1) as pool:
        with share_episodes(folder):
            (first,) = pool.run(scenario, expert, [5])
            (written,) = folder.glob("*.pkl")
            assert not list(folder.glob(".*"))  # no temporary file left
            # A record planted under that key is what a process started in the block reads.
            key, _ = pickle.loads(written.read_bytes())
            SharedEpisodes(folder)[key] = dataclasses.replace(first, policy="planted")
            child = subprocess.run([sys.executable, "-c", CHILD_RUN], capture_output=True, text=True, check=True)
            assert child.stdout.split()[-1] == "planted"
        assert SHARED_EPISODES_ENV not in os.environ and testbed.rollout._REUSED is None  # the block is over
        with share_episodes(folder):  # a new run over the same folder (a resumed reproduce) reads it
            assert pool.run(scenario, expert, [5])[0].policy == "planted"
        written.write_bytes(b"damaged")  # unreadable: simulated again, equal to the first
        with share_episodes(folder):
            (again,) = pool.run(scenario, expert, [5])
    assert again.policy == first.policy
    _same([again], [first])
    child = subprocess.run([sys.executable, "-c", CHILD_RUN], capture_output=True, text=True, check=True)
    assert child.stdout.split()[-1] == "expert:scripted"  # outside a run: nothing shared


def test_a_shared_record_that_does_not_pickle_is_kept_in_memory_only(scenario: Scenario, tmp_path) -> None:
    import dataclasses

    from testbed.rollout import SharedEpisodes

    with RolloutPool(1) as pool:
        (record,) = pool.run(scenario, PolicySpec.parse("expert:scripted"), [5])
    unpicklable = dataclasses.replace(record, policy=lambda: None)  # type: ignore[arg-type]
    store = SharedEpisodes(tmp_path / "episodes")
    store[("key",)] = unpicklable  # no error: the folder is an optimisation only
    assert store.get(("key",)) is unpicklable  # this process keeps it
    assert SharedEpisodes(tmp_path / "episodes").get(("key",)) is None  # others simulate it
    assert list(tmp_path.iterdir()) == []  # no partial file, nor the folder made for it


def _same_records(a: list[EpisodeRecord], b: list[EpisodeRecord]) -> None:
    """Every field of every record equal (labels and executed actions too)."""
    _same(a, b)
    for x, y in zip(a, b):
        assert x.policy == y.policy
        for field in ("labels", "executed"):
            u, v = getattr(x, field), getattr(y, field)
            assert (u is None and v is None) or (u is not None and v is not None and np.array_equal(u, v)), field
        assert x.trajectory.obs.dtype == y.trajectory.obs.dtype and x.trajectory.acts.dtype == y.trajectory.acts.dtype


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [1, 2])
def test_lockstep_and_one_at_a_time_agree(scenario: Scenario, clone_dir, n_workers: int) -> None:
    # More seeds than a job's lanes, so that lanes are refilled as their episodes end.
    seeds = list(range(300, 312))
    clone = PolicySpec.parse(f"clone:{clone_dir}")
    cases = [
        (clone, None, 0.0),
        (clone, PolicySpec.parse("expert:scripted"), 0.3),  # the expert labelling, with noise
        (PolicySpec.parse("expert:scripted"), None, 0.0),
        (PolicySpec.parse("expert:scripted"), PolicySpec.parse(f"clone:{clone_dir}"), 0.0),
        (PolicySpec.parse("random"), None, 0.2),
        (PolicySpec.parse("idle"), None, 0.0),
    ]
    with RolloutPool(n_workers) as sequential, RolloutPool(n_workers, lockstep=True) as lockstep:
        for spec, labeller, noise in cases:
            _same_records(
                sequential.run(scenario, spec, seeds, labeller=labeller, noise=noise),
                lockstep.run(scenario, spec, seeds, labeller=labeller, noise=noise),
            )


def test_lockstep_refills_lanes_and_keeps_seed_order(scenario: Scenario) -> None:
    from testbed.policies import build_agent
    from testbed.rollout import run_episode, run_lockstep
    from testbed.scenarios import make_env

    seeds = [21, 20, 22]  # not sorted: records come back in the order asked
    envs = [make_env(scenario), make_env(scenario)]
    spec = PolicySpec.parse("expert:scripted")
    try:
        agents = [build_agent(spec, scenario) for _ in envs]
        records = run_lockstep(envs, agents, seeds, policy_label=spec.label)
        one = [run_episode(envs[0], agents[0], s, policy_label=spec.label) for s in seeds]
    finally:
        for env in envs:
            env.close()
    _same_records(one, records)


@pytest.mark.slow
def test_batched_clone_actions_equal_one_row_actions(scenario: Scenario, clone_dir, demos_dir) -> None:
    """The batched argmax equals each row's own (near ties are recomputed alone) for every
    batch size up to 64, on the demonstrations' states."""
    from testbed.demos import load_demos
    from testbed.policies import build_agent
    from testbed.runtime import torch_threads

    agent = build_agent(PolicySpec.parse(f"clone:{clone_dir}"), scenario)
    obs = np.concatenate([t.obs for t in load_demos(demos_dir).trajectories])[:400]
    with torch_threads(1):
        single = [agent.act(o, None) for o in obs]
        for n in (1, 2, 3, 7, 16, 33, 64):
            batched = [a for i in range(0, len(obs), n) for a in agent.act_batch(obs[i : i + n])]
            assert batched == single, n


# ---------------------------------------------------------------- cost-weighted error (Scoring)


def _gaps(record: EpisodeRecord) -> np.ndarray:
    return np.array([i["value_gap"] for i in record.trajectory.infos], dtype=float)


def _without_gaps(records: list[EpisodeRecord]) -> list[EpisodeRecord]:
    """The records with ``value_gap`` dropped from their infos (for comparing the episodes)."""
    import dataclasses

    out = []
    for r in records:
        infos = np.array([{k: v for k, v in i.items() if k != "value_gap"} for i in r.trajectory.infos], dtype=object)
        out.append(dataclasses.replace(r, trajectory=dataclasses.replace(r.trajectory, infos=infos)))
    return out


def test_scoring_values_every_kth_step_and_leaves_the_episode_as_it_was() -> None:
    # The planner valuing the states of an always-IDLE driver: every 2nd step scored, the gap is
    # the best value minus IDLE's (>= 0, and > 0 somewhere: IDLE is not always best), the others
    # NaN; the episode (observations, actions, rewards, other infos) is the unscored one.
    from testbed.experts import make_expert
    from testbed.rollout import Scoring, run_episode
    from testbed.scenarios import get_scenario, make_env

    scenario = get_scenario("highway-fast", {"duration": 8})
    scoring = Scoring(PolicySpec.parse("expert:planner"), every=2)
    idle = PolicySpec.parse("idle")
    (scored,) = rollouts(scenario, idle, [10_003], scoring=scoring)
    (plain,) = rollouts(scenario, idle, [10_003])
    _same(_without_gaps([scored]), [plain])
    gaps = _gaps(scored)
    assert np.isnan(gaps[1::2]).all() and not np.isnan(gaps[::2]).any()
    assert (gaps[::2] >= 0).all() and (gaps[::2] > 0).any()
    # The gap is the planner's own value difference at that state (replayed by hand).
    env, planner = make_env(scenario), make_expert("planner")
    env.reset(seed=10_003)
    idle_index = env.unwrapped.action_type.actions_indexes["IDLE"]
    values = planner.action_values(env.unwrapped)
    assert gaps[0] == max(values.values()) - values[idle_index]
    # The planner driving itself never leaves value on the table.
    (own,) = rollouts(scenario, PolicySpec.parse("expert:planner"), [10_003], scoring=Scoring(scoring.scorer, 1))
    assert (_gaps(own) == 0).all()
    record = run_episode(
        env, make_expert("planner"), 10_003, policy_label="p", scorer=make_expert("planner"), score_every=1
    )
    assert (_gaps(record) == 0).all()
    env.close()


def test_scoring_is_the_same_in_workers_and_in_lockstep() -> None:
    from testbed.rollout import Scoring
    from testbed.scenarios import get_scenario

    scenario = get_scenario("highway-fast", {"duration": 4})
    scoring, spec, seeds = Scoring(PolicySpec.parse("expert:planner"), every=3), PolicySpec.parse("random"), [4, 5, 6]
    with RolloutPool(1) as one, RolloutPool(2) as two, RolloutPool(1, lockstep=True) as lanes:
        a = one.run(scenario, spec, seeds, scoring=scoring)
        for other in (
            two.run(scenario, spec, seeds, scoring=scoring),
            lanes.run(scenario, spec, seeds, scoring=scoring),
        ):
            _same(_without_gaps(a), _without_gaps(other))
            for x, y in zip(a, other):
                np.testing.assert_array_equal(_gaps(x), _gaps(y))


def test_scoring_refuses_an_expert_that_does_not_value_actions() -> None:
    from testbed.errors import TestbedError
    from testbed.rollout import Scoring
    from testbed.scenarios import get_scenario

    with pytest.raises(TestbedError, match="values actions"):
        rollouts(
            get_scenario("highway-fast"),
            PolicySpec.parse("idle"),
            [1],
            scoring=Scoring(PolicySpec.parse("expert:scripted")),
        )
    with pytest.raises(TestbedError, match="every must be at least 1"):
        rollouts(
            get_scenario("highway-fast"),
            PolicySpec.parse("idle"),
            [1],
            scoring=Scoring(PolicySpec.parse("expert:planner"), 0),
        )


def _count_planner_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each call of the planner's search in this process appends to the list returned."""
    from testbed.experts.planner import PlannerExpert

    calls: list[int] = []
    search = PlannerExpert.action_values

    def counted(self: PlannerExpert, env: object) -> dict[int, float]:
        calls.append(1)
        return search(self, env)

    monkeypatch.setattr(PlannerExpert, "action_values", counted)
    return calls


def _states(records: list[EpisodeRecord], *, after: bool = False) -> set[tuple[int, tuple[int, ...]]]:
    """The distinct (seed, actions applied before) states the records visited before each step,
    or, ``after``, the distinct steps they took (the actions up to and including the step)."""
    return {
        (r.seed, tuple(int(a) for a in r.trajectory.acts[: t + after]))
        for r in records
        for t in range(len(r.trajectory.acts))
    }


def test_expert_decisions_are_reused_at_the_same_state_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two drivers start from the same states (same seeds) and part: with the planner labelling
    # and valuing, inside reuse_episodes it searches once per distinct state (act + values),
    # and every record equals the one computed without reuse (a key without the actions
    # applied would hand IDLE's labels to the random driver).
    from testbed.rollout import Scoring, forget_kept, fresh_episodes, reuse_episodes
    from testbed.scenarios import get_scenario

    calls = _count_planner_calls(monkeypatch)
    scenario = get_scenario("highway-fast", {"duration": 5})
    planner = PolicySpec.parse("expert:planner")
    drivers = [PolicySpec.parse("idle"), PolicySpec.parse("random")]
    seeds, scoring = [3, 4], Scoring(planner, every=1)
    with RolloutPool(1) as pool, RolloutPool(1, lockstep=True) as lanes:
        plain = [pool.run(scenario, d, seeds, labeller=planner, scoring=scoring) for d in drivers]
        assert len(calls) == 2 * sum(len(r.trajectory.acts) for runs in plain for r in runs)
        for runner in (pool, lanes):
            calls.clear()
            with reuse_episodes():
                reused = [runner.run(scenario, d, seeds, labeller=planner, scoring=scoring) for d in drivers]
            for a, b in zip(plain, reused):
                _same_records(a, b)
                for x, y in zip(a, b):
                    np.testing.assert_array_equal(_gaps(x), _gaps(y))
            distinct = _states([r for runs in plain for r in runs])
            assert len(calls) == 2 * len(distinct) < 2 * sum(len(r.trajectory.acts) for runs in plain for r in runs)
            forget_kept()  # the next runner starts with nothing kept
        calls.clear()
        with reuse_episodes(), fresh_episodes():  # timed rollouts ask every decision
            pool.run(scenario, drivers[0], seeds, labeller=planner)
        assert len(calls) == sum(len(r.trajectory.acts) for r in plain[0])


def test_expert_decisions_reach_other_processes_through_the_run_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from testbed.rollout import forget_kept, read_kept_lookups, share_episodes
    from testbed.scenarios import get_scenario

    scenario = get_scenario("highway-fast", {"duration": 4})
    planner, idle, random = (PolicySpec.parse(s) for s in ("expert:planner", "idle", "random"))
    folder = tmp_path / "episodes"
    with share_episodes(folder), RolloutPool(2) as pool:  # one of the seeds runs in the worker
        first = pool.run(scenario, idle, [3, 4, 5], labeller=planner)
    files = list((folder / "decisions").iterdir())
    assert len(files) == len(_states(first)) and all(f.suffix == ".pkl" for f in files)
    assert len(list((folder / "steps").iterdir())) == len(_states(first, after=True))
    forget_kept()  # as in a process started later in the run
    calls = _count_planner_calls(monkeypatch)
    with share_episodes(folder), RolloutPool(1) as pool:
        second = pool.run(scenario, random, [3, 4, 5], labeller=planner)
    assert len(calls) == len(_states(second) - _states(first)) < len(_states(second))
    forget_kept()
    # Every process of both runs (whichever ran each episode) counted what it read and
    # computed, into the run's folder, and the counts add up.
    kept = read_kept_lookups(folder)
    assert kept["processes"]["count"] >= 1
    assert kept["episodes"] == {"read": 0, "computed": 6}
    decisions, steps = kept["decisions"], kept["steps"]
    assert decisions["computed"] == len(_states(first)) + len(calls)
    assert decisions["read"] == len(_states(second)) - len(calls) > 0
    shared = _states(second, after=True) & _states(first, after=True)
    assert steps["read"] == len(shared) > 0
    assert steps["computed"] == len(_states(first, after=True) | _states(second, after=True))
    assert decisions["computed_s"] > 0 and steps["computed_s"] > 0
    (folder / "lookups" / "damaged.json").write_text('{"steps": [1, 2')  # left out, not an error
    (folder / "lookups" / "foreign.json").write_text('{"episodes": [1, 0, 1, 0], "steps": [1, 2]}')
    assert read_kept_lookups(folder) == kept


def test_simulated_steps_are_kept_and_continued_from_to_the_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    # A handover drives IDLE's first steps, so inside reuse_episodes it continues from the
    # env that IDLE's episode kept after each of them: env.step runs once per distinct step,
    # and every record (observations, rewards, the expert's labels, the tracker's infos)
    # equals the one simulated step by step, one episode at a time and in lockstep.
    import gymnasium as gym

    from testbed.rollout import forget_kept, fresh_episodes, reuse_episodes
    from testbed.scenarios import get_scenario

    steps: list[int] = []
    step = gym.wrappers.TimeLimit.step

    def counted(self: Any, action: Any) -> Any:
        steps.append(1)
        return step(self, action)

    monkeypatch.setattr(gym.wrappers.TimeLimit, "step", counted)
    scenario = get_scenario("highway-fast", {"duration": 8})
    drivers = [PolicySpec.parse(s) for s in ("idle", "handover:4:idle->random", "handover:2:idle->random")]
    seeds, labeller = [3, 4], PolicySpec.parse("expert:scripted")
    with RolloutPool(1) as pool, RolloutPool(1, lockstep=True) as lanes:
        with fresh_episodes():
            plain = [pool.run(scenario, d, seeds, labeller=labeller) for d in drivers]
        n_steps = sum(len(r.trajectory.acts) for runs in plain for r in runs)
        for runner in (pool, lanes):
            steps.clear()
            with reuse_episodes():
                kept = [runner.run(scenario, d, seeds, labeller=labeller) for d in drivers]
            for a, b in zip(plain, kept):
                _same_records(a, b)
            assert len(steps) == len(_states([r for runs in plain for r in runs], after=True)) < n_steps
            forget_kept()


def test_a_python_policy_driving_keeps_no_expert_decisions() -> None:
    # A user's policy sees the simulator and might change it behind the applied actions.
    from testbed.rollout import _kept_place, reuse_episodes

    planner = PolicySpec.parse("expert:planner")
    with reuse_episodes():
        assert _kept_place(PolicySpec.parse("idle"), planner, None) is not None
        assert _kept_place(PolicySpec("python", "my_policy.py:make"), planner, None) is None
        assert _kept_place(PolicySpec.parse("idle"), PolicySpec("python", "my_policy.py:make"), None) is None
    assert _kept_place(PolicySpec.parse("idle"), planner, None) is None  # outside reuse: nowhere


def test_camera_scenarios_keep_no_steps() -> None:
    # The renderer behind a camera's frames does not pickle, and a frame is large.
    from testbed.rollout import _kept, _Task
    from testbed.scenarios import get_scenario

    for name, steps in (("highway-fast", True), ("highway-fast-camera", False)):
        task = _Task(get_scenario(name), PolicySpec.parse("idle"), None, 0.0, 3, kept=":memory:")
        kept = _kept(task, name)
        assert kept is not None and (kept.steps is not None) == steps


def _count_one_step_read(folder: str) -> None:
    from testbed.rollout import LOOKUPS

    LOOKUPS.bind(folder)
    LOOKUPS.count("steps", True, 0.5)
    LOOKUPS.flush()


def test_lookup_counts_are_each_process_own(tmp_path) -> None:
    # A forked child starts from none of its parent's counts, and a process that moves to
    # another run writes what it counted for the first one there first.
    import multiprocessing

    from testbed.rollout import LOOKUPS, KeptLookups, read_kept_lookups

    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    LOOKUPS.bind(first)
    for found in (False, False, True):
        LOOKUPS.count("decisions", found, 1.0)
    child = multiprocessing.get_context("fork").Process(target=_count_one_step_read, args=(first,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    LOOKUPS.bind(second)  # this process's counts for ``first`` are written now
    LOOKUPS.count("episodes", True)
    LOOKUPS.bind(None)
    counts = read_kept_lookups(tmp_path / "first")
    assert counts["processes"] == {"count": 2}
    assert counts["decisions"] == {"read": 1, "computed": 2, "read_s": 1.0, "computed_s": 2.0}
    assert counts["steps"] == {"read": 1, "computed": 0, "read_s": 0.5, "computed_s": 0.0}
    assert read_kept_lookups(tmp_path / "second")["episodes"] == {"read": 1, "computed": 0}
    assert set(counts) == {*KeptLookups.KINDS, "processes"}
