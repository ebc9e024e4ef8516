"""Faults of the machine's filesystem: a full disk, a read-only mount, a name too long.

Each command that writes must end such a fault the way it ends a user error (what the
README promises): exit code 2, exactly one ``testbed: error:`` line (the last on stderr)
naming the path and the cause, no traceback, and nothing left behind (no partial output, no
temporary directory: the output's parent is as it was). The disks are real: a small tmpfs
mounted for the test (full once the command starts writing), or one mounted read-only; the
tests skip when this process may not mount (not root, or no mount permission in a container).
"""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

import testbed
from testbed.cli import main

REPO = pathlib.Path(testbed.__file__).resolve().parent.parent
Mount = Callable[..., pathlib.Path]
"""``mount(size, read_only=False)``: a fresh tmpfs of ``size`` (e.g. ``"16k"``), unmounted after the test."""


@pytest.fixture
def mount(tmp_path: pathlib.Path) -> Iterator[Mount]:
    mounted: list[pathlib.Path] = []

    def make(size: str, *, read_only: bool = False) -> pathlib.Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        # A failed test's traceback may still hold a file open on the disk: detach it lazily then.
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def _tree(root: pathlib.Path) -> set[str]:
    """Every path under ``root`` (symlinks listed, not followed)."""
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


def _check_line(err: list[str], fragments: tuple[str, ...]) -> None:
    errors = [line for line in err if "testbed: error:" in line]
    assert len(errors) == 1 and err[-1] == errors[0] and err[-1].startswith("testbed: error: "), err
    for fragment in fragments:
        assert fragment in err[-1], err[-1]
    assert not any("Traceback" in line for line in err), err


def assert_fault(capsys: pytest.CaptureFixture[str], args: list[str], root: pathlib.Path, *fragments: str) -> None:
    """Exit code 2, one ``testbed: error:`` line (the last) containing every fragment, no
    traceback, and the tree under ``root`` unchanged."""
    before = _tree(root)
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    _check_line(err, fragments)
    assert _tree(root) == before, f"left behind: {_tree(root) ^ before}"


def assert_fault_in_subprocess(args: list[str], root: pathlib.Path, *fragments: str) -> None:
    """:func:`assert_fault` for a command that might crash the interpreter (HDF5 did, with a
    segmentation fault, on a full disk): ``python -m testbed`` in a child process."""
    before = _tree(root)
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "testbed", *args],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, err[-20:])
    _check_line(err, fragments)
    assert _tree(root) == before, f"left behind: {_tree(root) ^ before}"


FULL = ("no space left on device", f"errno {errno.ENOSPC}")
READ_ONLY = ("read-only file system", f"errno {errno.EROFS}")


# --- a full disk: each command starts writing, then the disk is full --------------------------


def test_collect_on_a_full_disk(capsys, mount: Mount) -> None:
    disk = mount("16k")  # 3 episodes are ~60 KB of arrow data
    out = disk / "demos"
    assert_fault(capsys, ["collect", "--episodes", "3", "--workers", "1", "--out", str(out)], disk, str(out), *FULL)


def test_train_bc_on_a_full_disk(capsys, mount: Mount, demos_dir: pathlib.Path) -> None:
    disk = mount("64k")  # policy.pt is ~600 KB: torch's save hits the full disk
    out = disk / "clone"
    args = ["train", "--demos", str(demos_dir), "--epochs", "1", "--out", str(out)]
    assert_fault(capsys, args, disk, str(out), *FULL)


def test_evaluate_on_a_full_disk(capsys, mount: Mount) -> None:
    disk = mount("16k")  # the CSVs and JSON fit; summary.png does not
    out = disk / "eval"
    args = ["evaluate", "--policy", "expert:scripted", "--episodes", "1", "--workers", "1", "--out", str(out)]
    assert_fault(capsys, args, disk, str(out), *FULL)


def test_export_policy_on_a_full_disk(capsys, mount: Mount, clone_dir: pathlib.Path) -> None:
    disk = mount("64k")
    out = disk / "sub" / "policy.zip"  # the parent it creates is removed again too
    assert_fault(capsys, ["export-policy", str(clone_dir), "--out", str(out)], disk, str(out), *FULL)


def test_render_on_a_full_disk(capsys, mount: Mount) -> None:
    disk = mount("16k")  # a whole episode's GIF is ~100 KB
    out = disk / "sub" / "run.gif"
    args = ["render", "--policy", "idle", "--out", str(out)]
    assert_fault(capsys, args, disk, str(out), *FULL)


def test_export_minari_on_a_full_disk(mount: Mount, demos_dir: pathlib.Path) -> None:
    pytest.importorskip("minari")
    disk = mount("256k")  # room for HDF5 to start writing 30 episodes (~1.5 MB), not to finish
    args = ["export-minari", str(demos_dir), "--dataset-id", "highway/scripted-v0", "--out", str(disk / "root")]
    assert_fault_in_subprocess(args, disk, str(disk / "root" / "highway" / "scripted-v0"), *FULL)


# --- a read-only mount ------------------------------------------------------------------------


def test_collect_on_a_read_only_disk(capsys, mount: Mount) -> None:
    disk = mount("64k", read_only=True)
    args = ["collect", "--episodes", "1", "--workers", "1", "--out", str(disk / "demos")]
    assert_fault(capsys, args, disk, str(disk / "demos"), *READ_ONLY)


def test_train_on_a_read_only_disk(capsys, mount: Mount, demos_dir: pathlib.Path) -> None:
    disk = mount("64k", read_only=True)
    args = ["train", "--demos", str(demos_dir), "--epochs", "1", "--out", str(disk / "clone")]
    assert_fault(capsys, args, disk, str(disk / "clone"), *READ_ONLY)


def test_export_policy_on_a_read_only_disk(capsys, mount: Mount, clone_dir: pathlib.Path) -> None:
    disk = mount("64k", read_only=True)
    out = disk / "policy.zip"
    assert_fault(capsys, ["export-policy", str(clone_dir), "--out", str(out)], disk, str(out), *READ_ONLY)


def test_export_minari_on_a_read_only_disk(capsys, mount: Mount, demos_dir: pathlib.Path) -> None:
    pytest.importorskip("minari")
    disk = mount("64k", read_only=True)
    args = ["export-minari", str(demos_dir), "--dataset-id", "highway/scripted-v0", "--out", str(disk / "root")]
    assert_fault(capsys, args, disk, str(disk), *READ_ONLY)


# --- a name longer than the filesystem allows ---------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a" * 300,  # longer than NAME_MAX itself
        "a" * 240,  # fits, but the temporary directory beside it (.NAME.tmp-XXXXXXXX) would not
        "a" * 300 + "/demos",  # a directory on the way
    ],
    ids=["over-name-max", "no-room-for-the-temporary-name", "long-parent"],
)
def test_a_name_too_long_is_refused_up_front(capsys, tmp_path: pathlib.Path, name: str) -> None:
    args = ["collect", "--episodes", "1", "--workers", "1", "--out", str(tmp_path / name)]
    assert_fault(capsys, args, tmp_path, "file name too long", f"errno {errno.ENAMETOOLONG}")


def test_export_policy_name_too_long(capsys, tmp_path: pathlib.Path, clone_dir: pathlib.Path) -> None:
    out = tmp_path / ("p" * 250 + ".zip")
    assert_fault(capsys, ["export-policy", str(clone_dir), "--out", str(out)], tmp_path, "file name too long")


# --- export-minari with a relative root -----------------------------------------------------


def test_export_minari_to_a_relative_root(
    capsys, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, demos_dir: pathlib.Path
) -> None:
    pytest.importorskip("minari")
    monkeypatch.chdir(tmp_path)
    assert main(["export-minari", str(demos_dir), "--dataset-id", "highway/rel-v0", "--out", "datasets"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "datasets" / "highway" / "rel-v0" / "data" / "main_data.hdf5").is_file()
    assert f"MINARI_DATASETS_PATH={tmp_path / 'datasets'} " in printed  # the root it prints works from anywhere
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["highway"]  # no temporary root left
    assert main(["import-minari", "highway/rel-v0", "--root", "datasets", "--out", "back"]) == 0
    assert (tmp_path / "back" / "metadata.json").is_file()


# --- how faults are recognised ----------------------------------------------------------------
# The libraries under the writers report a fault in their own ways; each must still end in one line.

LIBRARY_FAULTS = {
    "quota, inside a temporary output": (
        OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/data/.p.zip.tmp-abc123"),
        "cannot write /data/p.zip: disk quota exceeded (errno 122)",
    ),
    "raised while handling the OSError": (
        RuntimeError("while saving"),  # its __context__ is set below
        "cannot write OUT: no space left on device (errno 28)",
    ),
    "pyarrow": (
        OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"),
        "cannot write OUT: no space left on device (errno 28)",
    ),
    "HDF5": (
        RuntimeError(
            "Can't decrement id ref count (file write failed: time = Sun Dec  6 13:47:15 2026\n, filename = "
            "'/r/d-v0/data/main_data.hdf5', file descriptor = 3, errno = 30, error message = 'Read-only file system')"
        ),
        "cannot write /r/d-v0/data/main_data.hdf5: read-only file system (errno 30)",
    ),
    "torch": (
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5504 vs 5428"),
        "cannot write OUT: torch could not finish writing a file",
    ),
}


@pytest.mark.parametrize("case", list(LIBRARY_FAULTS))
def test_library_faults_are_one_line(
    case: str, capsys, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error, expected = LIBRARY_FAULTS[case]
    if case == "raised while handling the OSError":
        error.__context__ = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def export_policy(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("testbed.cli.export_policy", export_policy)
    out = str(tmp_path / "p.zip")
    assert_fault(capsys, ["export-policy", str(tmp_path), "--out", out], tmp_path, expected.replace("OUT", out))


def test_other_errors_keep_their_traceback(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing file or a plain bug is not a fault of the machine: it still raises."""
    for error in (FileNotFoundError(errno.ENOENT, "No such file or directory", "x"), ValueError("a bug")):

        def export_policy(*args: object, _error: Exception = error, **kwargs: object) -> None:
            raise _error

        monkeypatch.setattr("testbed.cli.export_policy", export_policy)
        with pytest.raises(type(error)):
            main(["export-policy", str(tmp_path), "--out", str(tmp_path / "p.zip")])
