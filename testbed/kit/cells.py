"""Sweep cells (:mod:`testbed.sweep`): a clone's train -> evaluate cell, the context every cell
shares, a sweep over it, and the per-episode error table of a sweep's clones."""

from __future__ import annotations

import dataclasses
import pathlib
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from testbed.policies import PolicySpec

if typing.TYPE_CHECKING:
    from testbed.demos import Demonstrations
    from testbed.scenarios import Scenario
    from testbed.sweep import CellResult
    from testbed.training import TrainConfig


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
