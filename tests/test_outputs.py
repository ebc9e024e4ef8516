"""Atomic output directories and JSON records."""

from __future__ import annotations

import errno
import json
import pathlib

import pytest

from testbed.errors import TestbedError
from testbed.outputs import atomic_output_dir, final_path, is_temporary, write_json_atomic


def test_paths_recorded_inside_the_temporary_directory_name_the_final_one(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "results" / "study"
    with atomic_output_dir(out) as tmp:
        assert tmp.parent == out.parent and tmp != out
        assert final_path(tmp / "runs" / "a") == out / "runs" / "a"
        assert final_path(pathlib.Path("results") / tmp.name / "runs") == pathlib.Path("results/study/runs")
        (tmp / "runs").mkdir()
        (tmp / "episodes.csv").write_text(f"policy\nclone:{final_path(tmp / 'runs' / 'a')}\n")
        (tmp / "runs" / "metadata.json").write_text(json.dumps({"demos_path": str(final_path(tmp / "demos"))}))
        (tmp / "weights.pt").write_bytes(tmp.name.encode())  # not a text file: not checked
        name = tmp.name
    assert (out / "episodes.csv").read_text() == f"policy\nclone:{out}/runs/a\n"
    assert json.loads((out / "runs" / "metadata.json").read_text()) == {"demos_path": str(out / "demos")}
    assert (out / "weights.pt").read_bytes() == name.encode()
    assert sorted(p.name for p in out.parent.iterdir()) == ["study"]
    assert final_path(out / "runs") == out / "runs"


def test_a_recorded_temporary_path_is_refused_before_the_rename(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "study"
    with pytest.raises(RuntimeError, match="records the temporary path"):
        with atomic_output_dir(out) as tmp:
            (tmp / "episodes.csv").write_text(f"policy\nclone:{tmp}/runs/a\n")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_block_leaves_the_old_output(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / "summary.csv").write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out, overwrite=True) as tmp:
            (tmp / "summary.csv").write_text("half\n")
            raise RuntimeError("interrupted")
    assert (out / "summary.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study"]
    with pytest.raises(TestbedError, match="exists"):
        with atomic_output_dir(out):
            pass


def test_a_json_record_is_whole_or_old(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "done" / "a.json"
    write_json_atomic(record, {"key": "a", "n": 1})  # creates the folder
    assert json.loads(record.read_text()) == {"key": "a", "n": 1}
    written: list[pathlib.Path] = []

    def half_then_full_disk(self: pathlib.Path, text: str) -> None:
        written.append(self)
        with open(self, "w") as f:
            f.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        write_json_atomic(record, {"key": "a", "n": 2})
    monkeypatch.undo()
    assert written and is_temporary(written[0]) and written[0].parent == record.parent  # it wrote a sibling
    assert json.loads(record.read_text()) == {"key": "a", "n": 1}  # the old record, whole
    assert [p.name for p in record.parent.iterdir()] == ["a.json"]  # and no half-written file
