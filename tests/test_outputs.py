"""Atomic output directories."""

from __future__ import annotations

import json
import pathlib

import pytest

from testbed.errors import TestbedError
from testbed.outputs import atomic_output_dir


def test_paths_recorded_inside_the_temporary_directory_follow_it(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "results" / "study"
    with atomic_output_dir(out) as tmp:
        assert tmp.parent == out.parent and tmp != out
        (tmp / "runs").mkdir()
        (tmp / "episodes.csv").write_text(f"policy\nclone:{tmp}/runs/a\nclone:results/{tmp.name}/runs/b\n")
        (tmp / "runs" / "metadata.json").write_text(json.dumps({"demos_path": str(tmp / "demos")}))
        (tmp / "weights.pt").write_bytes(tmp.name.encode())  # not a text file: left as written
        name = tmp.name
    assert (out / "episodes.csv").read_text() == f"policy\nclone:{out}/runs/a\nclone:results/study/runs/b\n"
    assert json.loads((out / "runs" / "metadata.json").read_text()) == {"demos_path": str(out / "demos")}
    assert (out / "weights.pt").read_bytes() == name.encode()
    assert sorted(p.name for p in out.parent.iterdir()) == ["study"]


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
