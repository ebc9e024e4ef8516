"""Hostile *structure* in data files (issue 25): JSON nested a hundred thousand deep, zip
bombs in SB3 model zips, binary infos in Minari datasets, clone weights of another shape.

Each case asserts what ``test_bad_input`` asserts (exit code 2, exactly one
``testbed: error:`` line, the last on stderr, no traceback, nothing left behind); the zip
bombs also assert that refusing them takes little memory. Every case here ended otherwise
before the limits of :mod:`testbed.safe_json` and :mod:`testbed.safe_zip`, the weight check
of :func:`testbed.clone_io.check_weights` and the Minari import's dtype and shape checks: in
a ``RecursionError``, ``UnicodeDecodeError`` or ``ValueError`` traceback, hundreds of
megabytes inflated before the refusal, or a clone that ran with weights its record
misdescribes.
"""

from __future__ import annotations

import pathlib
import shutil
import struct
import tempfile
import tracemalloc
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
import test_bad_input
from test_bad_input import World, _evaluate, _tree, _with_file, _zip_entries, assert_refused

from testbed.cli import main

DEEP = "[" * 100_000 + "]" * 100_000
"""JSON nested 100000 deep: ``json.loads`` raises ``RecursionError`` on it."""
BOMB_MB = 200
"""Megabytes of zeros in a zip bomb: about 200 KB compressed."""
MEMORY_LIMIT = 64 * 1024 * 1024
"""Most Python memory refusing a zip bomb may take (inflating it takes BOMB_MB)."""

sb3_zip = test_bad_input.sb3_zip  # fixtures shared with test_bad_input
world = test_bad_input.world


def _deep_sb3_data(entries: dict[str, bytes]) -> dict[str, bytes]:
    return {**entries, "data": DEEP.encode()}


def _policy_bytes(net_arch: list[int], obs_shape: tuple[int, ...] = (5, 5)) -> bytes:
    """A clone policy file (``save_policy``'s format) for highway-fast's actions, with another
    network or observation size than the session clone's."""
    import gymnasium as gym
    import numpy as np

    from testbed.clone_io import make_policy, save_policy

    observation_space = gym.spaces.Box(-np.inf, np.inf, obs_shape, np.float32)
    policy = make_policy(observation_space, gym.spaces.Discrete(5), net_arch)
    with tempfile.TemporaryDirectory() as tmp:
        save_policy(policy, pathlib.Path(tmp) / "policy.pt")
        return (pathlib.Path(tmp) / "policy.pt").read_bytes()


# id -> (args given the world, a fragment of the error line)
CASES: dict[str, tuple[Callable[[World], list[str]], str]] = {
    "deep JSON in demonstration metadata": (
        lambda w: ["train", "--demos", _with_file(w.demos(), "metadata.json", DEEP), "--out", w.out],
        "nested 100000 levels deep",
    ),
    "deep JSON in demonstration metadata, verify-demos": (
        lambda w: ["verify-demos", _with_file(w.demos(), "metadata.json", DEEP)],
        "nested 100000 levels deep",
    ),
    "deep JSON in clone metadata": (
        lambda w: _evaluate(w, f"clone:{_with_file(w.clone(), 'metadata.json', DEEP)}"),
        "clone metadata",
    ),
    "deep JSON in clone metadata, export-policy": (
        lambda w: ["export-policy", _with_file(w.clone(), "metadata.json", DEEP), "--out", str(w.root / "p.zip")],
        "nested 100000 levels deep",
    ),
    "deep JSON in an SB3 zip's data": (
        lambda w: _evaluate(w, f"expert:sb3:{w.sb3(lambda p: _zip_entries(p, _deep_sb3_data))}"),
        "'data' entry is corrupt: JSON nested 100000 levels deep",
    ),
    "clone weights of a 64,64 network under a 256,256 record": (
        lambda w: _evaluate(w, f"clone:{w.clone(policy=_policy_bytes([64, 64]))}"),
        "tensor 'mlp_extractor.policy_net.0.weight' has shape [64, 25]",
    ),
    "clone weights for another observation size": (
        lambda w: _evaluate(w, f"clone:{w.clone(policy=_policy_bytes([256, 256], (7, 5)))}"),
        "tensor 'features_extractor.mean' has shape [35]",
    ),
    "export-policy of clone weights of a 64,64 network": (
        lambda w: ["export-policy", w.clone(policy=_policy_bytes([64, 64])), "--out", str(w.root / "p.zip")],
        "has shape [64, 25]",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_structure_is_one_line_and_leaves_nothing(case: str, world: World, capsys) -> None:
    make_args, fragment = CASES[case]
    assert_refused(capsys, make_args(world), fragment, world.root)


def test_deep_json_beside_an_sb3_model_is_ignored_like_any_corrupt_metadata(world: World, capsys) -> None:
    """A ``metadata.json`` beside a model zip is read only to compare a ``train-expert``
    model's observation config; unreadable, it is ignored (as before), never a traceback."""
    model = world.sb3(lambda p: None)
    (pathlib.Path(model).parent / "metadata.json").write_text(DEEP)
    code = main(_evaluate(world, f"expert:sb3:{model}"))
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err


# --- zip bombs ------------------------------------------------------------------------------


def _bomb(path: pathlib.Path, member: str, *, declare: int | None = None) -> None:
    """Replace ``member`` of the zip at ``path`` by BOMB_MB of deflated zeros, streamed (the
    test never holds them in memory); with ``declare``, its headers then claim that size."""
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist() if n != member}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        info = zipfile.ZipInfo(member)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as out:
            zeros = bytes(1024 * 1024)
            for _ in range(BOMB_MB):
                out.write(zeros)
    if declare is not None:
        _declare_size(path, member, declare)


def _declare_size(path: pathlib.Path, member: str, size: int) -> None:
    """Make the local and central headers of ``member`` claim ``size`` uncompressed bytes."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    for signature, name_len_at, name_at, size_at in ((b"PK\x03\x04", 26, 30, 22), (b"PK\x01\x02", 28, 46, 24)):
        start = 0
        while (i := raw.find(signature, start)) >= 0:
            (length,) = struct.unpack_from("<H", raw, i + name_len_at)
            if raw[i + name_at : i + name_at + length] == name:
                struct.pack_into("<I", raw, i + size_at, size)
            start = i + 4
    path.write_bytes(bytes(raw))


BOMBS: dict[str, tuple[Callable[[pathlib.Path], None], str]] = {
    "data, declared honestly": (lambda p: _bomb(p, "data"), "member 'data' is compressed"),
    "policy.pth, declared honestly": (lambda p: _bomb(p, "policy.pth"), "member 'policy.pth' is compressed"),
    "data, declaring 1000 bytes": (lambda p: _bomb(p, "data", declare=1000), "SB3 model zip"),
    "policy.pth, declaring 1000 bytes": (lambda p: _bomb(p, "policy.pth", declare=1000), "SB3 model zip"),
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_a_zip_bomb_is_refused_without_inflating_it(case: str, world: World, capsys) -> None:
    spoil, fragment = BOMBS[case]
    model = world.sb3(spoil)
    assert pathlib.Path(model).stat().st_size < 2 * 1024 * 1024  # small on disk
    args = _evaluate(world, f"expert:sb3:{model}")
    before = _tree(world.root)
    tracemalloc.start()
    try:
        code = main(args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    errors = [line for line in err if "testbed: error:" in line]
    assert len(errors) == 1 and err[-1] == errors[0] and fragment in err[-1], err
    assert not any("Traceback" in line for line in err), err
    assert peak < MEMORY_LIMIT, f"refusing the bomb took {peak / 1e6:.0f} MB"
    assert _tree(world.root) == before


# --- Minari datasets with binary infos --------------------------------------------------------

MINARI_ID = "highway-fast/hostile-v0"


@pytest.fixture(scope="module")
def minari_export(tmp_path_factory: pytest.TempPathFactory, demos_dir: pathlib.Path) -> pathlib.Path:
    """The session demonstrations exported with ``testbed export-minari``."""
    pytest.importorskip("minari", reason='minari is not installed (pip install -e ".[minari]")')
    root = tmp_path_factory.mktemp("minari")
    assert main(["export-minari", str(demos_dir), "--dataset-id", MINARI_ID, "--out", str(root)]) == 0
    return root / MINARI_ID


def _patched_minari(w: World, source: pathlib.Path, change: Callable[[Any], None]) -> str:
    """A copy of the exported dataset with its HDF5 file changed by ``change(h5py.File)``."""
    import h5py

    path = w.root / "dataset"
    shutil.copytree(source, path)
    with h5py.File(path / "data" / "main_data.hdf5", "a") as file:
        change(file)
    return str(path)


def _replace_info(episode: int, key: str, values: Any, *, vlen_bytes: bool = False) -> Callable[[Any], None]:
    """Replace one info column of an episode by ``values(n_steps)`` (stored as HDF5's
    variable-length byte strings with ``vlen_bytes``)."""

    def change(file: Any) -> None:
        import h5py

        infos = file[f"episode_{episode}/infos"]
        n = infos[key].shape[0]
        del infos[key]
        infos.create_dataset(key, data=values(n), dtype=h5py.vlen_dtype(bytes) if vlen_bytes else None)

    return change


def _bytes(n: int) -> Any:
    import numpy as np

    return np.array([b"\xff\xfe\x00"] * n, dtype="S3")


def _vlen_bytes(n: int) -> Any:
    import numpy as np

    return np.array([b"\x80abc"] * n, dtype=object)


def _opaque(n: int) -> Any:
    import numpy as np

    return np.array([np.void(b"\xde\xad\xbe\xef")] * n)


MINARI: dict[str, tuple[Callable[[], Callable[[Any], None]], str]] = {
    "fixed-length bytes that are not UTF-8": (
        lambda: _replace_info(2, "lane", _bytes),
        "episode 2, step 0, info 'lane'",
    ),
    "variable-length bytes that are not UTF-8": (
        lambda: _replace_info(0, "speed", _vlen_bytes, vlen_bytes=True),
        "not UTF-8",
    ),
    "opaque binary info": (lambda: _replace_info(1, "crashed", _opaque), "info 'crashed' holds |V4 values"),
}


@pytest.mark.parametrize("case", list(MINARI))
def test_binary_minari_infos_are_one_line(case: str, world: World, minari_export: pathlib.Path, capsys) -> None:
    make_change, fragment = MINARI[case]
    dataset = _patched_minari(world, minari_export, make_change())
    assert_refused(capsys, ["import-minari", dataset, "--out", world.out], fragment, world.root)
