"""experiments/realizability.py: the same-step pooling of eps_on/eps_off (testbed.drift), the
decomposition arithmetic (testbed.metrics), the kinrich sensor, and one --fast run end to end
(with a --plot-only redraw)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import load_experiment
from imitation.data.types import TrajectoryWithRew

from testbed.drift import TeacherAndClone, aligned_steps, pooled_shift, step_bins
from testbed.errors import TestbedError
from testbed.metrics import ValScore, learning_curve_gaps, rate_ci, ratio_ci
from testbed.rollout import EpisodeRecord
from testbed.scenarios import get_scenario, make_env
from testbed.seeds import TEST


def _load() -> Any:
    return load_experiment("realizability")


rz = _load()


def _ordered(row, name: str) -> bool:
    return row[f"{name}_ci_low"] - 1e-12 <= row[name] <= row[f"{name}_ci_high"] + 1e-12


def test_same_step_pooling_known_answer() -> None:
    # Seed 1: the clone ran 3 steps, the teacher 2; seed 2: the clone 2, the teacher 3.
    on = {1: np.array([1, 1, 1]), 2: np.array([0, 1])}
    off = {1: np.array([0, 1]), 2: np.array([1, 0, 1])}
    steps = aligned_steps(on, off)
    assert steps[["seed", "step"]].values.tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    pooled = pooled_shift(steps)
    # Only the pairs both runs reached: eps_on 3/4, eps_off 2/4 (over every step: 4/5 and 3/5).
    assert pooled["eps_on"] == pytest.approx(0.75)
    assert pooled["eps_off"] == pytest.approx(0.5)
    assert pooled["shift"] == pytest.approx(0.25)
    assert (pooled["n_pairs"], pooled["n_seeds"]) == (4, 2)
    for name in ("eps_on", "eps_off", "shift"):
        assert _ordered(pooled, name)
    bins = step_bins(steps, 1)
    assert bins["step_lo"].tolist() == [1, 2] and bins["n"].tolist() == [2, 2]
    assert bins["eps_on"].tolist() == pytest.approx([0.5, 1.0])
    assert bins["eps_off"].tolist() == pytest.approx([0.5, 0.5])
    # The pooled shift is the pair-weighted mean of the per-step shifts.
    assert float((bins["shift"] * bins["n"]).sum() / bins["n"].sum()) == pytest.approx(pooled["shift"])
    with pytest.raises(ValueError, match="share their seeds"):
        aligned_steps(on, {1: off[1]})


def _episode(seed: int, rewards: list[float], *, crashed: bool) -> EpisodeRecord:
    n = len(rewards)
    info = {"speed": 20.0, "distance_m": 1.0, "lane_change": False, "rightmost": True}
    infos = [{**info, "crashed": crashed and i == n - 1} for i in range(n)]
    traj = TrajectoryWithRew(
        obs=np.zeros((n + 1, 1), dtype=np.float32),
        acts=np.ones(n, dtype=np.int64),
        infos=np.asarray(infos, dtype=object),
        terminal=True,
        rews=np.asarray(rewards, dtype=np.float32),
    )
    return EpisodeRecord("p", seed, traj)


def test_teacher_and_clone_columns_known_answer() -> None:
    # The teacher drives seeds 2 and 1 (3 steps each); the clone drives them in the other order
    # and crashes on seed 2 after 1 step. Disagreements: on its own states 1/1 and 0/3, offline on
    # the teacher's 1/3 and 0/3.
    teacher = [_episode(2, [1, 1, 1], crashed=False), _episode(1, [1, 1, 1], crashed=False)]
    clone = [_episode(1, [1, 1, 1], crashed=False), _episode(2, [0.5], crashed=True)]
    on = {1: np.array([0.0, 0, 0]), 2: np.array([1.0])}
    off = {1: np.array([0.0, 0, 0]), 2: np.array([1.0, 0, 0])}
    runs = TeacherAndClone(teacher, clone, on, off)
    assert runs.seeds == [1, 2]
    episodes = runs.episodes(teacher="t", sensor="s")
    assert list(episodes.columns) == ["teacher", "sensor", "role", "seed", "return", "crashed", "length", "n_disagree"]
    assert episodes[["role", "seed", "n_disagree"]].values.tolist() == [
        ["teacher", 2, 1.0],
        ["teacher", 1, 0.0],
        ["clone", 1, 0.0],
        ["clone", 2, 1.0],
    ]
    c = runs.columns()
    # Same steps: seed 1 steps 1-3 and seed 2 step 1 -> eps_on 1/4, eps_off 1/4; every step: 1/4, 1/6.
    assert (c["eps_on"], c["eps_off"], c["shift"], c["n_pairs"], c["n_seeds"]) == pytest.approx((0.25, 0.25, 0, 4, 2))
    assert (c["eps_on_all"], c["eps_off_all"]) == pytest.approx((0.25, 1 / 6))
    assert (c["teacher_return"], c["clone_return"]) == pytest.approx((3.0, 1.75))
    assert (c["teacher_crash_rate"], c["clone_crash_rate"]) == pytest.approx((0.0, 0.5))
    assert c["return_diff"] == pytest.approx(-1.25)  # paired by seed: (0 + -2.5) / 2
    for name in ("eps_on", "eps_off_all", "teacher_return", "clone_crash_rate", "return_diff"):
        assert _ordered(c, name), name


def test_ratio_ci_pools_steps_and_resamples_episodes() -> None:
    ci = ratio_ci([1, 0], [1, 9])  # pooled 1/10, not the mean of the episodes' rates (0.5)
    assert ci.mean == pytest.approx(0.1) and 0 <= ci.low <= ci.mean <= ci.high <= 1
    assert ratio_ci([2], [4]).low == ratio_ci([2], [4]).high == 0.5
    same = ratio_ci([1, 2, 3], [2, 4, 6])  # every episode the same rate: no spread
    assert (same.low, same.mean, same.high) == pytest.approx((0.5, 0.5, 0.5))
    # Differences may be negative; the interval of a clearly positive shift excludes 0.
    assert ratio_ci([-1, 1, 0], [3, 3, 3]).low < 0 < ratio_ci([3, 2, 4, 3], [10] * 4).low
    with pytest.raises(ValueError):
        ratio_ci([1, 2], [3])


def _scores(correct_by_n: dict[int, list[int]], labels: list[int]) -> list:
    return [ValScore(n, np.array(c), np.array(labels)) for n, c in correct_by_n.items()]


def test_decomposition_arithmetic() -> None:
    labels = [50, 50]
    rising = _scores({10: [25, 25], 30: [35, 35], 100: [40, 40], 300: [44, 46]}, labels)
    d = learning_curve_gaps(rising, 100)
    assert d["n_saturated"] == 300 and d["acc_sat"] == pytest.approx(0.9) and d["acc_actual"] == pytest.approx(0.8)
    assert d["realizability_gap"] == pytest.approx(0.1) and d["estimation_gap"] == pytest.approx(0.1)
    # The two learning-curve terms add up to the clone's validation error.
    assert d["realizability_gap"] + d["estimation_gap"] == pytest.approx(1 - d["acc_actual"])
    sat = rate_ci(90, 100)
    assert (d["realizability_gap_ci_low"], d["realizability_gap_ci_high"]) == pytest.approx((1 - sat.high, 1 - sat.low))
    assert d["last_gain"] == pytest.approx(0.1) and d["last_gain_ci_low"] > 0 and not d["saturated"]
    for name in ("acc_sat", "acc_actual", "realizability_gap", "estimation_gap", "last_gain"):
        assert _ordered(d, name), name

    peaked = _scores({10: [25, 25], 30: [35, 35], 100: [40, 40], 300: [38, 40]}, labels)
    d = learning_curve_gaps(peaked, 100)
    assert d["n_saturated"] == 100 and d["estimation_gap"] == 0 and d["estimation_gap_ci_high"] == 0
    assert d["last_gain"] == pytest.approx(-0.02) and d["saturated"]
    tie = learning_curve_gaps(_scores({30: [40, 40], 100: [40, 40]}, labels), 100)
    assert tie["n_saturated"] == 30 and tie["estimation_gap"] == 0

    with pytest.raises(ValueError, match="no clone of 100"):
        learning_curve_gaps(rising[:2], 100)
    with pytest.raises(ValueError, match="same validation set"):
        learning_curve_gaps([*rising[:3], ValScore(300, np.array([1, 1]), np.array([2, 2]))], 100)
    with pytest.raises(ValueError):
        ValScore(10, np.array([3]), np.array([2]))


def test_rows_are_validated() -> None:
    assert rz.parse_row("scripted:kinrich") == ("scripted", "kinrich")
    assert rz.parse_row("planner") == ("planner", "kinematics")
    for text, fragment in (("scripted:sonar", "unknown sensor"), ("oracle:kinematics", "teacher must be")):
        with pytest.raises(TestbedError, match=fragment):
            rz.parse_row(text)
    with pytest.raises(TestbedError, match="realizable row needs"):
        rz.Args(rows=("realizable:kinematics", "scripted:kinematics")).validate()
    with pytest.raises(TestbedError, match="realizable row needs"):
        rz.Args(rows=("scripted:kinematics", "realizable:kinrich")).validate()
    with pytest.raises(TestbedError, match="validation seeds"):
        rz.Args(sizes=(10, 5000)).validate()
    rz.Args().validate()
    rz.Args(fast=True).resolved().validate()


def test_kinrich_sensor_sees_more() -> None:
    scenario = get_scenario("highway-fast", {"duration": 6}, sensor="kinrich")
    assert scenario.name == "highway-fast-kinrich"
    config = scenario.config["observation"]
    assert config["vehicles_count"] == 10 and config["see_behind"] is True
    assert config["features"] == ["presence", "x", "y", "vx", "vy", "cos_h", "sin_h"]
    env = make_env(scenario)
    behind = 0
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            assert obs.shape == (10, 7) and env.observation_space.contains(obs)
            behind += int(((obs[1:, 0] == 1) & (obs[1:, 1] < 0)).sum())  # other vehicles behind the ego
            obs, _, terminated, truncated, _ = env.step(1)
            done = terminated or truncated
    env.close()
    assert behind > 0, "see_behind: some vehicle behind the ego should be observed"


@pytest.mark.slow
def test_realizability_fast_end_to_end(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "rz"
    tables = rz.main(rz.Args(fast=True, out=str(out), workers=2))
    for name in ("curve.csv", "decomposition.csv", "shift_steps.csv", "episodes.csv", "config.json"):
        assert (out / name).is_file(), name
    curve = pd.read_csv(out / "curve.csv")
    decomposition = pd.read_csv(out / "decomposition.csv")
    bins = pd.read_csv(out / "shift_steps.csv")
    rows = [
        ("scripted", "kinematics"),
        ("planner", "kinematics"),
        ("realizable", "kinematics"),
        ("scripted", "kinrich"),
    ]
    assert list(zip(decomposition["teacher"], decomposition["sensor"])) == rows
    assert {"teacher", "sensor", "n_episodes", "n_labels", "train_seed", "val_accuracy"} <= set(curve.columns)
    assert set(curve["n_episodes"]) == {1, 2, 4}
    assert {"teacher", "sensor", "step_lo", "step_hi", "eps_on", "eps_off", "n"} <= set(bins.columns)
    intervals = {
        "curve": (curve, ["val_accuracy"]),
        "decomposition": (
            decomposition,
            [
                "acc_sat",
                "acc_actual",
                "realizability_gap",
                "estimation_gap",
                "eps_on",
                "eps_off",
                "shift",
                "teacher_return",
                "teacher_crash_rate",
                "clone_return",
                "clone_crash_rate",
                "return_diff",
            ],
        ),
        "shift_steps": (bins, ["eps_on", "eps_off", "shift"]),
    }
    for table_name, (table, names) in intervals.items():
        for name in names:
            assert all(_ordered(r, name) for _, r in table.iterrows()), (table_name, name)
    # The realizable teacher is the scripted row's clone: its test episodes are that clone's.
    d = decomposition.set_index(["teacher", "sensor"])
    assert d.loc[("realizable", "kinematics"), "teacher_return"] == d.loc[("scripted", "kinematics"), "clone_return"]
    assert tables["decomposition"].shape[0] == 4

    config = json.loads((out / "config.json").read_text())
    test = config["seeds"]["test"]
    assert test["range"] == "test" and test["first_used"] == TEST.first + 300_000 and test["n_used"] == 2
    assert all(s in TEST for s in pd.read_csv(out / "episodes.csv")["seed"])
    assert config["wall_time_s"]["total"] > 0 and config["provenance"]["git_commit"]

    for png in ("realizability.png", "shift.png"):
        (out / png).unlink()
    rz.main(rz.Args(plot_only=True, out=str(out)))
    for png in ("realizability.png", "shift.png"):
        assert (out / png).stat().st_size > 0, png
