"""Output directories that appear whole or not at all."""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import tempfile
from typing import Any, Iterator

from testbed.errors import TestbedError


def check_output_dir(path: str | pathlib.Path, *, overwrite: bool) -> pathlib.Path:
    """Refuse an existing output directory unless ``overwrite``; fail before any work.

    Raises:
        TestbedError: the path exists and ``overwrite`` is false, or it is a file.
    """
    out = pathlib.Path(path)
    if out.exists() and not out.is_dir():
        raise TestbedError(f"output path exists and is not a directory: {out}")
    if out.exists() and not overwrite:
        raise TestbedError(f"output directory exists: {out} (pass --overwrite to replace it)")
    return out


TEXT_SUFFIXES = (".csv", ".json", ".md", ".txt")
"""Files whose recorded paths :func:`atomic_output_dir` moves with the directory."""


@contextlib.contextmanager
def atomic_output_dir(path: str | pathlib.Path, *, overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yield a temporary sibling directory that replaces ``path`` only if the block succeeds.

    Whatever the block recorded about paths inside the temporary directory (a clone trained
    there and evaluated as ``clone:<tmp>/run``, a demonstrations path in a clone's metadata) is
    rewritten to the final path in every text file (:data:`TEXT_SUFFIXES`) before the rename:
    the temporary name is unique, so the rewrite touches nothing else. On any exception the
    temporary directory is deleted and ``path`` is left as it was.
    """
    out = check_output_dir(path, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        _relocate_paths(tmp, out.name)
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


def _relocate_paths(tmp: pathlib.Path, final_name: str) -> None:
    """Replace the temporary directory's name by its final one in the text files under it
    (both are children of the same parent, so relative and absolute paths both follow)."""
    for file in tmp.rglob("*"):
        if file.suffix not in TEXT_SUFFIXES or not file.is_file():
            continue
        text = file.read_text(errors="surrogateescape")
        if tmp.name in text:
            file.write_text(text.replace(tmp.name, final_name), errors="surrogateescape")


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
