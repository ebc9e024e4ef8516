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

import dataclasses
import pathlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from testbed.errors import TestbedError
from testbed.outputs import write_json
from testbed.provenance import provenance
from testbed.runtime import default_workers


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
