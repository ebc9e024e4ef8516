"""The experiment kit: what every script in ``experiments/`` shares, so that a script reads as
its scientific design, top to bottom (like a CleanRL script), and the plumbing lives here.

A script in ``experiments/`` has

- ``Args``: a dataclass of its arguments (a docstring per field), usually extending
  :class:`StepArgs` (``workers``, ``fast``) and, when it reads earlier steps' results,
  :class:`UpstreamArgs` (``results``);
- ``main(args)``: runs the experiment into ``args.out`` (whole or not at all:
  :func:`testbed.outputs.atomic_output_dir`) and returns its main table;
- ``replot(out)``: redraws its figures from the CSVs a run left in ``out``;
- at the bottom, ``if __name__ == "__main__": run_script(main, Args)``.

:mod:`testbed.reproduce` runs ``main`` and ``replot`` of every script as the steps of one
queue (:mod:`testbed.scheduler`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import sys
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from testbed.errors import TestbedError
from testbed.metrics import Interval
from testbed.outputs import final_path, write_json
from testbed.policies import PolicySpec
from testbed.provenance import provenance
from testbed.runtime import default_workers

if typing.TYPE_CHECKING:
    from testbed.demos import Demonstrations
    from testbed.training import TrainConfig


@dataclasses.dataclass
class StepArgs:
    """Arguments every experiment script takes."""

    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes (the numbers do not depend on it)."""
    fast: bool = False
    """Tiny preset for tests: the same code paths at a size of seconds."""


@dataclasses.dataclass
class UpstreamArgs(StepArgs):
    """Arguments of a script that reads the results of earlier steps."""

    results: str = "results"
    """Root of the upstream results this step reads; `testbed reproduce` passes its --out-root, so a
    rebuild elsewhere never mixes in the committed artefacts."""


def experiment_record(args: Any, **sections: Any) -> dict[str, Any]:
    """A result directory's ``config.json``: the script's arguments, then ``sections`` (the
    scenario, the seeds with their ranges, the statistics used, ...) in the order given, then
    the provenance (commit, command, package versions)."""
    return {"args": dataclasses.asdict(args), **sections, "provenance": provenance()}


def write_results(
    out: str | pathlib.Path,
    tables: Mapping[str, pd.DataFrame],
    record: Mapping[str, Any] | None = None,
) -> None:
    """Write each table as ``out/<name>.csv`` (no index) and ``record`` as ``out/config.json``."""
    out = pathlib.Path(out)
    for name, frame in tables.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    if record is not None:
        write_json(out / "config.json", dict(record))


def save_figure(fig: Any, path: str | pathlib.Path, *, dpi: int = 120) -> pathlib.Path:
    """Save a matplotlib figure (``tight_layout`` first) and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return pathlib.Path(path)


def run_script(main: Callable[[Any], Any], args_type: type, argv: Sequence[str] | None = None) -> None:
    """The ``__main__`` block of an experiment script: parse ``args_type`` from the command
    line (its field docstrings are the ``--help``), one torch thread per process, run
    ``main``; a :class:`~testbed.errors.TestbedError` ends in one line and exit code 2."""
    import tyro

    from testbed.runtime import set_torch_threads

    args: Any = tyro.cli(args_type, args=argv)
    set_torch_threads(1)
    name = pathlib.Path(sys.argv[0]).stem
    try:
        main(args)
    except TestbedError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)


# --- Upstream results, clones and their columns (the clone-train-evaluate cell) ---


def upstream(spec: str, results: str) -> str:
    """``spec`` (a policy spec or path) with ``{results}`` replaced by the upstream results
    root ``results`` (:attr:`UpstreamArgs.results`), e.g.
    ``clone:{results}/pipeline/highway-fast/clone`` -> ``clone:results/pipeline/highway-fast/clone``."""
    return spec.replace("{results}", results)


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


def interval_columns(row: Mapping[str, Any], metrics: Sequence[str], *, prefix: str = "") -> dict[str, Any]:
    """``<prefix><m>``, ``<prefix><m>_ci_low``, ``<prefix><m>_ci_high`` for every metric ``m``,
    from a row of a summary table (:func:`testbed.metrics.summarize`); values as they are."""
    columns: dict[str, Any] = {}
    for metric in metrics:
        columns.update(Interval.from_columns(row, metric).columns(f"{prefix}{metric}"))
    return columns


def clone_vs_expert(
    summary: pd.DataFrame, clone: str, expert: str, *, metrics: Sequence[str] = ("return", "crashed")
) -> dict[str, Any]:
    """A clone's columns against the expert it was evaluated beside on the same seeds:
    ``clone_<m>`` and ``expert_<m>`` with their 95% CIs, then ``return_diff`` (clone minus
    expert, paired by seed).

    Args:
        summary: a :func:`testbed.evaluation.evaluate` summary whose first policy is ``expert``
            (the reference of its paired differences).
        clone: the clone's label (:attr:`~testbed.policies.PolicySpec.label`).
        expert: the expert's label.
        metrics: metrics reported for both.
    """
    rows = summary.set_index("policy")
    if rows.index[0] != expert:
        raise ValueError(f"the summary's reference is {rows.index[0]!r}, not the expert {expert!r}")
    return {
        **interval_columns(rows.loc[clone], metrics, prefix="clone_"),
        **interval_columns(rows.loc[expert], metrics, prefix="expert_"),
        **interval_columns(rows.loc[clone], ("return_diff",)),
    }


def save_laid_out_figure(fig: Any, path: str | pathlib.Path, *, dpi: int = 120) -> pathlib.Path:
    """Save a figure that is laid out already (every :mod:`testbed.plotting` function ends
    with ``tight_layout``; a second one moves things) and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return pathlib.Path(path)


# --- Learning curves and clone cells (experiments/realizability.py, data_scaling.py) ---

if typing.TYPE_CHECKING:
    from collections.abc import Iterator

    from testbed.metrics import ValScore
    from testbed.scenarios import Scenario
    from testbed.training import TrainResult


@contextlib.contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Set ``timings[key]`` to the wall time [s] of the block."""
    start = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - start


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


def evaluate_in_cell(
    scenario: Scenario, spec: PolicySpec, seeds: Sequence[int], name: str, cell_dir: pathlib.Path
) -> dict[str, float]:
    """Drive ``spec`` on ``seeds`` in this process (a sweep cell is the parallel unit), write
    the episodes (:func:`testbed.metrics.episodes_table`, policy ``name``) to
    ``cell_dir/episodes.csv`` and return the mean ``return``, ``crash_rate`` and
    ``mean_speed_mps``."""
    from testbed.metrics import episodes_table
    from testbed.rollout import rollouts

    records = rollouts(scenario, spec, list(seeds))
    episodes = episodes_table((name, r.seed, r.trajectory) for r in records)
    episodes.to_csv(cell_dir / "episodes.csv", index=False)
    return {
        "return": float(episodes["return"].mean()),
        "crash_rate": float(episodes["crashed"].mean()),
        "mean_speed_mps": float(episodes["mean_speed_mps"].mean()),
    }


def clone_cell(
    cell_dir: pathlib.Path,
    scenario: Scenario,
    demos: Demonstrations,
    config: TrainConfig,
    *,
    demos_path: str,
    validation: Sequence[Any],
    eval_seeds: Sequence[int],
    name: str,
) -> dict[str, float]:
    """The train -> evaluate cell: a BC clone of ``demos`` saved in ``cell_dir/clone``, its
    last-epoch ``train_accuracy``, its ``val_accuracy`` on the ``validation`` trajectories, and
    :func:`evaluate_in_cell` on ``eval_seeds`` (checked to be held out from its
    demonstrations)."""
    from testbed.evaluation import check_held_out
    from testbed.training import action_accuracy, save_clone, train_bc

    result = train_bc(demos, config)
    path = save_clone(cell_dir / "clone", result, demos=demos, demos_path=demos_path, config=config)
    spec = PolicySpec("clone", str(path))
    check_held_out([spec], list(eval_seeds))
    return {
        "train_accuracy": float(result.log["train/accuracy"].iloc[-1]),
        "val_accuracy": action_accuracy(result.policy, validation),
        **evaluate_in_cell(scenario, spec, eval_seeds, name, cell_dir),
    }


def clear_output(out: pathlib.Path, *, overwrite: bool, marker: str, what: str) -> None:
    """``--overwrite`` of a resumable output: delete ``out`` if it exists, refusing a non-empty
    directory without ``out/marker`` (not this experiment's)."""
    import shutil

    if overwrite and out.exists():
        if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
            raise TestbedError(f"--overwrite refuses to delete {out}: it is not a {what} output")
        shutil.rmtree(out)


@contextlib.contextmanager
def staged_files(out: pathlib.Path) -> Iterator[pathlib.Path]:
    """A temporary directory inside ``out``; when the block ends without an error its files
    replace those of the same names in ``out`` (what else ``out`` holds, a sweep say, stays)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".staged-", dir=out) as name:
        yield pathlib.Path(name)
        for path in sorted(pathlib.Path(name).iterdir()):
            path.replace(out / path.name)


# --- Checks, training on every label, a driver's demonstrations (experiments/compounding*.py) ---

if typing.TYPE_CHECKING:
    from testbed.dagger import DAggerConfig, DAggerResult
    from testbed.rollout import RolloutPool
    from testbed.scenarios import Scenario
    from testbed.sweep import CellResult


def check_at_least_one(args: Any, *names: str) -> None:
    """Raise :class:`~testbed.errors.TestbedError` naming the option ``--<name>`` of the first
    of ``names`` whose value in ``args`` is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            raise TestbedError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")


def every_label_config(seed: int, n_labels: int, *, epochs: int, batch_size: int) -> TrainConfig:
    """BC hyperparameters that train on every one of ``n_labels`` labels (no validation split,
    so a budget of labels is exactly what the model trains on), in batches no larger than the
    data."""
    from testbed.training import TrainConfig

    return TrainConfig(n_epochs=epochs, batch_size=min(batch_size, n_labels), seed=seed, val_fraction=0.0)


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


def print_table(frame: pd.DataFrame, columns: Sequence[str], *, digits: int = 3) -> None:
    """Print ``columns`` of ``frame`` without the index, floats to ``digits`` decimals."""
    print(frame[list(columns)].to_string(index=False, float_format=lambda x: f"{x:.{digits}f}"))


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


def sweep_clones(
    cells: Sequence[Mapping[str, Any]], base: pathlib.Path
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every clone a sweep of clone cells made: ``(result, clone)`` pairs, where ``result`` is the
    cell's (``method``, ``train_seed``, ``clones``) and ``clone`` one of its clones (``budget``,
    ``n_train_labels``, ``val_accuracy``, ``path`` relative to the cell) with ``path`` made
    absolute; ``cells`` are the sweep's ``results.json`` entries (``cell_id``, ``result``) and
    ``base`` the sweep's directory."""
    for cell in cells:
        for clone in cell["result"]["clones"]:
            yield cell["result"], {**clone, "path": base / "cells" / cell["cell_id"] / clone["path"]}


_T = typing.TypeVar("_T")


def context_from(args: Any, context_type: type[_T], **given: Any) -> _T:
    """A cell context (a dataclass of what every sweep cell needs) with the ``given`` fields,
    every other field taken from the script's ``args`` field of the same name."""
    names = [f.name for f in dataclasses.fields(context_type)]  # type: ignore[arg-type]
    return context_type(**{n: given[n] if n in given else getattr(args, n) for n in names})


def context_sweep(
    out: pathlib.Path,
    cells: Sequence[dict[str, Any]],
    fn: Callable[..., Any],
    context: Any,
    *,
    workers: int,
    unrecorded: Sequence[str] = (),
) -> list[CellResult]:
    """Run ``fn(context, cell, cell_dir)`` on every cell into ``out`` (a resumable
    :func:`testbed.sweep.run_sweep`); ``context``, a dataclass of what every cell needs, and
    the commit are the sweep's config, the ``unrecorded`` fields of ``context`` as None (e.g.
    where this run keeps a file: not what the cells compute)."""
    import functools

    from testbed.provenance import git_commit
    from testbed.sweep import run_sweep

    config = {"context": dataclasses.asdict(context) | dict.fromkeys(unrecorded), "code": git_commit()}
    return run_sweep(cells, functools.partial(fn, context), out, config=config, workers=workers, progress=True)


def clone_error_table(
    cells: Sequence[Mapping[str, Any]], base: pathlib.Path, reference: Mapping[int, Any], scenario: Scenario
) -> pd.DataFrame:
    """One row per (clone, test seed) of a sweep of clone cells (:func:`sweep_clones`), each
    cell with an ``episodes.csv`` of its clones' labelled test episodes
    (:func:`testbed.drift.outcome_rows` with ``budget``): the episode's outcome, the clone's
    ``method``, ``train_seed``, ``n_train_labels``, ``val_accuracy``, and its on- and
    off-policy errors against the ``reference`` episodes (seed -> record) of the same seeds
    (:func:`testbed.drift.with_off_policy_errors`)."""
    from testbed.clone_io import load_clone
    from testbed.drift import with_off_policy_errors

    frames = []
    for cell in cells:
        result, cell_dir = cell["result"], base / "cells" / cell["cell_id"]
        episodes = pd.read_csv(cell_dir / "episodes.csv", dtype={"on_errors": str})
        for _, clone in sweep_clones([cell], base):
            ep = episodes[episodes["budget"] == clone["budget"]].assign(
                method=result["method"],
                train_seed=result["train_seed"],
                n_train_labels=clone["n_train_labels"],
                val_accuracy=clone["val_accuracy"],
            )
            policy = load_clone(clone["path"], scenario=scenario)
            frames.append(with_off_policy_errors(ep, policy, reference))
    return pd.concat(frames, ignore_index=True)


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


@dataclasses.dataclass
class BCArgs(StepArgs):
    """Arguments of a script that trains BC clones with one setting (:func:`train_clone`)."""

    epochs: int = 100
    """BC epochs."""
    batch_size: int = 64
    """BC batch size."""
    train_seed: int = 0
    """BC training seed."""

    def train_config(self) -> TrainConfig:
        """These arguments as :class:`testbed.training.TrainConfig`."""
        from testbed.training import TrainConfig

        return TrainConfig(n_epochs=self.epochs, batch_size=self.batch_size, seed=self.train_seed)


_ArgsT = typing.TypeVar("_ArgsT", bound=StepArgs)
"""A script's ``Args``."""


def fast_preset(args: _ArgsT, **changes: Any) -> _ArgsT:
    """``args`` with a script's tiny test preset ``changes`` applied when ``args.fast`` (the
    same code paths at a size of seconds), else ``args`` as they are."""
    return dataclasses.replace(args, **changes) if args.fast else args
