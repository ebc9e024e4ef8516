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
from testbed.metrics import Interval
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
