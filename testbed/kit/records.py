"""What a run leaves behind: its ``config.json`` record, tables, printed tables, figures, wall
times, and output directories that are replaced or resumed."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from testbed.errors import TestbedError
from testbed.metrics import Interval, clone_table, clones_ci, episode_ci
from testbed.outputs import write_json
from testbed.provenance import provenance


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


def print_table(frame: pd.DataFrame, columns: Sequence[str], *, digits: int = 3) -> None:
    """Print ``columns`` of ``frame`` without the index, floats to ``digits`` decimals."""
    print(frame[list(columns)].to_string(index=False, float_format=lambda x: f"{x:.{digits}f}"))


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


def clones_vs_expert(
    clones: pd.DataFrame, expert: pd.DataFrame, *, metrics: Sequence[str] = ("return", "crashed")
) -> dict[str, Any]:
    """Clones of one recipe, one per training seed, against the expert they drove beside on the
    same seeds: ``n_clones``; ``clone_<m>``, the mean over the clones' episodes with an interval
    over training *and* evaluation seeds (:func:`testbed.metrics.clones_mean_ci`, a rate
    :func:`testbed.metrics.clones_rate_ci`, on :func:`testbed.metrics.clone_table`);
    ``expert_<m>`` over the expert's episodes (bootstrap, a rate Clopper-Pearson); then
    ``return_diff``: clone minus expert paired by seed, averaged over the clones, with the same
    kind of interval. One clone gives :func:`clone_vs_expert`'s numbers (intervals over its
    episodes).

    Args:
        clones: the clones' episodes (:func:`testbed.metrics.episodes_table` columns and
            ``train_seed``), each clone on exactly the expert's seeds.
        expert: the expert's episodes (``seed`` and the metrics).
        metrics: metrics reported for both.

    Raises:
        ValueError: a clone that did not drive exactly the expert's seeds.
    """
    reference = expert.set_index("seed")
    seeds = sorted(reference.index)
    if any(sorted(g["seed"]) != seeds for _, g in clones.groupby("train_seed")):
        raise ValueError("every clone must drive exactly the expert's seeds")
    paired = clones.assign(
        return_diff=clones["return"].to_numpy(float) - reference.loc[clones["seed"], "return"].to_numpy(float)
    )
    columns: dict[str, Any] = {"n_clones": int(clones["train_seed"].nunique())}
    for metric in metrics:
        columns.update(clones_ci(metric, clone_table(clones, metric)).columns(f"clone_{metric}"))
    for metric in metrics:
        columns.update(episode_ci(metric, expert[metric].to_numpy(float)).columns(f"expert_{metric}"))
    columns.update(clones_ci("return", clone_table(paired, "return_diff")).columns("return_diff"))
    return columns


def each_clone_vs_expert(
    clones: pd.DataFrame, expert: pd.DataFrame, *, metrics: Sequence[str] = ("return", "crashed")
) -> list[dict[str, Any]]:
    """One row per clone (``train_seed``, then :func:`clones_vs_expert`'s clone columns over that
    clone's episodes alone): the spread behind a row that averages them."""
    rows = []
    for seed, group in clones.groupby("train_seed", sort=True):
        row = clones_vs_expert(group, expert, metrics=metrics)
        rows.append({"train_seed": int(seed), **{k: v for k, v in row.items() if not k.startswith(("expert_", "n_"))}})
    return rows


def save_figure(fig: Any, path: str | pathlib.Path, *, dpi: int = 120) -> pathlib.Path:
    """Save a matplotlib figure (``tight_layout`` first) and close it; returns the path."""
    fig.tight_layout()
    return save_laid_out_figure(fig, path, dpi=dpi)


def save_laid_out_figure(fig: Any, path: str | pathlib.Path, *, dpi: int = 120) -> pathlib.Path:
    """Save a figure that is laid out already (every :mod:`testbed.plotting` function ends
    with ``tight_layout``; a second one moves things) and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return pathlib.Path(path)


def save_figures(out: str | pathlib.Path, figures: Mapping[str, Any], *, dpi: int = 120) -> list[pathlib.Path]:
    """Save laid-out figures (``file name -> figure``, :func:`save_laid_out_figure`) into the
    directory ``out``; returns their paths in order."""
    return [save_laid_out_figure(fig, pathlib.Path(out) / name, dpi=dpi) for name, fig in figures.items()]


@contextlib.contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Set ``timings[key]`` to the wall time [s] of the block."""
    start = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - start


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
