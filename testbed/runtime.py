"""Process set-up: torch threads, the workers' forkserver, worker initialisation and shutdown,
default worker count, signals.

One copy of each, used by every pool (rollouts, sweeps) and by training. Nothing here runs at
import time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import multiprocessing.context
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.process import BaseProcess

    from testbed.errors import TestbedError


def set_torch_threads(n: int) -> None:
    """Set torch's intra-op threads (and inter-op, the first time it is possible).

    On a 2-core machine torch's default of 2 threads makes a small MLP ~10x slower than 1.
    """
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # can only be set once, before any inter-op work
        pass


@contextlib.contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    """Set ``os.environ[name]`` to ``value`` for the block (and the processes started in it),
    then restore what it was (unset if it was unset)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    set_torch_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread() -> None:
    """One torch (and OpenMP) intra-op thread in this process: for a worker, whose parallelism
    comes from the worker processes instead."""
    os.environ["OMP_NUM_THREADS"] = "1"
    set_torch_threads(1)


def init_worker() -> None:
    """Initialiser of every local pool worker (rollouts, sweeps).

    Besides :func:`one_thread`: SIGINT is ignored, because Ctrl-C signals the whole process
    group and the parent stops its workers itself (a worker would otherwise die first, with
    a ``KeyboardInterrupt`` traceback of its own); and on Linux the worker is killed when its
    parent process ends (:func:`_die_with_parent`) and when the process that started it ends
    (:func:`_die_with_owner`; a forkserver worker's parent is the forkserver, not that
    process), so that no worker outlives a main process that was killed outright, even by
    SIGKILL. Once the workers are gone the forkserver and multiprocessing's resource tracker
    exit by themselves: each waits for the end of a pipe that only this process and its
    workers hold.
    """
    import signal

    one_thread()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _die_with_owner()


def _die_with_parent() -> None:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``, where there is one (best effort).

    It does not fire when the parent ended before the call; :func:`_die_with_owner` covers
    that for a spawned worker, whose parent is its owner.
    """
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):  # pragma: no cover - not Linux
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
        pass


def _die_with_owner() -> None:
    """Kill this process (SIGKILL) as soon as the process that started it ends, however it
    ended, or at once when it has ended already (best effort: Linux >= 5.3, pidfds).

    A forkserver worker's parent is the forkserver, so its ``PDEATHSIG`` does not fire when
    the main process dies; and nothing else tells it: it holds both ends of the executor's
    call queue (they are pickled to it), so it never reads EOF there. Worse, it holds the
    write ends of the forkserver's "alive" pipe and of the resource tracker's pipe, which
    are how those two learn that their clients have gone: after a SIGKILL of the main
    process the workers, the forkserver and the tracker all stayed, reparented to init. So a
    daemon thread waits on a pidfd of the owner (a ``poll`` of it returns once that process
    has ended, as a zombie too) and does nothing else: no effect on what the worker computes.
    The owner's pid is read when this worker starts: if the owner died and its pid was
    reused by then (pids wrap around only after ``pid_max`` processes), this watches the
    wrong process.
    """
    import multiprocessing
    import os
    import threading

    owner = multiprocessing.parent_process()
    if owner is None or owner.pid is None or not hasattr(os, "pidfd_open"):  # pragma: no cover - not Linux
        return
    try:
        pidfd = os.pidfd_open(owner.pid)
    except ProcessLookupError:  # the owner has ended (and been reaped) already
        _kill_self()
        return  # pragma: no cover - unreachable
    except OSError:  # pragma: no cover - no pidfds in this kernel (ENOSYS), or not permitted
        return
    threading.Thread(target=_kill_self_when_readable, args=(pidfd,), name="die-with-owner", daemon=True).start()


def _kill_self_when_readable(fd: int) -> None:
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.poll()  # retried after a signal (PEP 475): returns only when the process has ended
    _kill_self()


def _kill_self() -> None:
    """End this process as ``PDEATHSIG`` would: SIGKILL, no clean-up (the owner that would
    want results or clean-up is gone)."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def stop_pool(executor: ProcessPoolExecutor, *, terminate: bool, timeout_s: float = 10.0) -> None:
    """Shut ``executor`` down and wait until its worker processes have exited.

    Tasks not yet started are cancelled either way. ``terminate=False`` lets running tasks
    finish (the end of a successful block); ``terminate=True`` (after an exception or a
    signal) sends the workers SIGTERM at once, and SIGKILL to any still alive after
    ``timeout_s``. An exception during a graceful shutdown (a signal) terminates them too.
    """
    # Python 3.11 has no public way to stop an executor's workers (3.14 adds
    # terminate_workers()): the process objects are read from its private ``_processes``.
    processes = list((executor._processes or {}).values())
    try:
        if terminate:
            _terminate(processes, timeout_s)
        executor.shutdown(wait=True, cancel_futures=True)
    except BaseException:
        _terminate(processes, timeout_s)
        raise


def _terminate(processes: Sequence[BaseProcess], timeout_s: float) -> None:
    for p in processes:
        p.terminate()  # a no-op for a process known to have exited
    for p in processes:
        p.join(timeout_s)
        if p.is_alive():
            p.kill()
            p.join(timeout_s)


def broken_pool_error(
    what: str,
    error: BaseException,
    executor: ProcessPoolExecutor,
    processes: Mapping[int, BaseProcess],
    *,
    consequence: str,
) -> TestbedError:
    """Shut down a ``ProcessPoolExecutor`` that raised ``BrokenProcessPool`` and return the
    :class:`~testbed.errors.TestbedError` saying how its worker died (``killed by SIGKILL``).

    Args:
        what: the kind of worker (``rollout worker``).
        error: the ``BrokenProcessPool``.
        executor: the broken pool; shut down here, waiting for its workers, because until
            they are joined the executor's own thread reads their exit codes (and reading
            one twice loses it).
        processes: the executor's dict of worker processes, taken when it was made (its
            shutdown drops its own reference to it).
        consequence: what happened to the run, appended to the message.
    """
    import signal
    import traceback

    from testbed.errors import TestbedError

    executor.shutdown(wait=True, cancel_futures=True)
    detail = "".join(traceback.format_exception(error))
    if error.__cause__ is not None:  # the pool broke on a result it could not unpickle, not a death
        return TestbedError(f"a {what} sent back a result that could not be read; {consequence}", detail=detail)
    # Once one worker has died the executor terminates the others (SIGTERM): another cause first.
    codes = sorted((p.exitcode for p in processes.values() if p.exitcode), key=lambda c: c == -signal.SIGTERM)
    if not codes:
        how = "exited unexpectedly"
    elif codes[0] > 0:
        how = f"exited with code {codes[0]}"
    else:
        try:
            how = f"killed by {signal.Signals(-codes[0]).name}"
        except ValueError:
            how = f"killed by signal {-codes[0]}"
        if codes[0] == -signal.SIGKILL:
            how += ", which is also how the kernel ends a process when memory runs out"
    return TestbedError(f"a {what} died ({how}); {consequence}", detail=detail)


def default_workers() -> int:
    """The number of cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`testbed.errors.Interrupted` in the
    main thread, so every ``finally`` and context manager runs (temporary output directories
    are removed, worker pools are stopped) before the process exits. The previous handlers
    are restored afterwards. Outside the main thread this does nothing."""
    import signal
    import threading

    from testbed.errors import Interrupted

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        del frame
        # Once is enough: clean-up must not be interrupted by a second signal.
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name, 128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


WORKER_PRELOAD = ("testbed.rollout", "highway_env", "stable_baselines3.common.policies")
"""Modules the forkserver imports once, so that forked workers start without importing them."""

POOL_COMMANDS = ("collect", "evaluate", "drift", "pipeline", "benchmark")
"""``testbed`` subcommands that run episodes in a :class:`testbed.rollout.RolloutPool` of
``--workers`` processes (and so want the forkserver: :func:`start_workers_early`)."""


def worker_preload() -> list[str]:
    """:data:`WORKER_PRELOAD` plus ``"__main__"``, the modules the forkserver imports.

    A forked worker imports the parent's main module before its first task (multiprocessing
    does so under ``spawn`` and ``forkserver``, to unpickle what the main module defines).
    ``"__main__"`` (multiprocessing's own default preload, which setting a preload replaces)
    has the server import a main script run by path once, for every worker (the ``testbed``
    console script: ``testbed.cli``). A main module run by name (``python -m testbed.cli``)
    is still run again in each worker: its imports are cached by then (~0.1 s measured),
    and preloading it too would make runpy warn in every worker.
    """
    return [*WORKER_PRELOAD, "__main__"]


def worker_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context of rollout workers: a forkserver that has imported
    :func:`worker_preload` (``spawn`` where there is no forkserver).

    ``fork`` of a parent that has started torch's threads is unsafe; a ``spawn``-ed worker pays
    the imports, seconds, each time. The server starts at the first pool of a process (or
    earlier: :func:`start_workers_early`) and serves every later one.
    """
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():  # pragma: no cover - not Linux
        return mp.get_context("spawn")
    short_socket_dir()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(worker_preload())
    return ctx


SOCKET_PATH_MAX = 107
"""Bytes of an AF_UNIX socket path on Linux (``sun_path`` is 108, its NUL included)."""
_SOCKET_NAME = len("/listener-12345678")
"""What multiprocessing appends to its own ``pymp-*`` directory for the forkserver's socket."""
_LISTENER_SUFFIX = len("/pymp-12345678") + _SOCKET_NAME
"""What multiprocessing appends to the temporary directory for the forkserver's socket."""
SHORT_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
"""Where multiprocessing's own temporary directory goes when ``TMPDIR`` is too long."""


def short_socket_dir() -> None:
    """Make sure multiprocessing's temporary directory, where the forkserver's socket is made,
    is short enough for an AF_UNIX address: under a long ``TMPDIR`` (a deep build or test
    directory) starting the server fails with ``OSError: AF_UNIX path too long``. Then the
    first writable directory of :data:`SHORT_TMP_DIRS` holds it instead (only multiprocessing's
    ``pymp-*`` directory, removed at exit; every other temporary file stays in ``TMPDIR``), as
    Python 3.13's multiprocessing does itself. A directory multiprocessing already made is
    kept when it is short enough, and replaced otherwise (the long one is still removed at exit).

    Raises:
        TestbedError: ``TMPDIR`` is too long and none of those directories is writable.
    """
    import multiprocessing as mp
    import tempfile
    from multiprocessing import util

    config = mp.current_process()._config  # type: ignore[attr-defined]
    chosen = config.get("tempdir")
    if chosen is not None:
        if len(os.fsencode(chosen)) + _SOCKET_NAME <= SOCKET_PATH_MAX:
            return
        del config["tempdir"]  # its finalizer still removes it at exit
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) + _LISTENER_SUFFIX <= SOCKET_PATH_MAX:
        return
    for short in SHORT_TMP_DIRS:
        if os.path.isdir(short) and os.access(short, os.W_OK | os.X_OK):
            saved = tempfile.tempdir
            tempfile.tempdir = short
            try:
                util.get_temp_dir()  # made now, under ``short``, and kept for the process
            finally:
                tempfile.tempdir = saved
            return
    from testbed.errors import TestbedError

    raise TestbedError(
        f"the temporary directory {base} is too long for the workers' socket "
        f"({len(os.fsencode(base))} bytes, at most {SOCKET_PATH_MAX - _LISTENER_SUFFIX}), and none of "
        f"{', '.join(SHORT_TMP_DIRS)} is writable: set TMPDIR to a shorter directory"
    )


def start_workers_early(argv: Sequence[str]) -> bool:
    """Start the workers' forkserver now, if this process is the ``testbed`` command about to
    run one of :data:`POOL_COMMANDS` with more than one worker; returns whether it did.

    Called first thing by the command's entry point (:func:`testbed._early.main`), before
    :mod:`testbed.cli`'s heavy imports: the server's
    preload (torch, gymnasium, highway-env: ~2.5 s of one core) then runs on another core
    in parallel with this process's identical imports and its validation, instead of after
    them, when the first pool opens (measured on 2 cores before this: ``collect --workers 2``
    had its imports done at 1.9-2.8 s and its first episode at 4.9-6.6 s, while
    ``--workers 1`` started episodes right after its imports). Starting it returns at once
    (the server is a new process; the first worker request waits for its preload to finish).
    Nothing is started for a single worker, ``--help`` or another command: those would pay
    the preload for nothing. (A forkserver that preloads the command's script imports it as
    ``__mp_main__``, so its ``__main__`` guard keeps the entry point from running there.)

    Args:
        argv: the command line after the program name (``sys.argv[1:]``).
    """
    words = [a for a in argv if a != "--debug"]
    command = next((a for a in words if not a.startswith("-")), None)
    if command not in POOL_COMMANDS or "-h" in words or "--help" in words:
        return False
    if _workers_option(words) <= 1:
        return False
    from testbed.errors import TestbedError

    try:
        ctx = worker_context()
    except TestbedError:  # no server early: the pool will say what is wrong, in one line
        return False
    if ctx.get_start_method() != "forkserver":  # pragma: no cover - not Linux
        return False
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return True


def _workers_option(words: Sequence[str]) -> int:
    """The ``--workers`` value on a command line (the default, :func:`default_workers`, when
    absent; 1 when unreadable: tyro will refuse it, and no server is wanted for that)."""
    value: str | None = None
    for i, word in enumerate(words):
        if word == "--workers" and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("--workers="):
            value = word.partition("=")[2]
    if value is None:
        return default_workers()
    try:
        return int(value)
    except ValueError:
        return 1


def start_ray(workers: int, address: str | None) -> tuple[Any, bool]:
    """Ray, initialised for a run of tasks: joined to the cluster at ``address``, or a local
    instance of ``workers`` CPUs when None (each worker one OpenMP thread), unless Ray is
    initialised already. Returns the ``ray`` module and whether this call started it (and so
    must ``ray.shutdown()`` it).

    Raises:
        TestbedError: Ray not installed, or no cluster at ``address``.
    """
    from testbed.errors import TestbedError

    try:
        import ray
    except ImportError:
        raise TestbedError(
            "the ray executor needs Ray: pip install 'highway-bc-testbed[ray]' (or pip install ray)"
        ) from None
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        kwargs.update(num_cpus=workers, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise TestbedError(f"cannot connect to the Ray cluster at {address}: {e}") from None
    if address is None:
        # A local instance is this process's tree: some of its agents (DashboardAgent,
        # RuntimeEnvAgent) outlive a SIGKILLed driver by more than 30 s (measured).
        watch_descendants()
    return ray, True


_WATCHDOG = """
import os, sys, time
owner = int(sys.argv[1])
me = os.getpid()

def stat(pid):
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[19]  # parent pid, start time

seen = {}

def scan(roots):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and (st := stat(int(entry))) is not None:
            children.setdefault(st[0], []).append((int(entry), st[1]))
    todo = list(roots)
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in seen:
                seen[pid] = start
                todo.append(pid)

while stat(owner) is not None:
    scan([owner])
    time.sleep(0.5)
# The owner has ended: for a few seconds, kill what it left and whatever that still starts.
end = time.monotonic() + 5.0
while time.monotonic() < end:
    scan([pid for pid, start in seen.items() if (st := stat(pid)) is not None and st[1] == start])
    for pid, start in seen.items():
        st = stat(pid)
        if st is not None and st[1] == start:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    time.sleep(0.2)
"""
"""The watchdog of :func:`watch_descendants` (a separate interpreter: nothing to import)."""


def watch_descendants() -> None:
    """Start a watchdog process that, once this process has ended (however: SIGKILL too), kills
    every process that was ever its descendant and still runs (Linux ``/proc``; a no-op
    elsewhere). For process trees this process does not control itself, such as a local Ray
    instance's agents. The watchdog records the descendants twice a second; once the owner has
    ended it kills them, and for 5 s whatever they still start, then exits. It tells processes
    apart by their start time, so a reused pid is never killed.
    """
    import subprocess
    import sys

    if not os.path.isdir("/proc"):  # pragma: no cover - not Linux
        return
    subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
