"""One queue for many tasks with dependencies, on long-lived local workers or on Ray; resumable.

A :class:`Task` is a picklable function of no arguments with a key, the keys of the tasks it
must wait for (it reads what they wrote), how many cores it keeps busy and an estimate of its
cost. :class:`Scheduler` runs every task whose dependencies are done, as many at a time as
there are free cores, longest remaining chain first (the critical path decides the wall
time), and records each finished task in a *store* directory:

    STORE/state.json          what the tasks are (keys, dependencies) and the config they run with
    STORE/done/<key>.json     a finished task: its result (JSON) and wall time

A run killed at any point and started again with the same state skips the finished tasks and
redoes the others; a store made for other tasks or another config is set aside (the run
starts afresh, and says so), because its finished tasks computed something else. Task
functions must write their outputs atomically (a killed task leaves nothing a rerun would
mistake for done: :func:`testbed.outputs.atomic_output_dir`).

Executors: ``local`` keeps one pool of ``workers`` spawn processes for the whole run (no
start-up per task; each worker sets one torch thread and dies with this process), or runs the
tasks in this process, in dependency order, when ``workers`` is 1; ``ray`` submits each task
as a Ray task of ``num_cpus=task.cpus`` to a local instance or a cluster (``address``), whose
nodes must share the output filesystem. Results do not depend on the executor or the number
of workers: the tasks are the same functions of the same inputs.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from testbed.errors import TestbedError
from testbed.outputs import is_temporary, read_json, write_json_atomic
from testbed.runtime import broken_pool_error, init_worker, one_thread, start_ray, stop_pool

Executor = Literal["local", "ray"]
STATE = "state.json"
DONE = "done"


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of work on the queue."""

    key: str
    """Unique name, e.g. ``compounding_error`` or ``data_scaling/cell=3``; letters, digits and
    ``_-.=,/+`` only (it names a file in the store)."""
    fn: Callable[[], Mapping[str, Any] | None]
    """The work: a picklable function of no arguments (a module-level function or a
    ``functools.partial`` of one) returning a JSON-serialisable dict, or None."""
    after: tuple[str, ...] = ()
    """Keys of the tasks whose outputs this one reads: it starts once they are done."""
    cpus: int = 1
    """Cores the task keeps busy (its own worker processes included)."""
    cost_s: float = 60.0
    """Expected wall time [s] on one of those cores' worth of work: only orders the queue."""


@dataclasses.dataclass(frozen=True)
class Finished:
    """A task's record in the store."""

    key: str
    """The task."""
    result: dict[str, Any]
    """What it returned (empty for None)."""
    wall_time_s: float
    """How long it ran [s] (in the run that finished it)."""
    resumed: bool
    """Finished by an earlier run (read back from the store), not by this one."""


def _check_keys(tasks: Sequence[Task], capacity: int) -> dict[str, Task]:
    import re

    by_key: dict[str, Task] = {}
    for task in tasks:
        if not re.fullmatch(r"[A-Za-z0-9_.=,+/-]+", task.key) or ".." in task.key:
            raise TestbedError(f"task key {task.key!r}: use letters, digits and _-.=,/+ only")
        if task.key in by_key:
            raise TestbedError(f"two tasks have the key {task.key!r}")
        if not 1 <= task.cpus <= capacity:
            raise TestbedError(f"task {task.key!r} needs {task.cpus} cores; the run has {capacity}")
        by_key[task.key] = task
    for task in tasks:
        missing = [k for k in task.after if k not in by_key]
        if missing:
            raise TestbedError(f"task {task.key!r} waits for unknown tasks {missing}")
    _topological(by_key)  # refuses cycles
    return by_key


def _topological(tasks: Mapping[str, Task]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(key: str, path: tuple[str, ...]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise TestbedError(f"tasks wait for each other in a cycle: {' -> '.join((*path, key))}")
        state[key] = 1
        for dep in tasks[key].after:
            visit(dep, (*path, key))
        state[key] = 2
        order.append(key)

    for key in tasks:
        visit(key, ())
    return order


def critical_path(tasks: Mapping[str, Task]) -> dict[str, float]:
    """Per task, its cost plus the longest chain of costs of the tasks waiting for it: the
    queue starts the ready task with the largest (the critical path first)."""
    dependents: dict[str, list[str]] = {k: [] for k in tasks}
    for task in tasks.values():
        for dep in task.after:
            dependents[dep].append(task.key)
    length: dict[str, float] = {}
    for key in reversed(_topological(tasks)):
        length[key] = tasks[key].cost_s + max((length[d] for d in dependents[key]), default=0.0)
    return length


class Scheduler:
    """Run ``tasks`` into ``store`` (see the module docstring).

    Args:
        store: the directory recording finished tasks (created; removed by :meth:`clear`).
        tasks: every task of the run.
        config: what else decides the tasks' outputs (JSON): a store made with another config
            is set aside.
        workers: cores to keep busy (local pool size; with Ray, a local instance's CPUs).

    Raises:
        TestbedError: bad keys, unknown dependencies, a cycle, a task needing more cores than
            ``workers``.
    """

    def __init__(
        self, store: str | pathlib.Path, tasks: Sequence[Task], *, config: Any = None, workers: int = 1
    ) -> None:
        if workers < 1:
            raise TestbedError(f"--workers must be at least 1, got {workers}")
        self.store = pathlib.Path(store).absolute()
        self.workers = workers
        self.tasks = _check_keys(tasks, workers)
        self.state = {
            "tasks": [{"key": t.key, "after": list(t.after)} for t in tasks],
            "config": json.loads(json.dumps(config)),
        }

    # --- the store ---------------------------------------------------------------------

    def _done_path(self, key: str) -> pathlib.Path:
        return self.store / DONE / (key.replace("/", "__") + ".json")

    def open(self) -> list[str]:
        """Prepare the store and return the keys finished by an earlier run of the same tasks.

        A store of other tasks or another config is moved aside (``STORE.stale-<time>``) and
        a fresh one started: what it holds was computed for something else.
        """
        path = self.store / STATE
        if path.is_file():
            try:
                old = read_json(path, what="scheduler state")
            except TestbedError:
                old = None
            if old != self.state:
                stale = self.store.with_name(f"{self.store.name}.stale-{int(time.time())}")
                self.store.rename(stale)
                print(
                    f"note: {self.store} held another run's tasks; moved to {stale.name}, starting afresh", flush=True
                )
        (self.store / DONE).mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            write_json_atomic(path, self.state)
        for leftover in (self.store / DONE).iterdir():
            if is_temporary(leftover):
                leftover.unlink(missing_ok=True)
        return [k for k in self.tasks if self._done_path(k).is_file()]

    def _record(self, key: str, result: Mapping[str, Any] | None, wall_time_s: float) -> Finished:
        record = Finished(key, dict(result or {}), round(wall_time_s, 1), resumed=False)
        done = {"key": key, "result": record.result, "wall_time_s": record.wall_time_s}
        write_json_atomic(self._done_path(key), done)
        return record

    def _read(self, key: str) -> Finished:
        record = read_json(self._done_path(key), what="finished task record")
        return Finished(key, record.get("result", {}), float(record.get("wall_time_s", 0.0)), resumed=True)

    def clear(self) -> None:
        """Remove the store (after a complete run: a new run starts afresh)."""
        shutil.rmtree(self.store, ignore_errors=True)

    # --- running -----------------------------------------------------------------------

    def run(
        self,
        *,
        executor: Executor = "local",
        address: str | None = None,
        on_event: Callable[[str, str], None] | None = None,
    ) -> dict[str, Finished]:
        """Run every unfinished task; return every task's record, in the order given.

        Args:
            executor: ``local`` or ``ray``.
            address: Ray cluster address (``auto``, ``ray://host:10001``); None starts a
                local Ray instance of ``workers`` CPUs.
            on_event: called with (key, ``start``/``done``/``resumed``) as tasks move.

        Raises:
            TestbedError: a bad executor or address, Ray missing, a worker that died; a task's
                own exception propagates (the tasks finished so far are kept for a rerun).
        """
        if executor not in ("local", "ray"):
            raise TestbedError(f"executor must be 'local' or 'ray', got {executor!r}")
        if address is not None and executor != "ray":
            raise TestbedError("--address is for --executor ray")
        event = on_event or (lambda key, what: None)
        finished: dict[str, Finished] = {}
        for key in self.open():
            finished[key] = self._read(key)
            event(key, "resumed")
        pending = {k: t for k, t in self.tasks.items() if k not in finished}
        if pending:
            if executor == "local" and self.workers == 1:
                runner = self._run_here(pending, set(finished), event)
            else:
                backend = open_backend(executor, self.workers, address)
                runner = self._run_parallel(pending, set(finished), event, backend)
            for record in runner:
                finished[record.key] = record
        return {k: finished[k] for k in self.tasks}

    def _run_here(
        self, pending: Mapping[str, Task], done: set[str], event: Callable[[str, str], None]
    ) -> Iterator[Finished]:
        failed: dict[str, BaseException] = {}
        for key in _topological(self.tasks):
            if key not in pending or not all(d in done for d in pending[key].after):
                continue  # finished earlier, or waits for a failed task
            event(key, "start")
            start = time.perf_counter()
            try:
                result = pending[key].fn()
            except Exception as e:  # as _run_parallel: the others go on, the error comes last
                failed[key] = e
                event(key, "failed")
                continue
            record = self._record(key, result, time.perf_counter() - start)
            done.add(key)
            event(key, "done")
            yield record
        if failed:
            raise next(iter(failed.values()))

    def _run_parallel(
        self, pending: Mapping[str, Task], done: set[str], event: Callable[[str, str], None], backend: _Backend
    ) -> Iterator[Finished]:
        """Run ``pending`` on ``backend``. A task that raises does not stop the others: the
        running ones finish and are recorded, those that do not need it still run, those that do
        never start; then its error is raised (the first one's, if several), so a rerun resumes
        with every task that could finish already finished."""
        priority = critical_path(self.tasks)
        waiting = dict(pending)
        running: dict[Any, tuple[str, float]] = {}
        free = self.workers
        failed: dict[str, BaseException] = {}
        with backend:
            while waiting or running:
                ready = sorted(
                    (t for t in waiting.values() if all(d in done for d in t.after)),
                    key=lambda t: (-priority[t.key], t.key),
                )
                for task in ready:
                    if task.cpus <= free:
                        running[backend.submit(task)] = (task.key, time.perf_counter())
                        free -= task.cpus
                        del waiting[task.key]
                        event(task.key, "start")
                if not running:
                    if failed:  # what is left waits for a failed task
                        break
                    raise TestbedError(f"tasks {sorted(waiting)} can never start")  # pragma: no cover
                try:
                    handle, result = backend.wait_one(list(running))
                except TaskFailed as e:
                    key, _ = running.pop(e.handle)
                    free += self.tasks[key].cpus
                    failed[key] = e.error
                    event(key, "failed")
                    continue
                key, start = running.pop(handle)
                free += self.tasks[key].cpus
                record = self._record(key, result, time.perf_counter() - start)
                done.add(key)
                event(key, "done")
                yield record
        if failed:
            raise next(iter(failed.values()))


class TaskFailed(Exception):
    """A task raised ``error`` (raised by a backend's ``wait_one`` with the task's handle)."""

    def __init__(self, handle: Any, error: BaseException) -> None:
        super().__init__(str(error))
        self.handle, self.error = handle, error


def _call(fn: Callable[[], Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Run a task's function in a worker; its result must be JSON (checked here, where the
    task's own code is still on the stack)."""
    result = fn()
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise TypeError(f"a task must return a dict or None, got {type(result).__name__}")
    return json.loads(json.dumps(dict(result)))


# --- executors ---------------------------------------------------------------------------


class _Backend:
    """Submit tasks, wait for the next to finish; a context manager that always cleans up."""

    def __enter__(self) -> _Backend:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        raise NotImplementedError

    def submit(self, task: Task) -> Any:
        raise NotImplementedError

    def wait_one(self, handles: list[Any]) -> tuple[Any, dict[str, Any] | None]:
        raise NotImplementedError


def _scheduler_worker() -> None:
    """Initialiser of the scheduler's local workers: :func:`testbed.runtime.init_worker`, and
    one reused-episode memo for the worker's whole life (expert and baseline episodes that an
    earlier task simulated are not simulated again; it changes no number), shared with the
    other processes of a ``testbed reproduce`` run (:func:`testbed.rollout.share_episodes`)."""
    init_worker()
    from testbed.rollout import reuse_episodes_for_this_process

    reuse_episodes_for_this_process()


def open_backend(
    executor: str,
    workers: int,
    address: str | None,
    *,
    what: str = "scheduler worker",
    consequence: str = "the run was stopped (finished tasks are kept: run it again to resume)",
) -> _Backend:
    """The backend that runs tasks for the scheduler and for :mod:`testbed.sweep`: a spawn
    pool of ``workers`` long-lived processes (``local``) or Ray (``ray``, joining ``address``
    or starting a local instance of ``workers`` CPUs). ``what`` and ``consequence`` word the
    error when a local worker dies."""
    if executor == "local":
        return _LocalBackend(workers, what=what, consequence=consequence)
    return _RayBackend(workers, address)


class _LocalBackend(_Backend):
    def __init__(self, workers: int, *, what: str, consequence: str) -> None:
        self.what, self.consequence = what, consequence
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_scheduler_worker)
        # Python 3.11 spawns a worker per submit only when none is idle, so a task submitted
        # while the first worker is still starting queues behind it; the workers are meant to
        # live for the whole run, so all start at the first submit (the fork-context path).
        if hasattr(self.executor, "_safe_to_dynamically_spawn_children"):
            self.executor._safe_to_dynamically_spawn_children = False
        self.processes = self.executor._processes  # private; read only to tell how a worker died
        self.clean = False

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if not self.clean:
            stop_pool(self.executor, terminate=exc_type is not None)

    def submit(self, task: Task) -> Any:
        return self.executor.submit(_call, task.fn)

    def wait_one(self, handles: list[Any]) -> tuple[Any, dict[str, Any] | None]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures
        from concurrent.futures.process import BrokenProcessPool

        done, _ = wait_futures(handles, return_when=FIRST_COMPLETED)
        future = sorted(done, key=handles.index)[0]
        try:
            return future, future.result()
        except BrokenProcessPool as e:
            self.clean = True
            raise broken_pool_error(self.what, e, self.executor, self.processes, consequence=self.consequence) from None
        except Exception as e:  # the task's own error
            raise TaskFailed(future, e) from e


def _ray_call(fn: Callable[[], Mapping[str, Any] | None]) -> dict[str, Any] | None:
    one_thread()  # not init_worker: Ray manages its workers' signals and lifetime
    return _call(fn)


class _RayBackend(_Backend):
    def __init__(self, workers: int, address: str | None) -> None:
        self.ray, self.started = start_ray(workers, address)
        self.handles: list[Any] = []

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is not None:
                for ref in self.handles:
                    self.ray.cancel(ref, force=True)
        finally:
            if self.started:
                self.ray.shutdown()

    def submit(self, task: Task) -> Any:
        remote = self.ray.remote(num_cpus=task.cpus, max_retries=0)(_ray_call)
        ref = remote.remote(task.fn)
        self.handles.append(ref)
        return ref

    def wait_one(self, handles: list[Any]) -> tuple[Any, dict[str, Any] | None]:
        done, _ = self.ray.wait(handles, num_returns=1)
        self.handles.remove(done[0])
        try:
            return done[0], self.ray.get(done[0])
        except self.ray.exceptions.RayTaskError as e:  # the task's own error, as it was raised
            raise TaskFailed(done[0], e.as_instanceof_cause()) from e
