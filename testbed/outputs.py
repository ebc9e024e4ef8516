"""Output directories that appear whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from testbed.errors import TestbedError


def check_output_dir(path: str | pathlib.Path, *, overwrite: bool) -> pathlib.Path:
    """Refuse an output directory the run could not write at its end; fail before any work.

    Raises:
        TestbedError: the path exists (unless ``overwrite``), is a file, a dangling symbolic
            link or a symlink loop, or lies under a file.
    """
    out = check_output_path(path)
    if out.exists() and not out.is_dir():
        raise TestbedError(f"output path exists and is not a directory: {out}")
    if out.exists() and not overwrite:
        raise TestbedError(f"output directory exists: {out} (pass --overwrite to replace it)")
    return out


def check_output_path(path: str | pathlib.Path) -> pathlib.Path:
    """Refuse an output path (file or directory) that cannot be created or replaced: a
    dangling symbolic link, a symlink loop, a path under an existing file, or a directory
    this process may not write to.

    Raises:
        TestbedError: one line naming the problem.
    """
    out = pathlib.Path(path)
    if str(path).strip() == "":
        raise TestbedError("the output path is empty")
    if out.is_symlink() and not out.exists():
        try:
            target = os.readlink(out)
        except OSError:  # pragma: no cover - the link vanished meanwhile
            target = "?"
        try:
            out.resolve(strict=True)
        except RuntimeError:
            raise TestbedError(f"output path {out} is a symbolic link loop; remove it or choose another path") from None
        except OSError:
            pass
        raise TestbedError(
            f"output path {out} is a dangling symbolic link (to {target}); remove it or choose another path"
        )
    parent = out.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if parent.is_symlink() and not parent.exists():
        raise TestbedError(f"output path {out} lies under {parent}, a dangling symbolic link or symlink loop")
    if not parent.is_dir():
        raise TestbedError(f"output path {out} lies under {parent}, which is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TestbedError(f"output path {out}: cannot write in {parent} (permission denied)")
    return out


TEXT_SUFFIXES = (".csv", ".json", ".md", ".txt")
"""Files :func:`atomic_output_dir` checks for recorded temporary paths."""
_TMP_MARK = ".tmp-"


def final_path(path: str | pathlib.Path) -> pathlib.Path:
    """Where ``path``, inside a directory :func:`atomic_output_dir` is still writing, will be
    once the block succeeds (``path`` itself when it is not inside one). Record this, never
    the temporary path: the directory is renamed, not rewritten."""
    parts = list(pathlib.Path(path).parts)
    for i, part in enumerate(parts):
        if part.startswith(".") and _TMP_MARK in part:
            parts[i] = part[1 : part.rindex(_TMP_MARK)]
    return pathlib.Path(*parts)


@contextlib.contextmanager
def atomic_output_dir(path: str | pathlib.Path, *, overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yield a temporary sibling directory that replaces ``path`` only if the block succeeds.

    Whatever the block records about paths inside the temporary directory (a clone trained
    there, a demonstrations path in a clone's metadata) must name their final location
    (:func:`final_path`); a text file (:data:`TEXT_SUFFIXES`) that names the temporary
    directory is a bug, refused before the rename. On any exception the temporary directory
    is deleted and ``path`` is left as it was.
    """
    out = check_output_dir(path, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}{_TMP_MARK}", dir=out.parent))
    try:
        yield tmp
        _check_no_temporary_paths(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        trash = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(trash / out.name)
        tmp.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(out)


def _check_no_temporary_paths(tmp: pathlib.Path) -> None:
    """Fail if a text file under ``tmp`` names ``tmp`` (it would point nowhere after the rename)."""
    for file in tmp.rglob("*"):
        if file.suffix in TEXT_SUFFIXES and file.is_file() and tmp.name in file.read_text(errors="surrogateescape"):
            raise RuntimeError(f"{file} records the temporary path {tmp.name}; record final_path(...) instead")


def write_json(path: str | pathlib.Path, data: Any) -> None:
    """Write ``data`` as indented JSON (keys in insertion order)."""
    pathlib.Path(path).write_text(json.dumps(data, indent=2) + "\n")


def read_json(path: str | pathlib.Path, *, what: str) -> Any:
    """Read JSON, turning a missing or corrupt file into a :class:`TestbedError`."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise TestbedError(f"{what} not found: {p}")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TestbedError(f"{what} is corrupt ({p}): {e}") from None


def read_args(path: str | pathlib.Path, cls: type, *, what: str = "experiment config") -> Any:
    """Rebuild a script's arguments dataclass from the ``args`` a run recorded in ``path``
    (a ``config.json``); JSON lists become the tuples the dataclasses declare.

    Raises:
        TestbedError: missing or corrupt file, or arguments the dataclass does not take.
    """
    saved = read_json(path, what=what).get("args", {})
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    except TypeError as e:
        raise TestbedError(f"{path}: recorded arguments do not fit {cls.__name__}: {e}") from None
