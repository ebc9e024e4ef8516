"""Fair BC vs DART vs DAgger (issue 24): DART's noise fitted to the learner's error and its data
(testbed.dart), DAgger's on-policy choice among its iterates (testbed.dagger.select_iterate,
testbed.kit.clones.dagger_budget_clones), and the label accounting of the cells of
experiments/compounding_error.py."""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import load_experiment

from testbed.dagger import DAggerResult, Iterate, select_iterate
from testbed.dart import dart_demonstrations, fitted_noise, fold_split
from testbed.demos import Demonstrations
from testbed.errors import TestbedError
from testbed.kit import every_label_config
from testbed.kit.clones import dagger_budget_clones
from testbed.scenarios import Scenario, get_scenario, parse_overrides

BUDGET = 40
"""Labels of the tiny runs: 8-step episodes (duration 8 s at 1 Hz), so B//2 spans 3 episodes."""


@pytest.fixture(scope="module")
def short() -> Scenario:
    return get_scenario("highway-fast", parse_overrides(["duration=8"]))


def _experiment() -> Any:
    return load_experiment("compounding_error")


def _same_data(a: Demonstrations, b: Demonstrations) -> None:
    assert a.seeds == b.seeds and len(a.trajectories) == len(b.trajectories)
    for s, t in zip(a.trajectories, b.trajectories, strict=True):
        np.testing.assert_array_equal(s.obs, t.obs)
        np.testing.assert_array_equal(s.acts, t.acts)


# DART -------------------------------------------------------------------------------------------


def test_fitted_noise() -> None:
    """p = min(1, eps K/(K-1)): a uniform random action differs from the expert's w.p. (K-1)/K."""
    assert fitted_noise(0.2, 5) == pytest.approx(0.25)
    assert fitted_noise(0.0, 5) == 0.0
    assert fitted_noise(0.8, 5) == 1.0
    assert fitted_noise(0.9, 5) == 1.0
    assert fitted_noise(0.25, 2) == pytest.approx(0.5)
    for eps, k in ((0.2, 1), (-0.1, 5), (1.5, 5)):
        with pytest.raises(TestbedError):
            fitted_noise(eps, k)
    assert fold_split(5) == ((0, 2, 4), (1, 3))
    with pytest.raises(TestbedError, match="at least 2 clean episodes"):
        fold_split(1)


def test_dart_data(short: Scenario) -> None:
    """DART's B labels: its first B//2 are BC's first B//2 from the same seeds, p is the formula
    of the cross-fitted disagreement (recomputed here from two independently trained fold
    clones), and the rest comes with that noise from the seeds that follow."""
    from testbed.collect import collect_transitions
    from testbed.rollout import RolloutPool
    from testbed.training import stack_transitions, train_bc

    recipe = functools.partial(every_label_config, 0, epochs=2, batch_size=8)
    with RolloutPool(1) as pool:
        bc = collect_transitions(short, "scripted", BUDGET, seed=0, pool=pool)
        clean = collect_transitions(short, "scripted", BUDGET // 2, seed=0, pool=pool)  # as DART's cell collects
        dart = dart_demonstrations(short, "scripted", clean, BUDGET, recipe=recipe, pool=pool, seed_stop=800)
    demos, fit = dart.demos, dart.fit
    assert demos.n_transitions == BUDGET and dart.n_clean == BUDGET // 2
    head = bc.first_transitions(BUDGET // 2)
    _same_data(demos.subset(range(len(head.trajectories))), head)
    # eps_hat: each fold's clone scored on the other fold's labels, pooled over all B//2.
    assert len(head.trajectories) >= 3 and fit.folds == fold_split(len(head.trajectories))
    for k in (0, 1):
        train, other = head.subset(fit.folds[k]), head.subset(fit.folds[1 - k])
        policy = train_bc(train, recipe(train.n_transitions)).policy
        obs, acts = stack_transitions(other.trajectories)
        predicted = policy.predict(obs, deterministic=True)[0]
        assert fit.n_errors[k] == int(np.sum(predicted != acts)) and fit.n_scored[k] == len(acts)
    assert sum(fit.n_scored) == BUDGET // 2
    assert fit.eps_hat == sum(fit.n_errors) / (BUDGET // 2)
    assert fit.noise == min(1.0, fit.eps_hat * 5 / 4) and 0 < fit.noise
    # The noisy rest: from the seed after the last clean one, noisy as recorded, labels the expert's.
    noisy = demos.subset(range(len(head.trajectories), len(demos.trajectories)))
    assert noisy.n_transitions == BUDGET - BUDGET // 2 == dart.record()["n_noisy_labels"]
    assert noisy.seeds == list(range(head.seeds[-1] + 1, head.seeds[-1] + 1 + len(noisy.seeds)))
    assert dart.noisy_seeds == (noisy.seeds[0], noisy.seeds[-1])
    assert demos.metadata.noise is not None and demos.metadata.noise["probability"] == fit.noise

    def applied_and_labels(data: Demonstrations) -> tuple[np.ndarray, np.ndarray]:
        applied = [info["applied_action"] for t in data.trajectories for info in t.infos]
        return np.array(applied), np.concatenate([t.acts for t in data.trajectories])

    assert np.any(np.not_equal(*applied_and_labels(noisy)))  # the noise acted; the labels stayed clean
    assert np.array_equal(*applied_and_labels(head))  # no noise in the first half


# DAgger's on-policy choice ----------------------------------------------------------------------


def _iterates(n: int) -> DAggerResult:
    from testbed.clone_io import make_policy

    policy = make_policy(gym.spaces.Box(-1, 1, (5, 5)), gym.spaces.Discrete(5), (8,))
    state = {k: torch.zeros_like(v) for k, v in policy.state_dict().items()}
    iterates = [Iterate(round=r, n_labels=40 * (r + 1), val_score=float("nan"), state_dict=state) for r in range(n)]
    return DAggerResult(policy=policy, log=pd.DataFrame(), train_episodes=[], val_episodes=[], iterates=iterates)


def test_select_iterate_highest_return_within_budget() -> None:
    iterates = _iterates(4).iterates
    returns = [5.0, 7.0, 7.0, 9.0]
    assert select_iterate(iterates, returns).round == 3
    assert select_iterate(iterates, returns, max_labels=160).round == 3
    assert select_iterate(iterates, returns, max_labels=159).round == 1  # 7.0 twice: fewer labels
    assert select_iterate(iterates, returns, max_labels=40).round == 0
    assert select_iterate(iterates, [5.0, float("nan"), 4.0, 9.0], max_labels=120).round == 0  # NaN never wins
    with pytest.raises(TestbedError, match="at most 39 expert labels"):
        select_iterate(iterates, returns, max_labels=39)
    with pytest.raises(TestbedError, match="3 scores for 4"):
        select_iterate(iterates, returns[:3])


def test_dagger_budget_clones() -> None:
    """Per budget: the iterate at exactly B labels, and the best return within B, with the
    labels used (B) and the selection episodes (every candidate's) counted."""
    result = _iterates(4)
    paths = [pathlib.Path(f"r{r}") for r in range(4)]
    last, chosen = dagger_budget_clones(result, paths, (80, 160), returns=[6.0, 5.0, 8.0, 7.0], selection_episodes=20)
    assert [(c["dagger_round"], c["n_train_labels"], c["n_labels_used"], c["path"]) for c in last] == [
        (1, 80, 80, paths[1]),
        (3, 160, 160, paths[3]),
    ]
    assert [(c["dagger_round"], c["n_train_labels"], c["n_labels_used"], c["path"]) for c in chosen] == [
        (0, 40, 80, paths[0]),
        (2, 120, 160, paths[2]),
    ]
    assert [c["selection_episodes"] for c in chosen] == [40, 80]
    assert [c["selection_return"] for c in chosen] == [6.0, 8.0]
    with pytest.raises(TestbedError, match="exactly 100 labels"):
        dagger_budget_clones(result, paths, (100,), returns=[0.0] * 4, selection_episodes=1)


# The experiment's label accounting --------------------------------------------------------------


def test_budgets_must_be_whole_rounds() -> None:
    module = _experiment()
    module.Args(budgets=(1_000, 3_000, 10_000), dagger_labels_per_round=500).validate()
    with pytest.raises(TestbedError, match="multiples of --dagger-labels-per-round 400"):
        module.Args(budgets=(1_000, 3_000), dagger_labels_per_round=400).validate()


def test_cells_count_every_label(short: Scenario, tmp_path: pathlib.Path) -> None:
    """A tiny run of every method's cell: bc, dart and dagger train on exactly B labels and use
    B; dagger-onpolicy uses B, trains on its chosen iterate's (at most B), picked by its
    returns on development episodes (counted), not by the validation set."""
    from testbed.collect import collect
    from testbed.demos import save_demos

    module = _experiment()
    save_demos(collect(short, "scripted", n_episodes=1, seed=4_000), tmp_path / "validation")
    ctx = module.Context(
        scenario=short.to_dict(),
        expert="scripted",
        budgets=(BUDGET, 2 * BUDGET),
        epochs=1,
        batch_size=16,
        dagger_labels_per_round=BUDGET,
        validation_dir=str(tmp_path / "validation"),
        eval_seeds=(1_000_000,),
        dagger_selection_episodes=2,
    )
    results = {}
    for method in module.CELL_METHODS:
        cell_dir = tmp_path / method
        cell_dir.mkdir()
        results[method] = module.run_cell(ctx, {"method": method, "train_seed": 0}, cell_dir)
    for method, result in results.items():
        assert [c["budget"] for c in result["clones"]] == list(ctx.budgets)
        for c in result["clones"]:
            assert c["n_train_labels"] == c["n_labels_used"] == c["budget"], (method, c)
            assert 0 <= c["val_accuracy"] <= 1
            record = json.loads((tmp_path / method / c["path"] / "metadata.json").read_text())
            assert record["demos"]["n_train_labels"] == c["budget"], method  # what the clone trained on
    for c in results["dart"]["clones"]:
        assert c["n_clean_labels"] == c["budget"] // 2 and c["n_clean_labels"] + c["n_noisy_labels"] == c["budget"]
        assert c["noise"] == min(1.0, c["eps_hat"] * 5 / 4)
    selection = pd.read_csv(tmp_path / "dagger" / "selection.csv")
    assert list(selection["n_labels"]) == [BUDGET, 2 * BUDGET]
    for c in results["dagger"]["selected"]:
        within = selection[selection["n_labels"] <= c["budget"]]
        assert c["n_labels_used"] == c["budget"] >= c["n_train_labels"]
        assert c["selection_episodes"] == 2 * len(within)
        assert c["selection_return"] == within["return"].max()
        assert c["dagger_round"] == within["return"].idxmax()
    assert (tmp_path / "dagger" / "onpolicy" / "episodes.csv").exists()
