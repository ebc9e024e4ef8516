"""Progress output: one bar per stage on a terminal, nothing in a log or under CI, and the
quick pipeline's output fits on one screen."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from testbed import progress

TINY_PIPELINE = [
    "pipeline",
    "--demo-episodes",
    "3",
    "--eval-episodes",
    "2",
    "--epochs",
    "3",
    "--batch-size",
    "16",
    "--workers",
    "1",
]
SCREEN_LINES = 24


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TESTBED_PROGRESS")}
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("ci", "forced", "stdout_tty", "stderr_tty", "expected"),
    [
        (None, None, True, True, True),
        (None, None, False, True, False),  # stdout to a log file
        (None, None, True, False, False),  # stderr to a log file
        ("true", None, True, True, False),
        ("1", None, True, True, False),
        ("false", None, True, True, True),
        ("true", "1", False, False, True),  # forced on
        (None, "0", True, True, False),  # forced off
    ],
)
def test_bars_only_on_a_terminal_outside_ci(monkeypatch, ci, forced, stdout_tty, stderr_tty, expected) -> None:
    for name, value in (("CI", ci), ("TESTBED_PROGRESS", forced)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdout", _Stream(stdout_tty))
    monkeypatch.setattr(sys, "stderr", _Stream(stderr_tty))
    assert progress.enabled() is expected


def test_pipeline_log_fits_on_one_screen(tmp_path: pathlib.Path) -> None:
    """stdout and stderr are pipes (a log): no progress bar at all, only the result lines."""
    done = subprocess.run(
        [sys.executable, "-m", "testbed", *TINY_PIPELINE, "--out", str(tmp_path / "pipe")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "", done.stderr[-3000:]
    assert "\r" not in done.stdout and "%|" not in done.stdout and "it/s" not in done.stdout
    lines = done.stdout.strip().splitlines()
    assert len(lines) < SCREEN_LINES, lines
    # The final table is all there: header, rule, four policies.
    assert sum(line.startswith(("expert:scripted", "clone:", "idle", "random")) for line in lines) == 4
    assert lines[-1].startswith("wall time: collect")


def _run_on_a_terminal(args: list[str], env: dict[str, str], cwd: pathlib.Path) -> str:
    """Run the command with stdout and stderr on a pseudo-terminal; everything it wrote."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # A new pseudo-terminal is 0 x 0, where tqdm draws empty bars: give it a real screen's size.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", SCREEN_LINES, 120, 0, 0))
    proc = subprocess.Popen(args, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process ended
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=600) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_one_bar_per_stage_on_a_terminal_and_none_under_ci(tmp_path: pathlib.Path) -> None:
    args = [sys.executable, "-m", "testbed", *TINY_PIPELINE]
    shown = _run_on_a_terminal([*args, "--out", str(tmp_path / "a")], _env(), tmp_path)
    stages = set(re.findall(r"(?:^|[\r\n])(\w+):\s+\d+%\|", shown))
    assert stages == {"collect", "train", "evaluate"}, stages
    assert "Epoch " not in shown  # imitation's per-epoch lines are gone
    quiet = _run_on_a_terminal([*args, "--out", str(tmp_path / "b")], _env(CI="true"), tmp_path)
    assert "%|" not in quiet and "\r" not in quiet.replace("\r\n", "\n")
    assert "wall time: collect" in quiet
