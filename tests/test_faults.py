"""Faults mid-run end in one line, clean up and exit non-zero; a rerun starts clean.

A rollout worker killed with SIGKILL (what the out-of-memory killer sends), SIGTERM to the
command, Ctrl-C (SIGINT to the whole process group): each must leave one ``testbed: ...``
line on stderr (no traceback, nothing from the workers), no output or temporary directory,
no worker process, and the exit code 2, 143 or 130. The commands run as real subprocesses
in their own session; their worker processes are found through ``/proc`` (forkserver
workers are children of the forkserver, a child of the command).
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import testbed
from testbed.errors import TestbedError
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario
from testbed.sweep import run_sweep

REPO = pathlib.Path(testbed.__file__).resolve().parent.parent
EVALUATE = ["evaluate", "--policy", "expert:scripted", "--episodes", "40", "--workers", "2", "--out", "OUT"]
EVALUATE += ["--no-plot"]
"""Forty episodes on two workers: a few seconds of rollouts after the first one ends (six, at about
ten episodes a second, could all end before the signal arrived), and a rerun that stays short."""
BC_PROGRESS = re.compile(r"\d+batch \[[^\]]*\]|Epoch \d+ of \d+")
"""The lines of imitation's BC progress bars (batches, epochs)."""
STARTUP_TIMEOUT_S = 120.0
"""Generous: importing torch and highway-env takes seconds, more on a shared, busy machine."""
EXIT_TIMEOUT_S = 60.0


# --- processes ------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process, None when there is none."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may contain spaces
    return fields[0], int(fields[1]), int(fields[19])


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[1], []).append(int(entry.name))
    return children


def _descendants(root: int) -> list[int]:
    children, found, todo = _children(), [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _workers(root: int) -> list[int]:
    """Rollout workers of process ``root``: the children of its forkserver."""
    servers = [p for p in _descendants(root) if "multiprocessing.forkserver" in _cmdline(p)]
    return [w for s in servers if (st := _stat(s)) is not None and st[1] == root for w in _descendants(s)]


def _running(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[2] == start and st[0] not in ("Z", "X")  # a zombie has ended


def _assert_all_ended(seen: dict[int, int], timeout_s: float = 30.0) -> None:
    """Every process in ``seen`` (pid -> start time) ends within ``timeout_s`` (the forkserver
    and resource tracker exit once the command has; workers must be gone already)."""
    deadline = time.monotonic() + timeout_s
    while (left := [p for p, start in seen.items() if _running(p, start)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"still running: {[(p, _cmdline(p)[:120]) for p in left]}"


# --- the command ------------------------------------------------------------------------------


class Command:
    """``python -m testbed ARGS`` in its own session (so that killpg reaches exactly its
    process group), with cwd ``tmp/run``, stderr to ``tmp/stderr`` and ``TMPDIR=tmp/tmp``."""

    def __init__(self, tmp: pathlib.Path, args: list[str]) -> None:
        self.cwd, self.tmpdir, self.stderr_path = tmp / "run", tmp / "tmp", tmp / "stderr"
        self.cwd.mkdir(exist_ok=True)
        self.tmpdir.mkdir(exist_ok=True)
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        # Bars are drawn only on a terminal; the test reads them to know an episode is done.
        environ = {**os.environ, "PYTHONPATH": path, "TMPDIR": str(self.tmpdir), "TESTBED_PROGRESS": "1"}
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "testbed", *args],
                cwd=self.cwd,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        self.seen: dict[int, int] = {}
        """Every descendant process seen so far: pid -> start time."""

    def raw_stderr(self) -> str:
        return self.stderr_path.read_bytes().decode(errors="replace")

    def stderr_lines(self) -> list[str]:
        """Non-blank stderr lines as a terminal shows them (a progress bar redraws its line
        after a carriage return; the rollouts' ``leave=False`` bars end blank), without
        imitation's BC progress bars, which stay on screen."""
        lines = (line.rsplit("\r", 1)[-1] for line in self.raw_stderr().split("\n"))
        lines = (re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).strip() for line in lines)
        return [line for line in lines if line and not BC_PROGRESS.fullmatch(line)]

    def wait_for(self, ready: Callable[[], bool], what: str) -> None:
        """Poll until ``ready()``, noting the descendant processes meanwhile."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ready():
            self._note()
            assert self.proc.poll() is None, f"the command ended before {what}: {self.raw_stderr()[-2000:]}"
            assert time.monotonic() < deadline, f"no {what} after {STARTUP_TIMEOUT_S:.0f} s"
            time.sleep(0.02)
        self._note()

    def _note(self) -> None:
        for pid in _descendants(self.proc.pid):
            if pid not in self.seen and (st := _stat(pid)) is not None:
                self.seen[pid] = st[2]

    def finish(self) -> int:
        try:
            return self.proc.wait(EXIT_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:  # the test failed: do not leave it behind
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _episodes_done(command: Command) -> bool:
    """The progress bar counts a finished episode (``1/40``)."""
    return re.search(r"\b[1-9]\d*/\d+ ", command.raw_stderr()) is not None


def _assert_failed_cleanly(command: Command, code: int, line: str) -> None:
    """Exit ``code``; stderr one line starting with ``line``; nothing left in the run's
    directory (no output, no ``.OUT.tmp-*``) or temporary directory; no process left."""
    assert command.finish() == code, command.raw_stderr()[-3000:]
    lines = command.stderr_lines()
    assert len(lines) == 1 and lines[0].startswith(line), lines
    assert "Traceback" not in command.raw_stderr() and "KeyboardInterrupt" not in command.raw_stderr()
    assert sorted(os.listdir(command.cwd)) == []
    assert [p.name for p in command.tmpdir.iterdir() if p.name.startswith("testbed-")] == []
    _assert_all_ended(command.seen)


def _assert_rerun_succeeds(tmp: pathlib.Path, args: list[str], expected: str) -> None:
    """The same command, run again, writes its whole output."""
    rerun = Command(tmp, args)
    assert rerun.finish() == 0, rerun.raw_stderr()[-3000:]
    assert not [line for line in rerun.stderr_lines() if line.startswith("testbed: ")]
    assert "Traceback" not in rerun.raw_stderr()
    assert sorted(os.listdir(rerun.cwd)) == ["OUT"]
    assert (rerun.cwd / "OUT" / expected).is_file()


# --- a worker dies, the command is signalled ----------------------------------------------------


def _kill_a_worker(command: Command) -> None:
    os.kill(_workers(command.proc.pid)[0], signal.SIGKILL)


def _sigterm(command: Command) -> None:
    os.kill(command.proc.pid, signal.SIGTERM)


def _ctrl_c(command: Command) -> None:
    os.killpg(command.proc.pid, signal.SIGINT)  # what the terminal does: the whole process group


DIED = "testbed: error: a rollout worker died (killed by SIGKILL"
FAULTS = {
    "evaluate, worker SIGKILL": (EVALUATE, _kill_a_worker, 2, DIED),
    "evaluate, SIGTERM": (EVALUATE, _sigterm, 143, "testbed: interrupted by SIGTERM; partial outputs removed"),
    "evaluate, Ctrl-C": (EVALUATE, _ctrl_c, 130, "testbed: interrupted by SIGINT; partial outputs removed"),
}
"""Command, fault, exit code, start of the one stderr line."""


@pytest.mark.slow
@pytest.mark.parametrize("case", list(FAULTS))
def test_fault_mid_rollouts_is_one_line_and_leaves_nothing(case: str, tmp_path: pathlib.Path) -> None:
    args, fault, code, line = FAULTS[case]
    command = Command(tmp_path, args)
    # --workers 2: the command's own process and one worker process.
    command.wait_for(lambda: len(_workers(command.proc.pid)) == 1 and _episodes_done(command), "episode done")
    fault(command)
    _assert_failed_cleanly(command, code, line)
    if fault is _sigterm:  # every fault leaves the same (empty) state: one rerun shows it is clean
        _assert_rerun_succeeds(tmp_path, args, "episodes.csv")


@pytest.mark.slow
def test_sigterm_during_training_is_one_line_and_leaves_nothing(tmp_path: pathlib.Path, demos_dir) -> None:
    args = ["train", "--demos", str(demos_dir), "--epochs", "30", "--out", "OUT"]
    command = Command(tmp_path, args)
    # The trainer makes its log directory in TMPDIR just before the first epoch.
    command.wait_for(lambda: any(command.tmpdir.glob("testbed-bc-log-*")), "training log directory")
    _sigterm(command)
    _assert_failed_cleanly(command, 143, "testbed: interrupted by SIGTERM; partial outputs removed")


# --- the same, in this process --------------------------------------------------------------


class _DiesAtSeed:
    """An agent whose process kills itself (SIGKILL) when reset in a worker process. The pool's
    own process runs episodes too (``RolloutPool(2)`` is this process and one worker): there
    it only takes its time, so that the worker, once started, gets episodes."""

    def reset(self, env: Any, seed: int) -> None:
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(1.0)

    def act(self, obs: Any, env: Any) -> int:
        return 1  # IDLE


def dies_at_seed() -> _DiesAtSeed:
    """Policy factory ``test_faults:dies_at_seed`` (dies in worker processes)."""
    return _DiesAtSeed()


class _Refuses:
    def reset(self, env: Any, seed: int) -> None:
        raise TestbedError(f"refused seed {seed}", detail="the policy's own words")

    def act(self, obs: Any, env: Any) -> int:
        return 1


def refuses() -> _Refuses:
    """Policy factory ``test_faults:refuses``: raises a TestbedError with a detail."""
    return _Refuses()


@pytest.fixture()
def no_workers_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 30
    while (left := _workers(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, "rollout workers left running"


def test_pool_reports_a_dead_worker(scenario: Scenario, no_workers_left: None) -> None:
    seeds = list(range(10_000, 10_030))
    with pytest.raises(TestbedError, match=r"^a rollout worker died \(killed by SIGKILL") as info:
        with RolloutPool(2) as pool:
            pool.run(scenario, PolicySpec.parse("test_faults:dies_at_seed"), seeds)
    assert "BrokenProcessPool" in (info.value.detail or "")


def test_worker_exceptions_reach_the_caller_unchanged(scenario: Scenario, no_workers_left: None) -> None:
    with pytest.raises(TestbedError) as info:
        with RolloutPool(2) as pool:
            pool.run(scenario, PolicySpec.parse("test_faults:refuses"), [10_000, 10_001, 10_002])
    assert type(info.value) is TestbedError
    assert str(info.value) == "refused seed 10000" and info.value.detail == "the policy's own words"


def _cell(cell: dict, cell_dir: pathlib.Path) -> dict:
    """A sweep cell that notes its worker's pid, then dies (SIGKILL) if asked to."""
    (pathlib.Path(cell["pids"]) / str(os.getpid())).touch()
    if cell["die"]:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.5)
    return {"i": cell["i"]}


def test_sweep_reports_a_dead_worker(tmp_path: pathlib.Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    cells = [{"i": i, "die": i == 2, "pids": str(pids)} for i in range(4)]
    with pytest.raises(TestbedError, match=r"^a sweep worker died \(killed by SIGKILL.*run it again to resume"):
        run_sweep(cells, _cell, tmp_path / "sweep", workers=2)
    workers = {int(p.name): _stat(int(p.name)) for p in pids.iterdir()}
    _assert_all_ended({pid: st[2] for pid, st in workers.items() if st is not None})


_POOL_UNDER_TMPDIR = """
import concurrent.futures, multiprocessing.util, sys, tempfile
from testbed.runtime import worker_context
if sys.argv[1] == "made-before":
    print(multiprocessing.util.get_temp_dir())  # made under TMPDIR before the pool
else:
    print("-")
with concurrent.futures.ProcessPoolExecutor(2, mp_context=worker_context()) as pool:
    print(sum(pool.map(abs, [-1, -2])))
print(multiprocessing.util.get_temp_dir())
print(tempfile.gettempdir())
"""


@pytest.mark.parametrize("length", ["long", "long-made-before", "short", "short-made-before"])
def test_workers_start_under_any_tmpdir(length: str, tmp_path: pathlib.Path) -> None:
    """A TMPDIR too long for the forkserver's AF_UNIX socket (a deep build or test directory)
    does not stop the workers, even when multiprocessing made its own directory there before:
    that directory goes to /tmp (a long one made before is replaced, and both are removed at
    exit); every other temporary file, and everything under a short TMPDIR, stays where TMPDIR
    says."""
    from testbed.runtime import SOCKET_PATH_MAX

    if length.startswith("long"):
        tmpdir = tmp_path / ("t" * 100)
        tmpdir.mkdir()
    else:
        import tempfile

        tmpdir = pathlib.Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        out = subprocess.run(
            [sys.executable, "-c", _POOL_UNDER_TMPDIR, "made-before" if "made-before" in length else "-"],
            env={**os.environ, "TMPDIR": str(tmpdir)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        before, total, mp_dir, temp = out.stdout.split()
        assert total == "3" and temp == str(tmpdir)
        assert len(mp_dir) + len("/listener-12345678") <= SOCKET_PATH_MAX
        long = length.startswith("long")
        assert mp_dir.startswith("/tmp/pymp-") if long else mp_dir.startswith(f"{tmpdir}/pymp-")
        if before != "-":
            assert before.startswith(f"{tmpdir}/pymp-")
            assert (before != mp_dir) == long  # a short one made before is kept
            assert not pathlib.Path(before).exists()
        assert not pathlib.Path(mp_dir).exists()  # removed at exit
    finally:
        if length.startswith("short"):
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
