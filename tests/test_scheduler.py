"""The scheduler: dependencies, the critical path first, cores as capacity, resuming a killed
run, and `testbed reproduce` on it (killed and rerun; on a local Ray cluster)."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from conftest import RAY_ADDRESS, run_on_a_ray_cluster

from testbed.errors import TestbedError
from testbed.outputs import write_json_atomic
from testbed.scheduler import DONE, Scheduler, Task, critical_path

ROOT = pathlib.Path(__file__).resolve().parent.parent


MEET_TIMEOUT_S = 120.0
"""How long a task waits for the task it is to run beside (a loaded machine starts workers slowly)."""


def _mark(log: str, key: str, seconds: float = 0.0, meet: str | None = None) -> dict[str, str]:
    """A task that appends ``start key`` and ``end key`` lines to ``log`` (each run counts); with
    ``meet``, it ends only once task ``meet`` has started (or after :data:`MEET_TIMEOUT_S`)."""
    with open(log, "a") as f:
        f.write(f"start {key} {time.time()}\n")
    deadline = time.monotonic() + MEET_TIMEOUT_S
    while meet is not None and f"start {meet} " not in pathlib.Path(log).read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write(f"end {key} {time.time()}\n")
    return {"key": key}


def _fail(key: str) -> None:
    raise TestbedError(f"task {key} failed")


def _lines(log: pathlib.Path) -> list[tuple[str, str, float]]:
    return [(w, k, float(t)) for w, k, t in (line.split() for line in log.read_text().splitlines())]


def _task(
    log: pathlib.Path,
    key: str,
    *,
    after: tuple[str, ...] = (),
    cpus: int = 1,
    cost: float = 1.0,
    s: float = 0.0,
    meet: str | None = None,
):
    return Task(key, functools.partial(_mark, str(log), key, s, meet), after=after, cpus=cpus, cost_s=cost)


def test_dependencies_order_and_the_critical_path_first(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log"
    tasks = [
        _task(log, "a-short", cost=1),
        _task(log, "long", cost=100),
        _task(log, "after-long", after=("long",), cost=1),
        _task(log, "after-both", after=("a-short", "after-long"), cost=1),
    ]
    assert critical_path({t.key: t for t in tasks})["long"] == 102
    records = Scheduler(tmp_path / "store", tasks, workers=1).run()
    assert list(records) == ["a-short", "long", "after-long", "after-both"]  # the order given
    assert all(not r.resumed and r.result == {"key": k} for k, r in records.items())
    order = [k for w, k, _ in _lines(log) if w == "start"]
    assert order.index("long") < order.index("after-long") < order.index("after-both")
    assert order.index("a-short") < order.index("after-both")

    log.unlink()
    submitted: list[str] = []
    Scheduler(tmp_path / "store2", tasks, workers=2).run(
        on_event=lambda k, w: submitted.append(k) if w == "start" else None
    )
    events = _lines(log)
    ends = {k: t for w, k, t in events if w == "end"}
    starts = {k: t for w, k, t in events if w == "start"}
    assert starts["after-long"] >= ends["long"] and starts["after-both"] >= max(ends["a-short"], ends["after-long"])
    # The longest chain is submitted first (which of two idle workers then logs first is a race).
    assert submitted[0] == "long"


def test_cores_are_the_capacity(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log"
    # "a" and "b" each wait for the other to start: side by side both end at once; one after the
    # other, the first would wait out MEET_TIMEOUT_S and end before the second started.
    tasks = [_task(log, "wide", cpus=2, cost=10, s=0.5), _task(log, "a", meet="b"), _task(log, "b", meet="a")]
    Scheduler(tmp_path / "store", tasks, workers=2).run()
    events = _lines(log)
    start = {k: t for w, k, t in events if w == "start"}
    end = {k: t for w, k, t in events if w == "end"}
    assert start["a"] >= end["wide"] and start["b"] >= end["wide"]  # nothing beside a two-core task
    assert start["b"] < end["a"] and start["a"] < end["b"]  # two one-core tasks side by side


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_task_stops_its_dependents_only_and_a_rerun_skips_what_finished(
    tmp_path: pathlib.Path, workers: int
) -> None:
    log = tmp_path / "log"
    store = tmp_path / "store"
    first = [
        _task(log, "a"),
        Task("b", functools.partial(_fail, "b"), after=("a",), cost_s=10),
        _task(log, "c", after=("b",)),
        _task(log, "d", s=0.3),  # needs nothing that failed: runs to the end
    ]
    seen: list[tuple[str, str]] = []
    with pytest.raises(TestbedError, match="task b failed"):
        Scheduler(store, first, workers=workers).run(on_event=lambda k, w: seen.append((k, w)))
    assert sorted(k for w, k, _ in _lines(log) if w == "end") == ["a", "d"]  # c never started
    assert ("b", "failed") in seen and not any(k == "c" for k, _ in seen)
    # The same tasks (same keys, dependencies, config) with b mended: a and d are not run again.
    mended = [_task(log, "a"), _task(log, "b", after=("a",)), _task(log, "c", after=("b",)), _task(log, "d")]
    seen.clear()
    records = Scheduler(store, mended, workers=2).run(on_event=lambda k, w: seen.append((k, w)))
    assert sorted(k for w, k, _ in _lines(log) if w == "start") == ["a", "b", "c", "d"]
    assert records["a"].resumed and records["d"].resumed and not records["b"].resumed
    assert ("a", "resumed") in seen and ("d", "resumed") in seen


def test_a_record_a_killed_writer_left_half_written_is_not_a_finished_task(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    store = tmp_path / "store"
    scheduler = Scheduler(store, [_task(log, "a")], workers=1)
    assert scheduler.open() == []
    # A writer killed after opening its temporary record: the finished task's record is never partial.
    monkeypatch.setattr(os, "replace", lambda src, dst: None)  # killed before the rename
    write_json_atomic(store / DONE / "a.json", {"key": "a", "result": {}, "wall_time_s": 1.0})
    monkeypatch.undo()
    (leftover,) = (store / DONE).iterdir()
    assert leftover.name != "a.json"
    assert scheduler.open() == [] and not leftover.exists()  # removed on resumption, not taken as done
    scheduler.run()
    assert [k for w, k, _ in _lines(log) if w == "start"] == ["a"]


def test_a_store_of_other_tasks_or_config_is_set_aside(tmp_path: pathlib.Path, capsys) -> None:
    log = tmp_path / "log"
    store = tmp_path / "store"
    Scheduler(store, [_task(log, "a")], config={"commit": "x"}, workers=1).run()
    Scheduler(store, [_task(log, "a")], config={"commit": "y"}, workers=1).run()
    assert [k for w, k, _ in _lines(log) if w == "start"] == ["a", "a"]  # not resumed across configs
    assert "starting afresh" in capsys.readouterr().out
    assert len(list(tmp_path.glob("store.stale-*"))) == 1


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([Task("a", print, after=("b",))], "unknown tasks"),
        ([Task("a", print, after=("b",)), Task("b", print, after=("a",))], "cycle"),
        ([Task("a", print), Task("a", print)], "two tasks"),
        ([Task("../a", print)], "task key"),
        ([Task("a", print, cpus=3)], "needs 3 cores"),
    ],
)
def test_bad_task_graphs_are_refused(tmp_path: pathlib.Path, tasks: list[Task], message: str) -> None:
    with pytest.raises(TestbedError, match=message):
        Scheduler(tmp_path / "store", tasks, workers=2)


# --- testbed reproduce on the scheduler -----------------------------------------------------

STEPS = ["pipeline", "divergence_gif", "rl_expert", "leaderboard"]
"""Four fast steps with dependencies between them (the GIF and leaderboard read the pipeline's
clone; the leaderboard the DQN)."""


def _reproduce(out: pathlib.Path, *extra: str) -> list[str]:
    only = sum((["--only", s] for s in STEPS), [])
    return [sys.executable, "-m", "testbed.cli", "reproduce", "--fast", *only, "--out-root", str(out), *extra]


def _outputs(root: pathlib.Path) -> dict[str, str]:
    """The CSV and JSON results of a rebuild, less what records when and where it ran."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.suffix == ".csv" and "timing" not in path.name:
            out[str(path.relative_to(root))] = path.read_text().replace(str(root), "ROOT")
    return out


@pytest.mark.slow
def test_a_killed_reproduce_resumes_without_recomputing_finished_steps(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "CI": "true"}
    proc = subprocess.Popen(
        _reproduce(out, "--workers", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # kill it as soon as its first step is done
        if line.startswith("== pipeline done"):
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    pipeline = out / "pipeline" / "highway-fast" / "eval" / "episodes.csv"
    first_mtime = pipeline.stat().st_mtime_ns
    done = json.loads((out / ".reproduce" / "done" / "pipeline.json").read_text())
    assert done["key"] == "pipeline"

    rerun = subprocess.run(_reproduce(out, "--workers", "2"), capture_output=True, text=True, env=env, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "== pipeline: finished by the interrupted run, kept" in rerun.stdout
    assert "== rl_expert done" in rerun.stdout and "== leaderboard done" in rerun.stdout
    assert pipeline.stat().st_mtime_ns == first_mtime  # not recomputed
    assert not (out / ".reproduce").exists()  # a complete rebuild clears its record

    # The resumed rebuild equals an uninterrupted one.
    fresh = tmp_path / "fresh"
    again = subprocess.run(_reproduce(fresh, "--workers", "2"), capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _outputs(out) == _outputs(fresh) and _outputs(out)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray instance at a time
def test_reproduce_on_a_ray_cluster_equals_the_local_pool(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "CI": "true"}
    local = subprocess.run(
        _reproduce(tmp_path / "local", "--workers", "2"), capture_output=True, text=True, env=env, timeout=900
    )
    assert local.returncode == 0, local.stderr[-2000:]
    command = _reproduce(tmp_path / "ray", "--workers", "2", "--executor", "ray", "--address", RAY_ADDRESS)
    ray = run_on_a_ray_cluster(tmp_path, command, env=env)
    assert "== leaderboard done" in ray.stdout
    assert _outputs(tmp_path / "local") == _outputs(tmp_path / "ray") and _outputs(tmp_path / "local")
