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


def provenance() -> dict[str, Any]:
    """Everything needed to say where a result came from."""
    record = {
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "command": [pathlib.Path(sys.argv[0]).name, *sys.argv[1:]],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }
    other = _script_checkout()
    if other is not None:
        record["script_git_commit"] = git_commit(other)
    return record
