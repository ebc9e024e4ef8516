"""Provenance recorded with every output: versions, git commit, command, time."""

from __future__ import annotations

import datetime
import importlib.metadata
import pathlib
import platform
import subprocess
import sys
from typing import Any

PACKAGES = (
    "highway-bc-testbed",
    "gymnasium",
    "highway-env",
    "stable-baselines3",
    "imitation",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide our numbers."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _package_root() -> pathlib.Path:
    """The checkout (or site-packages directory) this package is imported from."""
    return pathlib.Path(__file__).resolve().parent.parent


def git_commit(root: pathlib.Path | None = None) -> str:
    """The commit of the checkout at ``root`` (default: the one this package is imported
    from), suffixed ``-dirty`` when tracked files outside ``results/`` have changes; or
    ``unknown`` outside a git checkout."""
    root = root or _package_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            # Committed results are outputs, not code: a rerun rewriting them is not a change
            # to what produced them.
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _script_checkout() -> pathlib.Path | None:
    """The checkout holding the running script, when it is not the package's own: an
    experiment run from a second worktree still imports ``testbed`` from wherever it is
    installed (an editable install of another checkout), and both commits then matter. A
    script in some other git checkout (the ``testbed`` console script inside a git-installed
    Python, e.g. pyenv's) is not a checkout of this project: only one with ``testbed/`` counts."""
    for parent in pathlib.Path(sys.argv[0]).resolve().parents:
        if (parent / ".git").exists():
            ours = (parent / "testbed" / "__init__.py").is_file()
            return None if parent == _package_root() or not ours else parent
    return None


SIMD_FLAGS = ("avx512f", "avx2", "fma")
"""CPU features that decide which math kernels numpy and torch (MKL) dispatch to."""


def cpu(cpuinfo: str | pathlib.Path = "/proc/cpuinfo") -> str:
    """The CPU model, core count and the :data:`SIMD_FLAGS` it has (from ``cpuinfo``): float32
    training (and the last bits of some float64 results) differ between CPUs whose kernels
    differ, so two runs of the same commit and seeds are compared knowing whether they shared
    a CPU."""
    import os

    fields: dict[str, str] = {}
    try:  # Linux; elsewhere only what platform knows
        for line in pathlib.Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or "unknown"
    have = [f for f in SIMD_FLAGS if f in fields.get("flags", "").split()]
    return f"{model}; {os.cpu_count()} cores" + (f"; {' '.join(have)}" if have else "")


def provenance() -> dict[str, Any]:
    """Everything needed to say where a result came from."""
    record = {
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "command": [pathlib.Path(sys.argv[0]).name, *sys.argv[1:]],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu(),
        "packages": package_versions(),
    }
    other = _script_checkout()
    if other is not None:
        record["script_git_commit"] = git_commit(other)
    return record
