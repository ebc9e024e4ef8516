"""Output directories that appear whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from testbed import safe_json
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
    _check_lengths(out)  # first: a name too long makes every later check raise ENAMETOOLONG
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
        raise TestbedError(f"output path {out}: cannot write in {parent} ({_why_not_writable(parent)})")
    return out


NAME_ROOM = 32
"""Bytes an output's own name must leave below the filesystem's limit on a name: the
temporary names written beside it add to it (``.NAME.tmp-XXXXXXXX``, ``.NAME.old-XXXXXXXX``,
``.NAME.tmp-XXXXXXXX.gif``)."""
_DEFAULT_NAME_MAX, _DEFAULT_PATH_MAX = 255, 4096
"""Linux's limits, for a filesystem that does not say (``pathconf`` fails)."""


def _limit(directory: pathlib.Path, name: str, default: int) -> int:
    try:
        return os.pathconf(directory, name)
    except (OSError, ValueError):
        return default


def _check_lengths(out: pathlib.Path) -> None:
    """Refuse an output path with a name longer than its filesystem allows, before anything
    is written: otherwise the run would fail at its end, on the temporary directory's name.

    Raises:
        TestbedError: a component over the limit (``NAME_MAX``, usually 255 bytes; the output's
            own name must leave :data:`NAME_ROOM` of it), or a path over ``PATH_MAX``.
    """
    absolute = out.absolute()
    directory = pathlib.Path(absolute.anchor)
    name_max = _limit(directory, "PC_NAME_MAX", _DEFAULT_NAME_MAX)
    parts = absolute.parts[1:]
    for i, part in enumerate(parts):
        size = len(os.fsencode(part))
        allowed = name_max - (NAME_ROOM if i == len(parts) - 1 else 0)
        if size > allowed:
            shown = part if len(part) <= 40 else f"{part[:40]}..."
            room = f" ({name_max} less {NAME_ROOM} for the temporary name beside it)" if i == len(parts) - 1 else ""
            raise TestbedError(
                f"output path component {shown!r} is {size} bytes, longer than the {allowed} allowed here{room}: "
                f"file name too long (errno {errno.ENAMETOOLONG})"
            )
        directory = directory / part
        if directory.is_dir():  # limits are per filesystem: read them where the name is created
            name_max = _limit(directory, "PC_NAME_MAX", name_max)
    path_max = _limit(pathlib.Path(absolute.anchor), "PC_PATH_MAX", _DEFAULT_PATH_MAX)
    if len(os.fsencode(str(absolute))) + NAME_ROOM > path_max:
        raise TestbedError(
            f"output path {str(absolute)[:60]}... is {len(os.fsencode(str(absolute)))} bytes long, too long for "
            f"this system's {path_max}-byte limit on a path (less {NAME_ROOM} for temporary names): file name "
            f"too long (errno {errno.ENAMETOOLONG})"
        )


def _why_not_writable(directory: pathlib.Path) -> str:
    """Why ``os.access`` says ``directory`` is not writable: a read-only mount or permissions."""
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"read-only file system, errno {errno.EROFS}"
    return "permission denied"


TEXT_SUFFIXES = (".csv", ".json", ".md", ".txt")
"""Files :func:`atomic_output_dir` checks for recorded temporary paths."""
_TMP_MARK = ".tmp-"
_OLD_MARK = ".old-"
"""In the name of the folder an existing output is moved into while :func:`atomic_output_dir` replaces it."""


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
    is deleted and ``path`` is left as it was, as are the parent directories this call
    created (a full disk or a read-only mount may fail any step, the final rename included).
    """
    out = check_output_dir(path, overwrite=overwrite)
    created = make_parents(out)
    tmp: pathlib.Path | None = None
    try:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}{_TMP_MARK}", dir=out.parent))
        yield tmp
        _check_no_temporary_paths(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        remove_created(created)
        raise


def _replace_dir(tmp: pathlib.Path, out: pathlib.Path) -> None:
    """Rename ``tmp`` to ``out``, replacing an existing ``out`` (kept if the rename fails)."""
    if not out.exists():
        tmp.rename(out)
        return
    trash = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}{_OLD_MARK}", dir=out.parent))
    try:
        out.rename(trash / out.name)
        try:
            tmp.rename(out)
        except BaseException:
            (trash / out.name).rename(out)
            raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_file(path: str | pathlib.Path, *, suffix: str = "") -> Iterator[pathlib.Path]:
    """Yield a temporary sibling file name that replaces the file ``path`` only if the block
    succeeds (the caller checks ``path`` first: whether it may be overwritten, its suffix).

    Args:
        path: the output file.
        suffix: the temporary file's suffix, for writers that choose a format by it.

    On any exception the temporary file is deleted, ``path`` is left as it was, and so are
    the parent directories this call created.
    """
    out = pathlib.Path(path)
    created = make_parents(out)
    tmp: pathlib.Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}{_TMP_MARK}", suffix=suffix, dir=out.parent)
        os.close(fd)
        tmp = pathlib.Path(name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the output is an ordinary file
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        remove_created(created)
        raise


def make_parents(out: pathlib.Path) -> list[pathlib.Path]:
    """Create the missing parent directories of ``out``; return them, deepest first."""
    missing = []
    parent = out.absolute().parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    try:
        out.absolute().parent.mkdir(parents=True, exist_ok=True)
    except BaseException:
        remove_created(missing)
        raise
    return missing


def remove_created(created: list[pathlib.Path]) -> None:
    """Remove the directories :func:`make_parents` created, deepest first, while empty."""
    for directory in created:
        try:
            directory.rmdir()
        except OSError:
            break


def _check_no_temporary_paths(tmp: pathlib.Path) -> None:
    """Fail if a text file under ``tmp`` names ``tmp`` (it would point nowhere after the rename)."""
    for file in tmp.rglob("*"):
        if file.suffix in TEXT_SUFFIXES and file.is_file() and tmp.name in file.read_text(errors="surrogateescape"):
            raise RuntimeError(f"{file} records the temporary path {tmp.name}; record final_path(...) instead")


def write_json(path: str | pathlib.Path, data: Any) -> None:
    """Write ``data`` as indented JSON (keys in insertion order)."""
    pathlib.Path(path).write_text(json.dumps(data, indent=2) + "\n")


def write_json_atomic(path: str | pathlib.Path, data: Any) -> None:
    """:func:`write_json` through :func:`atomic_output_file`: ``path`` holds either its old
    content or the whole new one, never part of it (a record that a resumed run reads back).
    A temporary file a killed writer left is named :func:`is_temporary`."""
    with atomic_output_file(path) as tmp:
        write_json(tmp, data)


def is_temporary(path: pathlib.Path) -> bool:
    """Whether ``path`` is a temporary sibling of an output: the new one being written
    (:func:`atomic_output_file`, :func:`atomic_output_dir`) or the old one set aside while
    :func:`atomic_output_dir` replaces it; e.g. one a killed writer left behind."""
    return path.name.startswith(".") and (_TMP_MARK in path.name or _OLD_MARK in path.name)


def read_json(path: str | pathlib.Path, *, what: str) -> Any:
    """Read JSON, turning a missing, corrupt, oversized or too deeply nested file into a
    :class:`TestbedError` (:func:`testbed.safe_json.read_file`)."""
    return safe_json.read_file(path, what=what)


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
