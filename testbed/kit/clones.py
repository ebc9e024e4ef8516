"""Demonstrations and BC clones: a driver's demonstrations, one clone or many in worker
processes, learning curves scored on one validation set, DAgger's clone after every round."""

from __future__ import annotations

import dataclasses
import pathlib
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from testbed.errors import TestbedError
from testbed.outputs import final_path
from testbed.policies import PolicySpec

if typing.TYPE_CHECKING:
    import pandas as pd

    from testbed.dagger import DAggerConfig, DAggerResult
    from testbed.demos import Demonstrations
    from testbed.metrics import ValScore
    from testbed.rollout import RolloutPool, Scoring
    from testbed.scenarios import Scenario
    from testbed.training import TrainConfig, TrainResult


def driven_demonstrations(
    pool: RolloutPool,
    scenario: Scenario,
    spec: PolicySpec,
    seeds: Sequence[int],
    *,
    driver: Mapping[str, Any],
    desc: str,
) -> Demonstrations:
    """Any driver's episodes on ``seeds`` (a progress bar labelled ``desc``) as demonstrations,
    ``driver`` recorded as their expert (``{"name": ..., "params": ...}``,
    :func:`testbed.collect.demonstrations_from`): e.g. a teacher's training and validation sets."""
    from testbed.collect import demonstrations_from

    return demonstrations_from(scenario, pool.run(scenario, spec, list(seeds), progress=True, desc=desc), driver)


def driver_demonstrations(
    scenario: Scenario,
    spec: PolicySpec,
    n_transitions: int,
    *,
    first_seed: int,
    n_seeds: int,
    pool: RolloutPool,
    driver: Mapping[str, Any],
    batch: int = 20,
) -> Demonstrations:
    """Exactly ``n_transitions`` (observation, action) pairs of any driver (e.g. a clone as a
    realizable teacher), from episodes seeded ``first_seed, first_seed + 1, ...`` run ``batch``
    at a time until there are enough, the last one used cut.

    Args:
        driver: recorded as the demonstrations' expert (``{"name": ..., "params": ...}``,
            :func:`testbed.collect.demonstrations_from`).
        n_seeds: the block of seeds the driver may use.

    Raises:
        TestbedError: the driver needed seeds beyond ``first_seed + n_seeds``.
    """
    from testbed.collect import demonstrations_from

    records: list[Any] = []
    n = 0
    while n < n_transitions:
        more = pool.run(scenario, spec, list(range(first_seed + len(records), first_seed + len(records) + batch)))
        records += more
        n += sum(len(r.trajectory.acts) for r in more)
    if records[-1].seed >= first_seed + n_seeds:
        raise TestbedError(f"{spec.label} needed seeds beyond its block of {n_seeds}")
    return demonstrations_from(scenario, records, driver).first_transitions(n_transitions)


def every_label_config(
    seed: int, n_labels: int, *, epochs: int, batch_size: int, eval_every: int | None = None
) -> TrainConfig:
    """BC hyperparameters that train on every one of ``n_labels`` labels (no validation split,
    so a budget of labels is exactly what the model trains on), in batches no larger than the
    data; ``eval_every``: epochs between the log's evaluations (default: ``TrainConfig``'s)."""
    from testbed.training import TrainConfig

    config = TrainConfig(n_epochs=epochs, batch_size=min(batch_size, n_labels), seed=seed, val_fraction=0.0)
    return config if eval_every is None else dataclasses.replace(config, eval_every=eval_every)


def clone_spec(path: str | pathlib.Path) -> PolicySpec:
    """The policy spec of the clone saved at ``path``, named in tables by where it ends up
    (:func:`testbed.outputs.final_path`), not by the temporary output directory it was
    written into."""
    return PolicySpec("clone", str(path), name=f"clone:{final_path(path)}")


def train_clone(
    path: str | pathlib.Path,
    demos: Demonstrations,
    config: TrainConfig,
    *,
    demos_path: str = "(in memory)",
) -> PolicySpec:
    """Train a BC clone of ``demos`` (:func:`testbed.training.train_bc`), save it at ``path``
    and return its :func:`clone_spec`.

    Args:
        path: run directory of the clone (usually inside the step's output directory).
        demos: the demonstrations trained on.
        config: BC hyperparameters.
        demos_path: where the demonstrations live (recorded only).
    """
    from testbed.training import save_clone, train_bc

    save_clone(path, train_bc(demos, config), demos=demos, demos_path=demos_path, config=config)
    return clone_spec(path)


def train_clones(jobs: Mapping[int, tuple[Demonstrations, TrainConfig]], n_workers: int) -> dict[int, TrainResult]:
    """Train one BC clone per job (``key -> (demonstrations, config)``) in up to ``n_workers``
    processes, largest key first; each result is the same whichever process trains it
    (:func:`testbed.training.train_bc` seeds torch and uses one thread)."""
    from testbed.training import train_bc

    order = sorted(jobs, reverse=True)
    if n_workers <= 1 or len(jobs) == 1:
        return {n: train_bc(*jobs[n]) for n in order}
    import concurrent.futures

    from testbed.rollout import worker_context
    from testbed.runtime import init_worker, stop_pool

    executor = concurrent.futures.ProcessPoolExecutor(
        min(n_workers, len(jobs)), mp_context=worker_context(), initializer=init_worker
    )
    try:
        futures = {n: executor.submit(train_bc, *jobs[n]) for n in order}
        results = {n: futures[n].result() for n in order}
    except BaseException:  # an error or a signal: stop the other trainings at once
        stop_pool(executor, terminate=True)
        raise
    stop_pool(executor, terminate=False)
    return results


def validation_score(policy: Any, n_episodes: int, validation: Demonstrations) -> ValScore:
    """``policy``'s argmax predictions scored against every validation episode's actions: one
    point of a learning curve (:class:`testbed.metrics.ValScore`, ``n_episodes`` the
    demonstration episodes the clone trained on)."""
    import numpy as np
    import torch

    from testbed.metrics import ValScore

    correct, labels = [], []
    for t in validation.trajectories:
        with torch.no_grad():
            predicted = policy._predict(torch.as_tensor(np.asarray(t.obs[:-1])), deterministic=True).cpu().numpy()
        correct.append(int((predicted == np.asarray(t.acts)).sum()))
        labels.append(len(t.acts))
    return ValScore(n_episodes, np.asarray(correct), np.asarray(labels))


@dataclasses.dataclass
class LearningCurve:
    """BC clones of the first n demonstration episodes for several n, every one scored on the
    same validation set (:func:`learning_curve`)."""

    subsets: dict[int, Demonstrations]
    """n -> the first n demonstration episodes."""
    configs: dict[int, TrainConfig]
    """n -> the training recipe of its clone."""
    results: dict[int, TrainResult]
    """n -> the trained clone."""
    scores: list[ValScore]
    """Validation scores, in increasing n."""

    def rows(self) -> list[dict[str, Any]]:
        """One table row per n: ``n_episodes``, ``n_labels``, ``train_seed``, ``epochs``,
        last-epoch ``train_accuracy``, pooled ``val_accuracy`` with its Clopper-Pearson interval
        and ``val_accuracy_cluster_ci_*`` (bootstrap over validation episodes,
        :func:`testbed.metrics.ratio_ci`), ``n_val_labels`` and ``n_val_episodes``."""
        from testbed.metrics import ratio_ci

        rows = []
        for score in self.scores:
            n, cluster = score.n_episodes, ratio_ci(score.correct, score.labels)
            rows.append(
                {
                    "n_episodes": n,
                    "n_labels": self.subsets[n].n_transitions,
                    "train_seed": self.configs[n].seed,
                    "epochs": self.configs[n].n_epochs,
                    "train_accuracy": float(self.results[n].log["train/accuracy"].iloc[-1]),
                    **score.accuracy.columns("val_accuracy"),
                    "val_accuracy_cluster_ci_low": cluster.low,
                    "val_accuracy_cluster_ci_high": cluster.high,
                    "n_val_labels": int(score.labels.sum()),
                    "n_val_episodes": len(score.labels),
                }
            )
        return rows

    def record(self) -> dict[str, Any]:
        """For ``config.json``: the ``sizes`` (increasing, as text) and each one's
        ``train_configs``."""
        sizes = sorted(self.configs)
        return {"sizes": [str(n) for n in sizes], "train_configs": {str(n): self.configs[n].to_dict() for n in sizes}}

    def save(self, n: int, path: pathlib.Path, *, demos_path: str) -> pathlib.Path:
        """Save the clone of ``n`` episodes as a run directory at ``path`` (returned)."""
        from testbed.training import save_clone

        return save_clone(path, self.results[n], demos=self.subsets[n], demos_path=demos_path, config=self.configs[n])


def learning_curve(
    demos: Demonstrations,
    validation: Demonstrations,
    sizes: Sequence[int],
    config: Callable[[int, int], TrainConfig],
    *,
    workers: int,
) -> LearningCurve:
    """Train a clone on the first n episodes of ``demos`` for every n in ``sizes`` (recipe
    ``config(n, n_transitions)``, :func:`train_clones` in ``workers`` processes) and score each
    on ``validation`` (:func:`validation_score`)."""
    subsets = {n: demos.first(n) for n in sizes}
    configs = {n: config(n, subsets[n].n_transitions) for n in sizes}
    results = train_clones({n: (subsets[n], configs[n]) for n in sizes}, workers)
    scores = [validation_score(results[n].policy, n, validation) for n in sorted(sizes)]
    return LearningCurve(subsets, configs, results, scores)


def save_dagger_clones(
    result: DAggerResult,
    directory: pathlib.Path,
    *,
    data: Demonstrations,
    config: TrainConfig,
    dagger: DAggerConfig,
) -> list[pathlib.Path]:
    """Save DAgger's clone after every round (its iterates, :attr:`DAggerResult.iterates`) at
    ``directory / f"r{round}"``, each with the log up to its round; which one a budget reports
    is the caller's choice (e.g. :func:`testbed.dagger.select_iterate`).

    Args:
        result: what :func:`testbed.dagger.train_dagger` returned.
        data: its aggregate as demonstrations (:func:`testbed.dagger.as_demonstrations`).
        config: its BC hyperparameters; ``dagger``: its rounds (both recorded with each clone).

    Returns:
        The run directories, in round order.
    """
    from testbed.training import TrainResult, save_clone

    paths = []
    for it in result.iterates:
        log = result.log.iloc[: it.round + 1]
        snapshot = TrainResult(policy=result.policy_of(it), log=log, train_episodes=[], val_episodes=[])
        paths.append(
            save_clone(
                directory / f"r{it.round}",
                snapshot,
                demos=data,
                demos_path="(DAgger)",
                config=config,
                algorithm="dagger",
                extra={"dagger": dataclasses.asdict(dagger), "iterate": {"round": it.round, "n_labels": it.n_labels}},
            )
        )
    return paths


def self_driven_returns(
    pool: RolloutPool, scenario: Scenario, paths: Sequence[pathlib.Path], seeds: Sequence[int]
) -> list[float]:
    """Each saved clone's mean return driving itself (its argmax) on the same ``seeds``: e.g.
    DAgger's iterates, for an on-policy choice among them."""
    import numpy as np

    returns = []
    for path in paths:
        records = pool.run(scenario, PolicySpec("clone", str(path)), list(seeds))
        returns.append(float(np.mean([np.sum(r.trajectory.rews) for r in records])))
    return returns


def dagger_budget_clones(
    result: DAggerResult,
    paths: Sequence[pathlib.Path],
    budgets: Sequence[int],
    *,
    returns: Sequence[float],
    selection_episodes: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """DAgger's two clones per budget B: the iterate trained on exactly B labels, and the
    on-policy choice, the iterate with the highest ``returns`` among those trained on at most B
    labels, ties to fewer (:func:`testbed.dagger.select_iterate`).

    Args:
        result: what :func:`testbed.dagger.train_dagger` returned.
        paths: its iterates' run directories (:func:`save_dagger_clones`), in round order.
        returns: each iterate's score (:func:`self_driven_returns`).
        selection_episodes: the episodes each iterate drove for its score.

    Returns:
        Per budget, both as rows: ``budget``, ``n_train_labels``, ``n_labels_used`` (B: the
        rounds up to B made every candidate), ``dagger_round``, ``path``; the on-policy rows also
        ``selection_episodes`` (every candidate's) and ``selection_return``.

    Raises:
        TestbedError: no iterate trained on exactly B labels.
    """
    from testbed.dagger import select_iterate

    last, chosen = [], []
    for budget in budgets:
        at = [it for it in result.iterates if it.n_labels == budget]
        if not at:
            raise TestbedError(f"no DAgger iterate trained on exactly {budget} labels (budgets: multiples of a round)")
        row = {"budget": budget, "n_train_labels": budget, "n_labels_used": budget, "dagger_round": at[0].round}
        last.append(row | {"path": paths[at[0].round]})
        it = select_iterate(result.iterates, returns, max_labels=budget)
        n_candidates = sum(i.n_labels <= budget for i in result.iterates)
        chosen.append(
            row
            | {
                "n_train_labels": it.n_labels,
                "dagger_round": it.round,
                "path": paths[it.round],
                "selection_episodes": selection_episodes * n_candidates,
                "selection_return": returns[it.round],
            }
        )
    return last, chosen


def drive_clones(
    pool: RolloutPool,
    scenario: Scenario,
    groups: Mapping[pathlib.Path, Sequence[dict[str, Any]]],
    *,
    validation: Sequence[Any],
    seeds: Sequence[int],
    expert: str,
) -> None:
    """Score clones open loop and drive them, each distinct clone once however many groups
    list it: each clone's ``val_accuracy`` (set in its row) is its accuracy on the
    ``validation`` trajectories, and it drives ``seeds`` with ``expert`` labelling its states.
    Each group's episodes (``budget`` and :func:`testbed.drift.outcome_rows`) go to
    ``directory / "episodes.csv"`` (``groups``: directory -> rows with ``budget``, ``path``)."""
    import pandas as pd

    from testbed.clone_io import load_clone
    from testbed.drift import outcome_rows
    from testbed.training import action_accuracy

    driven: dict[Any, tuple[float, list[dict[str, Any]]]] = {}
    for directory, clones in groups.items():
        for c in clones:
            if c["path"] not in driven:
                accuracy = action_accuracy(load_clone(c["path"], scenario=scenario), validation)
                spec, labeller = PolicySpec("clone", str(c["path"])), PolicySpec("expert", expert)
                records = pool.run(scenario, spec, list(seeds), labeller=labeller)
                driven[c["path"]] = accuracy, outcome_rows(records)
            c["val_accuracy"] = driven[c["path"]][0]
        directory.mkdir(parents=True, exist_ok=True)
        rows = [{"budget": c["budget"], **r} for c in clones for r in driven[c["path"]][1]]
        pd.DataFrame(rows).to_csv(directory / "episodes.csv", index=False)


def clone_records(cells: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per clone a sweep's cells (``cell_id``, ``result`` with ``method``,
    ``train_seed``, ``clones``) made: its cell's ``method`` and ``train_seed``, then every field
    of the clone's record but its ``path`` (e.g. labels used, a fitted noise)."""
    import pandas as pd

    rows = [
        {"method": c["result"]["method"], "train_seed": c["result"]["train_seed"], **clone}
        for c in cells
        for clone in c["result"]["clones"]
    ]
    return pd.DataFrame(rows).drop(columns=["path"])


class Driver(NamedTuple):
    """One driver of a study: its group, training seed, who labels its states, its action noise."""

    group: str
    """Its group (``expert`` drives no episodes of its own: its reference episodes are its rows)."""
    seed: int
    """Its training seed (0 for a driver that has none)."""
    spec: PolicySpec
    """What drives."""
    teacher: PolicySpec
    """Who labels its states (its errors), and whose episodes its same-step errors compare with."""
    noise: float = 0.0
    """Probability of a uniformly random action (the harness's noise; its errors are those)."""


def driver_episode_rows(
    driver: Driver,
    scenario: Scenario,
    seeds: Sequence[int],
    references: Mapping[str, Mapping[int, Any]],
    pool: RolloutPool,
    scoring: Scoring | None = None,
) -> list[dict[str, Any]]:
    """One row per episode of ``driver`` on ``seeds``: costs and nearby vehicles
    (:func:`testbed.recovery.cost_columns`), errors on its own episode (``on_errors``) and on
    its teacher's from the same seed (``off_errors``; ``references``: the teachers' episodes by
    label and seed), their same-step difference, and with ``scoring`` the per-step value gaps
    (``value_gaps``, :func:`testbed.drift.gaps_text`). The expert's rows are its reference
    episodes (run with the same ``scoring``)."""
    from testbed import drift
    from testbed.clone_io import load_clone
    from testbed.recovery import cost_columns

    reference = references[driver.teacher.label]
    expert = driver.group == "expert"
    run = (
        []
        if expert
        else pool.run(scenario, driver.spec, list(seeds), labeller=driver.teacher, noise=driver.noise, scoring=scoring)
    )
    model = load_clone(driver.spec.arg, scenario=scenario) if driver.spec.kind == "clone" else None
    rows = []
    for r in [reference[s] for s in seeds] if expert else run:
        on = np.zeros(len(r.trajectory.acts)) if expert else drift.applied_errors(r, noisy=driver.noise > 0)
        # The clone on its teacher's episode; the noisy expert's: the harness's noise replayed on the expert's.
        off = drift.off_policy_errors(model, reference[r.seed]) if model is not None else on
        off = drift.noise_errors(reference[r.seed], driver.noise, scenario) if driver.noise > 0 else off
        shift, n_shift = drift.same_step_difference(on, off)
        rows.append(
            {"group": driver.group, "train_seed": driver.seed, "seed": r.seed, "length": len(on), **cost_columns(r)}
            | {"on_errors": drift.errors_text(on), "off_errors": drift.errors_text(off)}
            | {"shift_sum": shift, "shift_steps": n_shift}
            | ({"value_gaps": drift.gaps_text(drift.value_gaps(r))} if scoring else {})
        )
    return rows
