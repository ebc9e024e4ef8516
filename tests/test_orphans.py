"""No process outlives a command killed outright (issue 25).

A command's main process killed by SIGKILL runs no clean-up, so its worker processes, the
forkserver and multiprocessing's resource tracker must end by themselves: within
:data:`ORPHAN_TIMEOUT_S`, nothing of the command's session may be left. Each command runs in
its own session (the session id is the main process's pid, and every process it starts
inherits it, also once reparented to init), and only the main process is killed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest
from test_faults import EVALUATE, REPO, STARTUP_TIMEOUT_S, Command, _cmdline, _descendants, _workers

ORPHAN_TIMEOUT_S = 10.0
"""How long the processes of a killed command may take to end."""


def _session(sid: int) -> dict[int, str]:
    """The processes of session ``sid`` that have not ended (zombies have): pid -> command line."""
    alive = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # the command name may contain spaces
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            alive[int(entry.name)] = _cmdline(int(entry.name))
    return alive


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready():
        assert proc.poll() is None, f"the command ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {STARTUP_TIMEOUT_S:.0f} s"
        time.sleep(0.02)


def _assert_sigkill_leaves_nothing(proc: subprocess.Popen) -> None:
    """SIGKILL the main process ``proc`` (a session leader) alone; assert that every process of
    its session ends within :data:`ORPHAN_TIMEOUT_S`."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + ORPHAN_TIMEOUT_S
    while (left := _session(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"still running {ORPHAN_TIMEOUT_S:.0f} s after SIGKILL: {left}"


@contextlib.contextmanager
def _killed_afterwards(proc: subprocess.Popen) -> Iterator[None]:
    """Whatever happens in the block, kill ``proc`` and what is left of its session after it
    (a failing test leaves nothing behind)."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _session(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    "args",
    [["collect", "--episodes", "40", "--workers", "2", "--out", "OUT"], EVALUATE],
    ids=["collect", "evaluate"],
)
def test_sigkill_of_a_rollout_command_leaves_no_process(args: list[str], tmp_path: pathlib.Path) -> None:
    """Its forkserver worker (``--workers 2``: the command's process is the other one), the
    forkserver and the resource tracker all end."""
    command = Command(tmp_path, args)
    with _killed_afterwards(command.proc):
        _wait_until(lambda: len(_workers(command.proc.pid)) == 1, command.proc, "a rollout worker")
        _assert_sigkill_leaves_nothing(command.proc)


SWEEP = textwrap.dedent(
    """
    import pathlib, sys, time
    from testbed.sweep import run_sweep

    def cell(cell, cell_dir):
        time.sleep(120)
        return {}

    run_sweep([{"i": i} for i in range(4)], cell, pathlib.Path(sys.argv[1]) / "sweep", workers=2)
    """
)
"""A local sweep of long cells on two spawn workers."""


def test_sigkill_of_a_sweep_while_its_workers_start_leaves_no_process(tmp_path: pathlib.Path) -> None:
    """A local sweep's two spawn workers and the resource tracker end, also when the main
    process dies while the workers are still starting, before their ``PDEATHSIG`` is set
    (which then never fires). Killed later, once the cells run, they always ended."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", SWEEP, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": path},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def workers() -> int:
        return sum("multiprocessing.spawn" in _cmdline(p) for p in _descendants(proc.pid))

    with _killed_afterwards(proc):
        _wait_until(lambda: workers() == 2, proc, "two sweep workers")
        _assert_sigkill_leaves_nothing(proc)


RAY_DRIVER = """
import sys, time
from testbed.runtime import start_ray
ray, started = start_ray(2, None)
assert started
print("ready", flush=True)
time.sleep(300)
"""


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray instance at a time
def test_sigkill_of_a_driver_with_a_local_ray_instance_leaves_no_process(tmp_path: pathlib.Path) -> None:
    """``--executor ray`` without ``--address`` starts a local Ray instance (GCS, raylet, agents,
    workers) in the command's tree; some of its agents outlived a SIGKILLed driver by more
    than 30 s until a watchdog (``runtime.watch_descendants``) ended them. Run in a
    loopback-only network namespace (Ray would otherwise bind to the machine's outward
    address)."""
    pytest.importorskip("ray")
    if os.geteuid() != 0 or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs root for a network namespace (unshare -n)")
    (tmp_path / "driver.py").write_text(RAY_DRIVER)
    script = f"ip link set lo up && exec {sys.executable} driver.py"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        ["unshare", "-n", "bash", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
        cwd=tmp_path,
    )
    with _killed_afterwards(proc):
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        # Once the instance is up (its agents started; the watchdog records twice a second).
        agents = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
        _wait_until(
            lambda: all(any(c.startswith(a) for c in _session(proc.pid).values()) for a in agents), proc, "Ray's agents"
        )
        time.sleep(1.0)
        _assert_sigkill_leaves_nothing(proc)
