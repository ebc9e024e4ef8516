"""The handover agent (``handover:AT:FIRST->SECOND``) and experiments/recoverability.py."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import load_experiment
from imitation.data.types import TrajectoryWithRew

from testbed.errors import TestbedError
from testbed.policies import HandoverAgent, PolicySpec, split_handover
from testbed.rollout import EpisodeRecord, rollouts, run_episode
from testbed.scenarios import get_scenario, make_env

LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER = range(5)
AT = 3
"""Handover step of the harness test (the lane changer checks it was reset there)."""


def _decision(env: Any) -> int:
    """Decisions taken so far in ``env``'s episode (``env.steps`` counts simulation frames)."""
    return round(env.time * env.config["policy_frequency"])


def _load() -> Any:
    return load_experiment("recoverability")


class _Spy:
    """Returns ``action`` at every decision and remembers when it was reset and asked."""

    def __init__(self, action: int) -> None:
        self.action = action
        self.resets: list[tuple[int, int]] = []
        self.asked: list[int] = []

    def reset(self, env: Any, seed: int) -> None:
        self.resets.append((seed, _decision(env)))

    def act(self, obs: Any, env: Any) -> int:
        self.asked.append(_decision(env))
        return self.action


class _LaneChanger:
    """Changes lane at every decision if it was reset at decision ``AT``; else FASTER."""

    def reset(self, env: Any, seed: int) -> None:
        self.reset_at = _decision(env)

    def act(self, obs: Any, env: Any) -> int:
        return LANE_LEFT if self.reset_at == AT else FASTER


def lane_changer() -> _LaneChanger:
    """Policy factory ``test_recoverability:lane_changer``."""
    return _LaneChanger()


def test_handover_agent_drives_first_then_second_reset_at_the_handover() -> None:
    env = make_env(get_scenario("highway-fast", {"duration": 8}))
    first, second = _Spy(IDLE), _Spy(LANE_LEFT)
    agent = HandoverAgent(first, 5, second)
    for seed in (10_000, 10_001):  # a second episode starts with the first driver again
        record = run_episode(env, agent, seed, policy_label="h")
        assert list(record.trajectory.acts) == [IDLE] * 5 + [LANE_LEFT] * 3  # no crash on these seeds
    assert first.resets == [(10_000, 0), (10_001, 0)] and first.asked == [0, 1, 2, 3, 4] * 2
    assert second.resets == [(10_000, 5), (10_001, 5)] and second.asked == [5, 6, 7] * 2


def test_handover_at_zero_and_after_the_end() -> None:
    env = make_env(get_scenario("highway-fast", {"duration": 4}))
    first, second = _Spy(IDLE), _Spy(SLOWER)
    record = run_episode(env, HandoverAgent(first, 0, second), 10_000, policy_label="h")
    assert list(record.trajectory.acts) == [SLOWER] * 4 and first.asked == [] and second.resets == [(10_000, 0)]
    first, second = _Spy(IDLE), _Spy(SLOWER)
    run_episode(env, HandoverAgent(first, 10, second), 10_000, policy_label="h")
    assert second.resets == [] and second.asked == []  # the episode ended before the handover


def test_handover_spec_runs_through_the_harness() -> None:
    scenario = get_scenario("highway-fast", {"duration": 7})
    spec = PolicySpec.parse(f"handover:{AT}:idle->test_recoverability:lane_changer")
    assert (
        spec.kind == "handover" and spec.label == spec.text == f"handover:{AT}:idle->test_recoverability:lane_changer"
    )
    records = rollouts(scenario, spec, [10_000, 10_001], n_workers=1)
    for record in records:
        assert split_handover(record.policy)[0] == AT
        # LANE_LEFT only if the second driver was reset at the handover, not at the episode's start.
        assert list(record.trajectory.acts) == [IDLE] * AT + [LANE_LEFT] * 4


def test_handover_spec_names_its_drivers_by_their_labels(tmp_path: pathlib.Path) -> None:
    (tmp_path / "run").mkdir()
    clone = PolicySpec("clone", str(tmp_path / "run"), name="clone:results/x/run")
    spec = PolicySpec.handover(clone, 10, PolicySpec.parse("expert:planner"))
    assert spec.text == f"handover:10:clone:{tmp_path / 'run'}->expert:planner"
    assert spec.label == "handover:10:clone:results/x/run->expert:planner"
    assert split_handover(spec.label) == (10, "clone:results/x/run", "expert:planner")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("handover", "use handover:AT:FIRST->SECOND"),
        ("handover:idle->random", "use handover:AT:FIRST->SECOND"),
        ("handover:x:idle->random", "use handover:AT:FIRST->SECOND"),
        ("handover:-1:idle->random", "use handover:AT:FIRST->SECOND"),
        ("handover:3:idle", "use handover:AT:FIRST->SECOND"),
        ("handover:3:idle->", "use handover:AT:FIRST->SECOND"),
        ("handover:3:idle->random->idle", "use handover:AT:FIRST->SECOND"),
        ("handover:3:idle->handover:2:idle", "cannot contain another"),
        ("handover:3:idle->wizard", "bad policy spec 'wizard'"),
        ("handover:3:expert:nobody->idle", "unknown expert 'nobody'"),
        ("handover:3:clone:/no/such/run->idle", "clone run directory not found"),
    ],
)
def test_bad_handover_specs_are_refused_in_one_line(text: str, fragment: str) -> None:
    with pytest.raises(TestbedError, match="handover spec") as error:
        PolicySpec.parse(text)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def _record(crash_index: int | None, length: int, seed: int = 1) -> EpisodeRecord:
    """A fabricated episode of ``length`` decisions, reward 1 each, crashing at decision index
    ``crash_index`` (its last, None: no crash)."""
    infos = [{"crashed": i == crash_index} for i in range(length)]
    trajectory = TrajectoryWithRew(
        obs=np.zeros((length + 1, 1), np.float32),
        acts=np.ones(length, np.int64),
        infos=np.asarray(infos, dtype=object),
        terminal=crash_index is not None,
        rews=np.ones(length, np.float32),
    )
    return EpisodeRecord(policy="p", seed=seed, trajectory=trajectory)


def test_a_crash_counts_only_inside_the_window() -> None:
    window_row = _load().window_row
    t, window = 5, 4
    before = window_row(_record(t - 1, t), t, window)  # the t-th decision crashed: no handover
    assert not before["reached_t"] and not before["window_crashed"] and before["window_steps"] == 0
    assert before["window_return"] == 0.0
    inside = window_row(_record(t, t + 1), t, window)  # the first decision of the window
    assert inside["reached_t"] and inside["window_crashed"] and inside["window_steps"] == 1
    last = window_row(_record(t + window - 1, t + window), t, window)
    assert last["window_crashed"] and last["window_return"] == window
    after = window_row(_record(t + window, t + window + 1), t, window)  # past the window
    assert after["reached_t"] and not after["window_crashed"] and after["window_steps"] == window
    clean = window_row(_record(None, t + window), t, window)
    assert not clean["window_crashed"] and clean["window_return"] == window


def test_summary_excludes_episodes_without_a_handover_and_pairs_by_seed() -> None:
    module = _load()
    seeds = [10, 11, 12, 13]
    rows = []
    for group, s in (("expert-own", -1), ("handover", 0), ("handover", 1), ("clone-keeps", 0), ("clone-keeps", 1)):
        for seed in seeds:
            excluded = s == 0 and seed == 10  # clone 0 crashed before t on seed 10
            crashed = s == 1 and seed == 11 and group == "handover"  # the expert crashed in the window
            rows.append(
                {
                    "group": group,
                    "takeover": "none" if group == "clone-keeps" else "scripted",
                    "t": 5,
                    "train_seed": s,
                    "seed": seed,
                    "reached_t": not excluded,
                    "window_crashed": crashed,
                    "window_return": 0.0 if excluded else (1.0 if crashed else 2.0),
                }
            )
    table = pd.DataFrame(module.summary_rows(pd.DataFrame(rows), seeds)).set_index("group")
    handover = table.loc["handover"]
    assert handover["n_excluded"] == 1 and handover["n_paired"] == 7 and handover["n_clones"] == 2
    assert handover["crash_rate"] == pytest.approx((0 / 3 + 1 / 4) / 2)  # a mean of the clones' conditional rates
    assert handover["crash_diff"] == pytest.approx(0.125) and handover["return_diff"] == pytest.approx(-0.125)
    assert handover["crash_rate_ci_low"] <= handover["crash_rate"] <= handover["crash_rate_ci_high"] <= 1
    assert table.loc["expert-own", "crash_rate"] == 0 and table.loc["expert-own", "return_diff"] == 0
    assert table.loc["clone-keeps", "crash_rate"] == 0 and table.loc["clone-keeps", "return"] == 2.0


def test_bad_arguments_are_refused() -> None:
    module = _load()
    for changes, fragment in (
        ({"train_seeds": (0,)}, "--train-seeds"),
        ({"train_seeds": (0, 9)}, "demonstrations range"),
        ({"handover_times": (5, 5)}, "--handover-times"),
        ({"test_offset": 999_990}, "test range"),
        ({"takeovers": ()}, "--takeovers"),
    ):
        with pytest.raises(TestbedError, match=fragment):
            module.Args(**changes).validate()


@pytest.mark.slow
def test_fast_run_writes_the_outputs(tmp_path: pathlib.Path) -> None:
    module = _load()
    out = tmp_path / "rec"
    table = module.main(module.Args(fast=True, out=str(out), workers=1))
    args = module.Args(fast=True).resolved()
    assert {p.name for p in out.iterdir()} == {
        "recoverability.csv",
        "episodes.csv",
        "recoverability.png",
        "config.json",
        "clones",
    }
    interval = [f"{m}{s}" for m in module.MEASURES for s in ("", "_ci_low", "_ci_high")]
    assert list(table.columns) == [
        "takeover",
        "t",
        "group",
        "n_clones",
        "n_episodes",
        "n_excluded",
        "n_paired",
        *interval,
    ]
    assert len(table) == len(args.takeovers) * len(args.handover_times) * 3
    for m in module.MEASURES:
        assert ((table[f"{m}_ci_low"] <= table[m] + 1e-12) & (table[m] <= table[f"{m}_ci_high"] + 1e-12)).all(), m
    episodes = pd.read_csv(out / "episodes.csv")
    n, c = args.episodes, len(args.train_seeds)
    assert len(episodes) == len(args.handover_times) * (c + len(args.takeovers) * (1 + c)) * n
    assert episodes["seed"].between(1_700_000, 1_700_000 + n - 1).all()
    # A window exists only after reaching t, lies inside the episode, and holds any crash counted.
    assert not (episodes["window_crashed"] & ~episodes["reached_t"]).any()
    assert (episodes.loc[~episodes["reached_t"], "window_steps"] == 0).all()
    assert (episodes["length"] <= episodes["t"] + args.window).all()
    # The clone drives the same first t decisions with or without a handover.
    hand = episodes[episodes["group"] == "handover"].set_index(["t", "train_seed", "seed", "takeover"])
    keeps = episodes[episodes["group"] == "clone-keeps"].set_index(["t", "train_seed", "seed"])
    assert (hand["reached_t"] == keeps["reached_t"].reindex(hand.index.droplevel("takeover")).to_numpy()).all()
    assert all(split_handover(p)[0] == t for p, t in zip(hand["policy"], hand.index.get_level_values("t")))
    assert (
        not episodes["policy"].str.contains(".tmp-", regex=False).any()
        and episodes["policy"].str.contains(str(out)).any()
    )
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"]["test"]["range"] == "test" and config["seeds"]["test"]["offset"] == 700_000
    assert config["seeds"]["demonstrations"]["used"]["1"][0] == 4_100 + module.DEMO_BLOCK
    png = (out / "recoverability.png").read_bytes()
    module.replot(out)
    assert (out / "recoverability.png").read_bytes() == png
