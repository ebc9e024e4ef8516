"""JSON from files the user gives: bounded in size and nesting depth before it is parsed.

Every JSON document the testbed reads from disk or from inside an archive goes through
:func:`loads` (text already in memory) or :func:`read_file` (a file). Both refuse, with one
line naming the source,

- a document longer than :data:`MAX_JSON_CHARS` (a 10 GB "metadata.json" would otherwise be
  read into memory whole), and
- nesting deeper than :data:`MAX_JSON_DEPTH` (``[[[[...]]]]`` a hundred thousand deep makes
  :func:`json.loads` raise ``RecursionError``, which may leave the interpreter short of stack
  for whatever runs next).

The depth is measured by a scan of the brackets outside string literals, *before*
:func:`json.loads` runs, so the parser never recurses deeply. What a valid document parses to
is exactly what :func:`json.loads` returns for it.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import numpy as np

from testbed.errors import TestbedError

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted. The testbed's own files nest at most 9
deep (a sweep's config); SB3's ``data`` entry 3; Python's parser recurses once per level, and
the interpreter's default limit is 1000."""
MAX_JSON_CHARS = 64 * 1024 * 1024
"""Longest JSON document accepted (64 Mi characters). The largest the testbed writes (an
evaluation config of camera clones) is about 1.5 MB; a clone's or dataset's metadata holds a
few tens of kB."""

# A string literal, unrolled so that matching is linear; the closing quote is optional so
# that an unterminated string ends the scan instead of making the regex retry at each quote.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_CHUNK = 1 << 20


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``text``, ignoring brackets inside string
    literals (an upper bound for malformed text, which :func:`json.loads` then refuses).

    Linear in ``len(text)``; memory for one chunk of brackets at a time.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii")
    depth, deepest = 0, 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = np.frombuffer(brackets, dtype=np.uint8, count=min(_CHUNK, len(brackets) - start), offset=start)
        steps = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1)
        running = depth + np.cumsum(steps)
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
    return deepest


def check(text: str, *, where: str) -> None:
    """Refuse JSON text longer than :data:`MAX_JSON_CHARS` or nested deeper than
    :data:`MAX_JSON_DEPTH`, before it is parsed (for callers that parse it themselves, e.g.
    with an ``object_pairs_hook``).

    Raises:
        TestbedError: one line naming ``where``.
    """
    if len(text) > MAX_JSON_CHARS:
        raise TestbedError(f"{where} is too large: more than {MAX_JSON_CHARS} characters of JSON")
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:  # too few brackets to nest too deeply
        return
    depth = nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise TestbedError(f"{where} is corrupt: JSON nested {depth} levels deep (at most {MAX_JSON_DEPTH} are read)")


def loads(text: str | bytes, *, where: str) -> Any:
    """Parse a JSON document after checking its size and nesting depth.

    Args:
        text: the document (bytes are decoded as UTF-8).
        where: the document's source for error messages, e.g. ``"clone metadata (run/metadata.json)"``.

    Returns:
        What :func:`json.loads` returns for ``text``.

    Raises:
        TestbedError: one line: too long, nested too deeply, not UTF-8, or not JSON.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_JSON_CHARS:
            raise TestbedError(f"{where} is too large: more than {MAX_JSON_CHARS} bytes of JSON")
        try:
            text = text.decode()
        except UnicodeDecodeError as e:
            raise TestbedError(f"{where} is corrupt: not UTF-8 text ({e.reason} at byte {e.start})") from None
    check(text, where=where)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TestbedError(f"{where} is corrupt: {e}") from None
    except RecursionError:  # pragma: no cover - the scan bounds the depth; a last guard
        raise TestbedError(f"{where} is corrupt: JSON nested too deeply") from None


def read_file(path: str | pathlib.Path, *, what: str) -> Any:
    """Read a JSON file with :func:`loads`'s limits, reading at most :data:`MAX_JSON_CHARS`
    characters however large the file is (the file is read as text in the locale's encoding,
    like :meth:`pathlib.Path.read_text`).

    Args:
        path: the file.
        what: what it is, for error messages (``"clone metadata"``).

    Raises:
        TestbedError: one line naming the file: missing, unreadable, too large, too deep,
            not text or not JSON.
    """
    p = pathlib.Path(path)
    if not p.is_file():
        raise TestbedError(f"{what} not found: {p}")
    where = f"{what} ({p})"
    try:
        with p.open() as f:
            text = f.read(MAX_JSON_CHARS + 1)
    except UnicodeDecodeError as e:
        raise TestbedError(f"{where} is corrupt: not text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise TestbedError(f"cannot read {where}: {e.strerror or e}") from None
    return loads(text, where=where)


__all__ = ["MAX_JSON_CHARS", "MAX_JSON_DEPTH", "check", "loads", "nesting_depth", "read_file"]
