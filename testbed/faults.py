"""Faults of the machine's filesystem as one-line errors.

A full disk (``ENOSPC``), an exhausted quota (``EDQUOT``), a read-only mount (``EROFS``), a
denied or too-long path: none of them is a bug of the testbed, so the command line reports
them like a user error (one ``testbed: error: ...`` line, exit code 2) instead of a
traceback. The outputs were already removed by then: every writer builds its output under a
temporary name (:func:`testbed.outputs.atomic_output_dir`,
:func:`testbed.outputs.atomic_output_file`) deleted on any exception.

The fault is not always a plain :class:`OSError`: the libraries underneath report it in
their own ways, so :func:`filesystem_fault` also reads

- the exception chain (``__cause__``, ``__context__``): a library error raised while
  handling the ``OSError``;
- the messages of errors that only carry the errno as text: pyarrow's
  ``[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device``,
  HDF5's ``file write failed: ..., filename = '...', errno = 28, error message = 'No space
  left on device'``;
- torch's ``inline_container.cc`` ``RuntimeError`` ("unexpected pos ..."), which carries no
  errno at all (the testbed's own clone writer avoids it: it serialises into memory and
  writes the bytes itself, see :func:`testbed.clone_io.save_policy`).
"""

from __future__ import annotations

import errno
import os
import re
import traceback
from collections.abc import Iterator

from testbed.errors import TestbedError

WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
"""Errnos that only a write raises: reported as ``cannot write PATH``."""
ACCESS_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.EIO})
"""Errnos a read or a write may raise: reported as ``cannot access PATH``."""
FAULT_ERRNOS = WRITE_ERRNOS | ACCESS_ERRNOS
"""The filesystem faults reported as one line. Any other ``OSError`` (a file vanished, a
directory where a file was expected, ...) still ends in a traceback: it is more likely a bug."""

_ERRNO_IN_TEXT = re.compile(r"\berrno\b\s*[=:]?\s*(\d+)", re.IGNORECASE)
"""``[Errno 28]`` (Python, pyarrow), ``errno = 28`` (HDF5), ``errno 28``."""
_PATH_IN_TEXT = (
    re.compile(r"filename = '([^']+)'"),  # HDF5
    re.compile(r"local file '([^']+)'"),  # pyarrow
    re.compile(r"\[Errno \d+\] [^:\n]*: '([^']+)'"),  # an OSError's str() inside another message
)
_TORCH_WRITE_FAILURE = re.compile(r"inline_container\.cc.*(unexpected pos|file write failed|write)", re.DOTALL)


def filesystem_fault(exc: BaseException, *, output: str | os.PathLike[str] | None = None) -> TestbedError | None:
    """The one-line error for a filesystem fault behind ``exc``, or None if there is none.

    Args:
        exc: the exception a command ended with.
        output: the command's output, named when the fault does not say which file it hit.

    Returns:
        A :class:`TestbedError` like ``cannot write /data/demos/trajectories/data.arrow: no
        space left on device (errno 28)`` (a path inside a temporary output directory is
        named by its final location), whose ``detail`` is the traceback (shown with
        ``--debug``); None when no exception in the chain is a filesystem fault.
    """
    from testbed.outputs import final_path

    for link in _chain(exc):
        found = _errno_and_path(link)
        if found is not None:
            number, path = found
            where = str(final_path(path)) if path else (os.fspath(output) if output is not None else "the output")
            verb = "write" if number in WRITE_ERRNOS else "access"
            return TestbedError(
                f"cannot {verb} {where}: {os.strerror(number).lower()} (errno {number})", detail=_trace(exc)
            )
    for link in _chain(exc):
        if isinstance(link, RuntimeError) and _TORCH_WRITE_FAILURE.search(str(link)):
            where = os.fspath(output) if output is not None else "the output"
            first = str(link).strip().splitlines()[0] if str(link).strip() else type(link).__name__
            # torch says neither the errno nor the file; the likely causes are these two.
            return TestbedError(
                f"cannot write {where}: torch could not finish writing a file ({first}); "
                "is the disk full or read-only?",
                detail=_trace(exc),
            )
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then the exceptions it was raised from or while handling, each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        link = todo.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        todo.extend(e for e in (link.__cause__, link.__context__) if e is not None)


def _errno_and_path(exc: BaseException) -> tuple[int, str | None] | None:
    """The fault's errno and the file it names, from the exception or its message."""
    if isinstance(exc, OSError) and exc.errno in FAULT_ERRNOS:
        name = exc.filename if exc.filename is not None else exc.filename2
        return exc.errno, None if name is None else os.fsdecode(name)
    text = str(exc)
    numbers = [int(n) for n in _ERRNO_IN_TEXT.findall(text)]
    # A message may carry only the strerror text ("Read-only file system").
    numbers += [n for n in sorted(FAULT_ERRNOS) if os.strerror(n) in text]
    number = next((n for n in numbers if n in FAULT_ERRNOS), None)
    if number is None:
        return None
    path = next((m.group(1) for pattern in _PATH_IN_TEXT if (m := pattern.search(text))), None)
    return number, path


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


__all__ = ["filesystem_fault", "FAULT_ERRNOS"]
