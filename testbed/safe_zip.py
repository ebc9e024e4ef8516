"""Zip archives from files the user gives (SB3 model zips, torch weight files), read without
letting them inflate past fixed limits.

A zip member's header declares its uncompressed size, and zipfile trusts it: ``read()``
decompresses a member's whole compressed stream at once, so a member that declares a few
bytes but inflates to gigabytes (a zip bomb) exhausts memory before the size is compared.
:func:`check_members` refuses, from the headers alone and before anything is decompressed,

- a member declaring more than :data:`MAX_MEMBER_BYTES`,
- members declaring more than :data:`MAX_ARCHIVE_BYTES` together, and
- a member larger than :data:`RATIO_FLOOR_BYTES` compressed more than :data:`MAX_RATIO`
  times (deflate reaches about 1000:1 only on degenerate data, such as zeros),

and :func:`read_member` decompresses a bounded chunk at a time, stopping as soon as a member
yields more than it declared.
"""

from __future__ import annotations

import io
import pathlib
import zipfile

from testbed.errors import TestbedError

MAX_MEMBER_BYTES = 512 * 1024 * 1024
"""Largest uncompressed member read (512 MiB). SB3's ``policy.pth`` of a NatureCNN Atari
model is about 7 MB; the testbed's own clones and experts hold under 2 MB of weights."""
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024
"""Largest total of all members' declared sizes (1 GiB): an SB3 zip also holds the
optimiser's state, about twice the policy's size."""
MAX_RATIO = 200
"""Largest compression ratio (uncompressed / compressed size) of a member above
:data:`RATIO_FLOOR_BYTES`. SB3 stores its members uncompressed (ratio 1); deflated weights
or JSON reach a few times, not hundreds."""
RATIO_FLOOR_BYTES = 1024 * 1024
"""Members declaring at most this many bytes are not ratio-checked: inflating them costs
nothing however well they compress (and :func:`read_member` stops at the declared size)."""
_CHUNK = 1024 * 1024


def check_members(archive: zipfile.ZipFile, *, where: str) -> None:
    """Refuse an archive whose headers declare too much data or a zip bomb's compression ratio.

    Args:
        archive: an open archive (only its central directory is looked at).
        where: the archive's name for error messages.

    Raises:
        TestbedError: one line naming the first offending member.
    """
    total = 0
    for info in archive.infolist():
        if info.file_size > MAX_MEMBER_BYTES:
            raise TestbedError(
                f"{where}: member {info.filename!r} declares {info.file_size} bytes "
                f"(at most {MAX_MEMBER_BYTES} are read)"
            )
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_RATIO * info.compress_size:
            ratio = info.file_size / max(info.compress_size, 1)
            raise TestbedError(
                f"{where}: member {info.filename!r} is compressed {ratio:.0f}:1 (a zip bomb? at most {MAX_RATIO}:1 "
                "is read)"
            )
        total += info.file_size
        if total > MAX_ARCHIVE_BYTES:
            raise TestbedError(
                f"{where}: its members declare more than {MAX_ARCHIVE_BYTES} bytes together (a zip bomb?)"
            )


def read_member(archive: zipfile.ZipFile, name: str, *, where: str) -> bytes:
    """A member's bytes, decompressed a chunk at a time and never more than it declares.

    Call :func:`check_members` first: it bounds what members may declare.

    Args:
        archive: an open archive.
        name: the member.
        where: the archive's name for error messages.

    Raises:
        TestbedError: the member inflates past its declared size.
        zipfile.BadZipFile: and zipfile's other errors on corrupt members, as ``archive.read``.
    """
    info = archive.getinfo(name)
    limit = min(info.file_size, MAX_MEMBER_BYTES)
    chunks: list[bytes] = []
    size = 0
    with archive.open(info) as member:
        while chunk := member.read(min(_CHUNK, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise TestbedError(f"{where}: member {name!r} inflates past its declared {info.file_size} bytes")
    return b"".join(chunks)


def check_archive(source: bytes | str | pathlib.Path, *, where: str) -> None:
    """If ``source`` (bytes or a file) is a zip archive, as torch's weight files are, refuse
    it as :func:`check_members` does; anything else passes (its own reader judges it).

    Raises:
        TestbedError: one line naming the offending member.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        return  # not a readable zip: the caller's own reader reports what it is
    with archive:
        check_members(archive, where=where)


__all__ = ["MAX_ARCHIVE_BYTES", "MAX_MEMBER_BYTES", "MAX_RATIO", "check_archive", "check_members", "read_member"]
