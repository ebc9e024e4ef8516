"""Resumable sweeps over grids of independent cells, on local processes or on Ray.

An experiment is a list of *cells* (scenario x data size x seed x algorithm, say), each a
small dict or frozen dataclass of JSON scalars, and one *cell function*
``fn(cell, cell_dir) -> dict`` that computes a cell's JSON-serialisable result and may write
files into ``cell_dir``. :func:`run_sweep` runs the cells that are not done yet and returns
every cell's result in grid order (the order of ``cells``), whatever order they finished in::

    OUT/config.json                 sweep config (function, caller's config, cell list) + provenance
    OUT/cells/<cell_id>/result.json the cell's result
    OUT/cells/<cell_id>/timing.json its wall and CPU time (apart, so results stay reproducible)
    OUT/cells/<cell_id>/...         files the cell function wrote
    OUT/results.json                all results in grid order, written when every cell is done

Resuming: a cell directory appears by an atomic rename only once its function has returned
(:func:`testbed.outputs.atomic_output_dir`), so a sweep killed at any point and run again
skips the finished cells, deletes half-written temporary directories and redoes the rest;
the final results equal an uninterrupted run's as long as the cell function is a pure
function of its cell. A directory made by a different sweep (other function, config or
cells) is refused. One run at a time per directory (a second one would delete the first's
temporary cell directories).

Parallelism: cells run in parallel (``workers`` spawn processes locally, or one Ray task of
``num_cpus=1`` each), and a cell should run its own rollouts in-process (one rollout
worker, e.g. ``RolloutPool(1)``): a grid has many more cells than a machine has cores, so
parallel cells keep every core busy without nesting process pools. With ``workers=1`` the
local executor runs cells one after another in this process.

On several machines (``executor="ray"`` with a cluster ``address``), ``OUT`` must be on a
filesystem every node sees (cells write their files from where they run), and the nodes
need this package and the cell function's dependencies installed. The cell function and
cells are shipped with cloudpickle, by value when their module is not importable by name
(a script such as ``experiments/data_scaling.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from testbed.errors import TestbedError
from testbed.outputs import atomic_output_dir, is_temporary, read_json, write_json, write_json_atomic
from testbed.progress import track
from testbed.provenance import provenance

CONFIG = "config.json"
CELLS = "cells"
RESULT = "result.json"
TIMING = "timing.json"
RESULTS = "results.json"
Executor = Literal["local", "ray"]
CellFn = Callable[[Any, pathlib.Path], Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class CellResult:
    """One finished cell."""

    cell_id: str
    """Stable id derived from the cell's parameters (its directory name)."""
    params: dict[str, Any]
    """The cell's parameters."""
    result: dict[str, Any]
    """What the cell function returned (as read back from ``result.json``)."""
    path: pathlib.Path
    """The cell's directory."""


def cell_params(cell: Any) -> dict[str, Any]:
    """A cell's parameters as a dict (a dataclass's fields, or the dict itself).

    Raises:
        TestbedError: not a dict or dataclass, or values that are not JSON-serialisable.
    """
    if dataclasses.is_dataclass(cell) and not isinstance(cell, type):
        params = dataclasses.asdict(cell)
    elif isinstance(cell, Mapping):
        params = dict(cell)
    else:
        raise TestbedError(f"a sweep cell must be a dict or a dataclass, got {type(cell).__name__}")
    try:
        return json.loads(json.dumps(params, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise TestbedError(f"sweep cell parameters must be JSON-serialisable: {params!r} ({e})") from None


def cell_id(cell: Any) -> str:
    """A readable, stable id from a cell's parameters, e.g. ``n_episodes=10,seed=3``.

    Keys are sorted, so two dicts with the same items get the same id; characters other
    than letters, digits and ``=.,+-`` become ``-``; ids over 120 characters are shortened
    and suffixed with a hash of the full parameters.
    """
    import hashlib

    params = cell_params(cell)
    text = ",".join(f"{k}={_flat(v)}" for k, v in sorted(params.items()))
    slug = re.sub(r"[^A-Za-z0-9=.,+_-]", "-", text) or "cell"
    if len(slug) > 120:
        digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
        slug = f"{slug[:100]}-{digest}"
    return slug


def _flat(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(_flat(v) for v in value)
    return str(value)


def _fn_name(fn: Callable[..., Any]) -> str:
    """The cell function's name, through ``functools.partial`` (without its module, which
    is ``__main__`` when a script runs and the script's name when it is imported)."""
    inner = getattr(fn, "func", fn)
    return getattr(inner, "__qualname__", type(inner).__name__)


class Sweep:
    """A sweep directory and its cells (use :func:`run_sweep` for the common case).

    Creating a ``Sweep`` checks the cells and refuses a directory made by a different sweep,
    before any work is done; :meth:`run` does the rest.

    Args:
        out: sweep directory (created on :meth:`run`).
        cells: the grid, in the order results are reported.
        fn: ``fn(cell, cell_dir) -> dict``; picklable (module-level function or
            ``functools.partial`` of one), a pure function of its cell for resumes to be exact.
        config: anything else that decides the results (JSON-serialisable); a rerun with a
            different config is refused.

    Raises:
        TestbedError: no cells, duplicate cell ids, or ``out`` made by another sweep.
    """

    def __init__(self, out: str | pathlib.Path, cells: Sequence[Any], fn: CellFn, *, config: Any = None) -> None:
        if not cells:
            raise TestbedError("a sweep needs at least one cell")
        # Absolute: Ray workers need not share this process's working directory.
        self.out = pathlib.Path(out).absolute()
        self.cells = list(cells)
        self.fn = fn
        self.ids = [cell_id(c) for c in self.cells]
        dupes = sorted({i for i in self.ids if self.ids.count(i) > 1})
        if dupes:
            raise TestbedError(f"sweep cells with the same parameters: {dupes[:3]}")
        try:
            config = json.loads(json.dumps(config))
        except (TypeError, ValueError) as e:
            raise TestbedError(f"sweep config must be JSON-serialisable ({e})") from None
        self.spec = {
            "function": _fn_name(fn),
            "config": config,
            "cells": [{"id": i, "params": cell_params(c)} for i, c in zip(self.ids, self.cells)],
        }
        self._check_existing()

    @property
    def cells_dir(self) -> pathlib.Path:
        return self.out / CELLS

    def _check_existing(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise TestbedError(f"sweep output path exists and is not a directory: {self.out}")
        path = self.out / CONFIG
        if not path.exists():
            if self.out.is_dir() and any(not p.name.startswith(".") for p in self.out.iterdir()):
                raise TestbedError(f"{self.out} exists and is not a sweep directory (no {CONFIG}); choose another one")
            return
        old = read_json(path, what="sweep config")
        if not isinstance(old, dict) or old.get("sweep") != self.spec:
            raise TestbedError(
                f"{self.out} was made by a different sweep config ({_difference(old, self.spec)}); "
                "use another output directory or delete it"
            )

    def done(self) -> list[bool]:
        """Per cell (grid order): is its result on disk?"""
        return [(self.cells_dir / i / RESULT).is_file() for i in self.ids]

    def results(self) -> list[CellResult]:
        """The finished cells' results, in grid order."""
        return [
            CellResult(
                i, cell_params(c), read_json(self.cells_dir / i / RESULT, what="cell result"), self.cells_dir / i
            )
            for i, c, d in zip(self.ids, self.cells, self.done())
            if d
        ]

    def _prepare(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / CONFIG
        if path.exists():
            record = read_json(path, what="sweep config")
            record.setdefault("resumed", []).append(provenance())
        else:
            record = {"sweep": self.spec, "provenance": provenance()}
        write_json_atomic(path, record)
        self.cells_dir.mkdir(exist_ok=True)
        # Leftovers of a killed run: temporary cell directories, and (defensively) cell
        # directories without a result.
        known = set(self.ids)
        for entry in self.cells_dir.iterdir():
            if is_temporary(entry):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name in known and not (entry / RESULT).is_file():
                shutil.rmtree(entry, ignore_errors=True)

    def run(
        self,
        *,
        executor: Executor = "local",
        workers: int = 1,
        address: str | None = None,
        progress: bool = False,
    ) -> list[CellResult]:
        """Run the unfinished cells and return every cell's result in grid order.

        Args:
            executor: ``local`` (spawn process pool of ``workers``; in this process when 1)
                or ``ray``.
            workers: local worker processes; with Ray, the CPUs of a local instance started
                here (ignored when joining a cluster or an already initialised Ray).
            address: Ray cluster address (``auto``, ``ray://host:10001``); None starts a
                local instance unless Ray is already initialised.
            progress: show a progress bar.

        Raises:
            TestbedError: bad executor or worker count, or Ray missing.
        """
        if executor not in ("local", "ray"):
            raise TestbedError(f"executor must be 'local' or 'ray', got {executor!r}")
        if workers < 1:
            raise TestbedError(f"--workers must be at least 1, got {workers}")
        if address is not None and executor != "ray":
            raise TestbedError("--address is for --executor ray")
        self._prepare()
        pending = [(i, c) for i, c, d in zip(self.ids, self.cells, self.done()) if not d]
        if pending:
            payloads = [_payload(self.fn, c, self.cells_dir / i) for i, c in pending]
            finished = _run_cells(payloads, executor=executor, workers=workers, address=address)
            if progress:
                finished = track(finished, len(payloads), "cells", unit="cell")
            for _ in finished:
                pass
        results = self.results()
        write_json_atomic(
            self.out / RESULTS, [{"cell_id": r.cell_id, "params": r.params, "result": r.result} for r in results]
        )
        return results


def run_sweep(
    cells: Sequence[Any],
    fn: CellFn,
    out: str | pathlib.Path,
    *,
    config: Any = None,
    executor: Executor = "local",
    workers: int = 1,
    address: str | None = None,
    progress: bool = False,
) -> list[CellResult]:
    """Run ``fn`` on every unfinished cell into ``out`` and return all results in grid order.

    See :class:`Sweep` for the arguments and the module docstring for the layout.
    """
    return Sweep(out, cells, fn, config=config).run(
        executor=executor, workers=workers, address=address, progress=progress
    )


def _difference(old: Any, new: Mapping[str, Any]) -> str:
    if not isinstance(old, dict) or "sweep" not in old:
        return "not a sweep config"
    old = old["sweep"]
    for key in ("function", "config", "cells"):
        if old.get(key) != new[key]:
            if key == "config" and isinstance(old.get(key), dict) and isinstance(new[key], dict):
                keys = sorted(k for k in set(old[key]) | set(new[key]) if old[key].get(k) != new[key].get(k))
                return f"config differs in {', '.join(keys[:5])}"
            return f"{key} differs"
    return "differs"


# --- Execution -------------------------------------------------------------------------


def _payload(fn: CellFn, cell: Any, cell_dir: pathlib.Path) -> bytes:
    """``(fn, cell, cell_dir)`` pickled with cloudpickle. Functions and classes from modules
    outside this package and outside installed distributions (a script such as
    ``experiments/data_scaling.py``, a test module) go by value: a spawn or Ray worker
    could not import them by name."""
    import cloudpickle

    modules = {getattr(getattr(fn, "func", fn), "__module__", None), type(cell).__module__}
    by_value = []
    for name in modules:
        module = sys.modules.get(name) if name else None
        if module is not None and name != "__main__" and _by_value(module):
            cloudpickle.register_pickle_by_value(module)
            by_value.append(module)
    try:
        return cloudpickle.dumps((fn, cell, str(cell_dir)))
    finally:
        for module in by_value:
            cloudpickle.unregister_pickle_by_value(module)


def _by_value(module: Any) -> bool:
    name = module.__name__
    if name == "testbed" or name.startswith("testbed.") or name in sys.builtin_module_names:
        return False
    path = getattr(module, "__file__", None)
    if path is None:
        return False
    parts = pathlib.Path(path).resolve().parts
    return not (
        "site-packages" in parts or "dist-packages" in parts or pathlib.Path(path).resolve().is_relative_to(_STDLIB)
    )


_STDLIB = pathlib.Path(os.__file__).resolve().parent


def execute_cell(payload: bytes) -> str:
    """Run one pickled cell into its directory, atomically; returns the cell directory.

    Runs in a worker (process pool or Ray task) or in this process.
    """
    import pickle

    fn, cell, cell_dir = pickle.loads(payload)
    start, cpu_start = time.perf_counter(), time.process_time()
    with atomic_output_dir(cell_dir, overwrite=True) as tmp:
        result = fn(cell, tmp)
        if not isinstance(result, Mapping):
            raise TypeError(f"a cell function must return a dict, got {type(result).__name__}")
        write_json(tmp / RESULT, dict(result))
        write_json(
            tmp / TIMING,
            {
                "wall_time_s": round(time.perf_counter() - start, 3),
                "cpu_time_s": round(time.process_time() - cpu_start, 3),
            },
        )
    return cell_dir


def _run_cells(payloads: list[bytes], *, executor: Executor, workers: int, address: str | None) -> Iterator[str]:
    """Run the cells on the scheduler's backends (:func:`testbed.scheduler.open_backend`),
    yielding each cell directory as it finishes; the first cell error stops the others (the
    finished cells are kept). One local worker (or one cell) runs here, in this process."""
    from testbed.scheduler import Task, TaskFailed, open_backend

    if executor == "local" and (workers == 1 or len(payloads) == 1):
        for p in payloads:
            yield execute_cell(p)
        return
    consequence = "the sweep was stopped (finished cells are kept: run it again to resume)"
    n = min(workers, len(payloads)) if executor == "local" else workers
    with open_backend(executor, n, address, what="sweep worker", consequence=consequence) as backend:
        handles = [backend.submit(Task(f"cell-{i}", functools.partial(_cell_task, p))) for i, p in enumerate(payloads)]
        while handles:
            try:
                handle, result = backend.wait_one(handles)
            except TaskFailed as e:
                raise e.error from None
            handles.remove(handle)
            yield str((result or {})["cell_dir"])


def _cell_task(payload: bytes) -> dict[str, str]:
    """A cell as a scheduler task (its result is JSON: the cell directory)."""
    return {"cell_dir": str(execute_cell(payload))}
