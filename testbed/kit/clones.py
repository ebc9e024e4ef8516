"""Demonstrations and BC clones: a driver's demonstrations, one clone or many in worker
processes, learning curves scored on one validation set, DAgger's clone per label budget."""

from __future__ import annotations

import dataclasses
import pathlib
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from testbed.errors import TestbedError
from testbed.outputs import final_path
from testbed.policies import PolicySpec

if typing.TYPE_CHECKING:
    from testbed.dagger import DAggerConfig, DAggerResult
    from testbed.demos import Demonstrations
    from testbed.metrics import ValScore
    from testbed.rollout import RolloutPool
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
    budgets: Sequence[int],
    directory: pathlib.Path,
    *,
    data: Demonstrations,
    config: TrainConfig,
    dagger: DAggerConfig,
) -> list[dict[str, Any]]:
    """Save DAgger's clone at every budget B of training labels: its iterate with the best
    validation score among those trained on at most B labels (:meth:`DAggerResult.best`), at
    ``directory / f"B{B}"``, with the log up to that round.

    Args:
        result: what :func:`testbed.dagger.train_dagger` returned.
        data: its aggregate as demonstrations (:func:`testbed.dagger.as_demonstrations`).
        config: its BC hyperparameters; ``dagger``: its rounds (both recorded with each clone).

    Returns:
        Per budget: ``budget``, ``n_train_labels``, ``path``, ``dagger_round``.
    """
    from testbed.training import TrainResult, save_clone

    clones = []
    for budget in budgets:
        policy, it = result.best(budget)
        snapshot = TrainResult(policy=policy, log=result.log.iloc[: it.round + 1], train_episodes=[], val_episodes=[])
        path = save_clone(
            directory / f"B{budget}",
            snapshot,
            demos=data,
            demos_path="(DAgger)",
            config=config,
            algorithm="dagger",
            extra={"dagger": dataclasses.asdict(dagger), "iterate": {"round": it.round, "n_labels": it.n_labels}},
        )
        clones.append({"budget": budget, "n_train_labels": it.n_labels, "path": path, "dagger_round": it.round})
    return clones
