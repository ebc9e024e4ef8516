"""Demonstrations as Minari datasets, and back (``testbed export-minari`` / ``import-minari``).

`Minari <https://minari.farama.org>`_ is Farama's dataset format for offline RL and imitation
learning. The files are written and read by the real ``minari`` package (the optional extra
``pip install -e ".[minari]"``, minari 0.5.4: the newest release, and one whose requirements,
``gymnasium>=0.28.1``, install beside this project's pinned gymnasium 0.29.1), in its HDF5
layout: ``ROOT/DATASET_ID/data/metadata.json`` and ``main_data.hdf5`` with one group per
episode (``observations`` T+1, ``actions``, ``rewards``, ``terminations``, ``truncations``
T each, and ``infos``) and the episode's ``seed`` as an attribute. A user loads it with::

    MINARI_DATASETS_PATH=ROOT python -c "import minari; print(minari.load_dataset('DATASET_ID'))"

What is kept, and how:

- the env spec: the scenario's gymnasium id with its full recorded config as ``kwargs`` and
  its ``max_episode_steps``, so ``dataset.recover_environment()`` builds the same highway-env
  environment (stock highway-env: the testbed's accelerated simulator is bit-identical; a
  lidar env returns float64 where the testbed casts to the recorded float32);
- ``requirements``: the highway-env version the config is for;
- under the metadata key ``testbed``: the demonstrations' own record
  (:class:`testbed.demos.DemoMetadata`, with the provenance of the data), the export's
  provenance, where the data came from, and the infos' key order;
- terminations and truncations: the episode's last step is terminated if the trajectory is
  terminal (a crash), else truncated (time limit, or an episode cut short);
- infos: the testbed's per-step info, one entry per *step* (the info returned by step k); no
  reset entry, which the testbed does not record (Minari's ``DataCollector`` would put one
  first). Values must be numbers, booleans, strings or equal-length lists, with the same keys
  at every step; a number key that mixes ints and floats comes back as floats.
- images (the camera sensor) are stored raw (``jpeg_encoding=False``): Minari's default JPEG
  encoding is lossy.

Reading back needs the ``testbed`` record: a Minari dataset from elsewhere carries no
scenario, so it cannot become a :class:`~testbed.demos.Demonstrations`. The recorded scenario
is re-validated like any demonstration record (it may name no code to import), and the data
are checked against the recorded spaces as :func:`testbed.demos.load_demos` checks them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import pathlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from testbed import safe_json
from testbed.cards import DATASET_CARD, dataset_card
from testbed.demos import DemoMetadata, Demonstrations, _as_recorded_dtype, _check_values
from testbed.errors import TestbedError
from testbed.outputs import check_output_path, make_parents, remove_created
from testbed.provenance import package_versions, provenance
from testbed.runtime import environment_variable
from testbed.spaces import MAX_SPACE_SIZE, space_from_dict

RECORD_KEY = "testbed"
"""The Minari metadata key under which the testbed's record is stored."""
RECORD_FORMAT = 1
"""Version of that record's layout."""
INSTALL_HINT = 'pip install -e ".[minari]"'


def _minari() -> Any:
    """The ``minari`` module, or a one-line error that says how to install it."""
    try:
        import h5py  # noqa: F401  # minari's HDF5 storage needs it; fail here, not mid-write
        import minari
    except ImportError as e:
        raise TestbedError(
            f"Minari export/import needs the minari package ({e.name} is missing): {INSTALL_HINT}"
        ) from None
    return minari


def default_root() -> pathlib.Path:
    """Minari's datasets root: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".minari" / "datasets"


def check_dataset_id(dataset_id: str) -> None:
    """Refuse an id Minari would not accept (``(namespace/)name-vN``).

    Raises:
        TestbedError: a malformed id.
    """
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise TestbedError(
            f"--dataset-id {dataset_id!r} is not a Minari id: use (namespace/)name-vN, e.g. highway-fast/scripted-v0"
        ) from None


@contextlib.contextmanager
def _datasets_root(root: pathlib.Path) -> Iterator[None]:
    """Point Minari's datasets root at ``root`` for the block (Minari reads it at every call)."""
    with environment_variable("MINARI_DATASETS_PATH", str(root)):
        yield


def _leaf_array(values: list[Any], *, where: str) -> np.ndarray:
    """One info key's values over an episode as an array HDF5 can store."""
    if all(isinstance(v, bool | np.bool_) for v in values):
        return np.asarray(values, dtype=bool)
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    if all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=object)
    try:
        array = np.asarray(values)
    except ValueError:
        array = np.asarray(values, dtype=object)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise TestbedError(f"{where}: values {values[:2]!r}... cannot be stored as an array in Minari's infos")
    return array


def _infos_to_arrays(infos: Sequence[Mapping[str, Any]], *, where: str) -> dict[str, Any]:
    """Per-step info dicts -> Minari's dict of arrays (nested dicts become nested groups)."""
    keys = list(infos[0])
    for k, info in enumerate(infos):
        if set(info) != set(keys):
            raise TestbedError(
                f"{where}, step {k}: info keys {sorted(info)} differ from step 0's {sorted(keys)}; Minari stores "
                "infos as one array per key"
            )
    out: dict[str, Any] = {}
    for key in keys:
        values = [info[key] for info in infos]
        if all(isinstance(v, Mapping) for v in values):
            out[key] = _infos_to_arrays(values, where=f"{where}, info {key!r}")
        else:
            out[key] = _leaf_array(values, where=f"{where}, info {key!r}")
    return out


def _arrays_to_infos(arrays: Mapping[str, Any], n_steps: int, order: Mapping[str, Any], *, where: str) -> list[dict]:
    """Inverse of :func:`_infos_to_arrays`; ``order`` holds each level's key order."""
    keys = list(order.get("keys", [])) or sorted(arrays)
    if set(keys) != set(arrays):
        raise TestbedError(f"{where}: info keys {sorted(arrays)} differ from the recorded {sorted(keys)}")
    columns: dict[str, list[Any]] = {}
    for key in keys:
        value = arrays[key]
        if isinstance(value, Mapping):
            columns[key] = _arrays_to_infos(value, n_steps, order.get("children", {}).get(key, {}), where=where)
        else:
            array = np.asarray(value)
            problem = _info_leaf_problem(array.shape, array.dtype, n_steps)
            if problem is not None:
                raise TestbedError(f"{where}: info {key!r} {problem}")
            columns[key] = [
                _info_value(v, where=f"{where}, step {k}, info {key!r}") for k, v in enumerate(array.tolist())
            ]
    return [{key: columns[key][k] for key in keys} for k in range(n_steps)]


def _info_value(value: Any, *, where: str) -> Any:
    """One step's value of an info column as the testbed's infos hold it: numbers, booleans
    and strings (HDF5 gives strings back as UTF-8 bytes), or lists of them.

    Raises:
        TestbedError: bytes that are not UTF-8, or any other type of value.
    """
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError as e:
            raise TestbedError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if isinstance(value, list):
        return [_info_value(v, where=where) for v in value]
    if value is None or not isinstance(value, bool | int | float | str):
        raise TestbedError(f"{where}: a {type(value).__name__} value (infos are numbers, booleans or strings)")
    return value


def _key_order(infos: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    first = infos[0]
    children = {k: _key_order([info[k] for info in infos]) for k, v in first.items() if isinstance(v, Mapping)}
    return {"keys": list(first), **({"children": children} if children else {})}


def _env_spec(scenario: Mapping[str, Any]) -> Any:
    """The gymnasium ``EnvSpec`` of a recorded scenario: its id, full config, time limit."""
    import gymnasium as gym
    import highway_env  # noqa: F401  # registers the highway-env ids

    spec = gym.spec(str(scenario["env_id"]))
    return dataclasses.replace(
        spec, kwargs={"config": dict(scenario["config"])}, max_episode_steps=int(scenario["max_episode_steps"])
    )


HDF5_OBJECT_BYTES = 4096
"""Bytes of HDF5 bookkeeping allowed per group or dataset in :func:`_estimated_size`: object
header, link and creation-order indexes (Minari's episodes measure about 2.5 KiB each)."""
HDF5_FILE_BYTES = 1 << 20
"""Bytes allowed for what does not grow with the data: superblock, metadata.json, markers."""


def _estimated_size(buffers: Sequence[Any]) -> int:
    """An upper bound on the bytes Minari's HDF5 file takes for ``buffers`` (EpisodeBuffers)."""

    def size(value: Any) -> int:
        if value is None:
            return 0
        if isinstance(value, Mapping):
            return HDF5_OBJECT_BYTES + sum(size(v) for v in value.values())
        array = np.asarray(value)
        if array.dtype == object:  # variable-length strings: the bytes plus a heap entry each
            return HDF5_OBJECT_BYTES + sum(len(str(v).encode()) + 32 for v in array.ravel())
        return HDF5_OBJECT_BYTES + array.nbytes

    fields = ("observations", "actions", "rewards", "terminations", "truncations", "infos")
    return HDF5_FILE_BYTES + sum(HDF5_OBJECT_BYTES + sum(size(getattr(b, f)) for f in fields) for b in buffers)


def _reserve_space(directory: pathlib.Path, n_bytes: int, final: pathlib.Path) -> None:
    """Make sure ``n_bytes`` can be written in ``directory`` before HDF5 writes anything.

    HDF5 does not fail cleanly on a full disk or quota: its file-close errors come back in
    ``__dealloc__`` and the process ends in a segmentation fault, its temporary files left
    behind. So the space is claimed first (``posix_fallocate``, which a quota counts too)
    and released just before Minari writes.

    Raises:
        TestbedError: the space is not there (ENOSPC, EDQUOT).
    """
    fd, name = tempfile.mkstemp(prefix=".reserve-", dir=directory)
    try:
        number = None
        try:
            os.posix_fallocate(fd, 0, n_bytes)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                number = e.errno
            elif e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            elif shutil.disk_usage(directory).free < n_bytes:  # no fallocate here: the free space must do
                number = errno.ENOSPC
        if number is not None:
            raise TestbedError(
                f"cannot write {final}: {os.strerror(number).lower()} (errno {number}); the dataset needs up to "
                f"{n_bytes / 1e6:.1f} MB, {shutil.disk_usage(directory).free / 1e6:.1f} MB are free"
            )
    finally:
        os.close(fd)
        os.unlink(name)


def export_minari(
    demos: Demonstrations,
    dataset_id: str,
    *,
    root: str | pathlib.Path | None = None,
    source: str = "",
    overwrite: bool = False,
) -> pathlib.Path:
    """Write ``demos`` as the Minari dataset ``dataset_id`` under ``root``.

    The dataset is built in a temporary root beside the final one and moved into place only
    when complete.

    Args:
        demos: the demonstrations.
        dataset_id: Minari id, ``(namespace/)name-vN``.
        root: Minari datasets root (default :func:`default_root`).
        source: where the demonstrations came from (recorded).
        overwrite: replace an existing dataset with this id.

    Returns:
        The dataset's directory, ``root/dataset_id``.

    Raises:
        TestbedError: minari missing, a malformed id, an existing dataset without
            ``overwrite``, or infos Minari cannot store.
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    check_dataset_id(dataset_id)
    # Absolute: Minari joins the dataset's relative data path onto itself when it sizes the
    # file (a relative root ended in FileNotFoundError on ROOT/.../ROOT/.../main_data.hdf5).
    base = (pathlib.Path(root) if root is not None else default_root()).absolute()
    final = base / dataset_id
    check_output_path(final)  # a read-only root, a name too long, a path under a file: refused now
    if base.exists() and not base.is_dir():
        raise TestbedError(f"Minari datasets root {base} is not a directory")
    if (final.exists() or final.is_symlink()) and not overwrite:
        raise TestbedError(f"Minari dataset exists: {final} (pass --overwrite to replace it)")
    meta = demos.metadata
    buffers, orders = [], []
    for i, (t, seed) in enumerate(zip(demos.trajectories, demos.seeds)):
        n = len(t.acts)
        terminal = bool(t.terminal)
        infos = list(t.infos) if t.infos is not None and len(t.infos) else None
        buffers.append(
            EpisodeBuffer(
                id=i,
                seed=int(seed),
                observations=np.asarray(t.obs),
                actions=np.asarray(t.acts),
                rewards=[float(r) for r in t.rews],
                terminations=[False] * (n - 1) + [terminal],
                truncations=[False] * (n - 1) + [not terminal],
                infos=None if infos is None else _infos_to_arrays(infos, where=f"episode {i}"),
            )
        )
        orders.append(None if infos is None else _key_order(infos))
    exported_by = provenance()
    record = {
        "format": RECORD_FORMAT,
        "demonstrations": meta.to_dict(),
        "source": source,
        "infos": "one entry per step: the info returned by step k (no reset entry)",
        "info_key_order": orders,
        "export_provenance": exported_by,
    }
    expert = meta.expert.get("name", "?")
    scenario = meta.scenario
    description = (
        f"{meta.n_episodes} episodes ({meta.n_transitions} transitions) of expert:{expert} on the testbed scenario "
        f"{scenario.get('name')!r} ({scenario['env_id']} with the recorded config, env_spec.kwargs['config']); "
        "written by highway-bc-testbed (testbed export-minari); its own record is under the metadata key 'testbed'."
    )
    created = make_parents(final)  # the root and namespace directories, removed again on failure
    tmp_root: pathlib.Path | None = None
    try:
        tmp_root = pathlib.Path(tempfile.mkdtemp(prefix=".minari-export-tmp-", dir=base))
        _reserve_space(tmp_root, _estimated_size(buffers), final)
        with _datasets_root(tmp_root), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Minari warns on every optional field left out
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=None,  # the spec is added below: with an env, Minari would build (and reset) it
                algorithm_name=f"expert:{expert}" + (" with DART noise" if meta.noise else ""),
                author="highway-bc-testbed",
                code_permalink=f"highway-bc-testbed@{provenance()['git_commit']}",
                observation_space=space_from_dict(meta.observation_space),
                action_space=space_from_dict(meta.action_space),
                description=description,
                data_format="hdf5",
                requirements=[f"highway-env=={package_versions()['highway-env']}"],
                jpeg_encoding=False,
            )
            dataset.storage.update_metadata({"env_spec": _env_spec(scenario).to_json(), RECORD_KEY: record})
        built = tmp_root / dataset_id
        (built / DATASET_CARD).write_text(
            dataset_card(meta.to_dict(), dataset_id, source=source, provenance=exported_by)
        )
        for parent in reversed(pathlib.Path(dataset_id).parents):  # namespaces: Minari's marker files
            marker = tmp_root / parent / "namespace_metadata.json"
            if str(parent) != "." and marker.is_file() and not (base / parent / marker.name).exists():
                shutil.copy(marker, base / parent / marker.name)
        if final.exists() or final.is_symlink():
            trash = pathlib.Path(tempfile.mkdtemp(prefix=".minari-export-old-", dir=base))
            try:
                final.rename(trash / "old")
                try:
                    built.rename(final)
                except BaseException:
                    (trash / "old").rename(final)  # keep the dataset that was there
                    raise
            finally:
                shutil.rmtree(trash, ignore_errors=True)
        else:
            built.rename(final)
    except BaseException:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)
        remove_created(created)
        raise
    shutil.rmtree(tmp_root, ignore_errors=True)
    return final


def dataset_dir(dataset: str, *, root: str | pathlib.Path | None = None) -> pathlib.Path:
    """The directory of a dataset given as a path (``.../DATASET_ID`` or its ``data/``) or as
    an id under ``root`` (default :func:`default_root`).

    Raises:
        TestbedError: no dataset there.
    """
    as_path = pathlib.Path(dataset)
    for candidate in (as_path, as_path.parent) if as_path.name == "data" else (as_path,):
        if (candidate / "data" / "metadata.json").is_file():
            return candidate
    under_root = (pathlib.Path(root) if root is not None else default_root()) / dataset
    if (under_root / "data" / "metadata.json").is_file():
        return under_root
    raise TestbedError(
        f"Minari dataset not found: {dataset} (neither a dataset directory nor an id under {under_root.parent})"
    )


MAX_DATASET_BYTES = 8 * 1024**3
"""Most bytes the arrays of a Minari dataset may declare, all episodes together (8 GiB). A
1000-episode camera dataset holds about 1 GB; an HDF5 header can declare any shape, and an
unwritten chunked dataset of 10**12 values takes no space on disk but all of memory to read."""
MAX_INFO_DEPTH = 16
"""Deepest nesting of info groups read (the testbed's infos are flat)."""
_NUMBER_KINDS = "biuf"
_KIND_NAMES = {"b": "booleans", "i": "integers", "u": "integers", "f": "floats"}


def _describe_kinds(kinds: str) -> str:
    return " or ".join(dict.fromkeys(_KIND_NAMES[k] for k in kinds))


def _expected_fields(meta: DemoMetadata, n: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each episode array's shape and dtype kinds for an episode of ``n`` steps, from the
    recorded spaces: what :func:`export_minari` writes."""
    import gymnasium as gym

    obs_space = space_from_dict(meta.observation_space)
    act_space = space_from_dict(meta.action_space)
    discrete = isinstance(act_space, gym.spaces.Discrete)
    act_shape = () if discrete else tuple(int(s) for s in act_space.shape or ())
    return {
        "observations": ((n + 1, *(int(s) for s in obs_space.shape or ())), _NUMBER_KINDS),
        "actions": ((n, *act_shape), "iu" if discrete else "iuf"),
        "rewards": ((n,), "iuf"),
        "terminations": ((n,), "b"),
        "truncations": ((n,), "b"),
    }


def _check_field(
    name: str, shape: tuple[int, ...], dtype: np.dtype, expected: tuple[tuple[int, ...], str], *, where: str
) -> None:
    """Refuse an episode array of another dtype kind or shape than :func:`_expected_fields`'s."""
    want_shape, kinds = expected
    if dtype.kind not in kinds:
        raise TestbedError(f"{where}: {name} are {dtype} values; the record's spaces need {_describe_kinds(kinds)}")
    if tuple(shape) != want_shape:
        raise TestbedError(f"{where}: {name} have shape {list(shape)}; the record's spaces need {list(want_shape)}")


def _info_leaf_problem(shape: tuple[int, ...], dtype: np.dtype, n_steps: int) -> str | None:
    """Why an info array (one entry per step) cannot be an info column, or None."""
    import h5py

    if dtype.kind not in _NUMBER_KINDS and h5py.check_string_dtype(dtype) is None and dtype.kind not in "OSU":
        return f"holds {dtype} values (infos are numbers, booleans or UTF-8 strings)"
    if not shape or shape[0] != n_steps:
        return f"has shape {list(shape)} for {n_steps} steps"
    if int(np.prod(shape[1:], dtype=np.float64)) > MAX_SPACE_SIZE:
        return f"has {list(shape[1:])} values per step (at most {MAX_SPACE_SIZE})"
    return None


def _check_hdf5(data_dir: pathlib.Path, meta: DemoMetadata, orders: Sequence[Any], *, where: str) -> None:
    """Check every episode's arrays in Minari's HDF5 file from their headers, before Minari
    reads any: dtype kinds and shapes against the record's spaces, infos with only the
    recorded keys and numeric, boolean or string columns of one entry per step, and at most
    :data:`MAX_DATASET_BYTES` declared in all.

    Raises:
        TestbedError: one line naming the episode and array.
    """
    import h5py

    declared = 0

    def member(group: Any, key: str, at: str) -> Any:
        """``group[key]`` (None if absent); a soft or external link, which could point into
        another file, is refused."""
        link = group.get(key, getlink=True)
        if link is not None and not isinstance(link, h5py.HardLink):
            raise TestbedError(f"{at}: {key!r} is a link ({type(link).__name__}), not data stored in the file")
        return None if link is None else group[key]

    def check_infos(group: Any, n: int, order: Any, at: str, depth: int = 1) -> int:
        if depth > MAX_INFO_DEPTH:
            raise TestbedError(f"{at}: infos nested more than {MAX_INFO_DEPTH} groups deep")
        size = 0
        keys = order.get("keys") if isinstance(order, dict) else None
        if isinstance(keys, list) and keys and set(group.keys()) != set(keys):
            raise TestbedError(f"{at}: info keys {sorted(group.keys())} differ from the recorded {sorted(keys)}")
        children = order.get("children", {}) if isinstance(order, dict) else {}
        for key in group.keys():
            value = member(group, key, at)
            if isinstance(value, h5py.Group):
                child = children.get(key, {}) if isinstance(children, dict) else {}
                size += check_infos(value, n, child, f"{at}, info {key!r}", depth + 1)
            elif isinstance(value, h5py.Dataset):
                problem = _info_leaf_problem(value.shape, value.dtype, n)
                if problem is not None:
                    raise TestbedError(f"{at}: info {key!r} {problem}")
                size += int(np.prod(value.shape, dtype=np.float64)) * value.dtype.itemsize
            else:
                raise TestbedError(f"{at}: info {key!r} is neither an array nor a group")
        return size

    with h5py.File(data_dir / "main_data.hdf5", "r") as file:
        for i in range(meta.n_episodes):
            at = f"{where}, episode {i}"
            episode = member(file, f"episode_{i}", where)
            if not isinstance(episode, h5py.Group):
                raise TestbedError(f"{at} is missing from main_data.hdf5")
            rewards = member(episode, "rewards", at)
            if not isinstance(rewards, h5py.Dataset) or len(rewards.shape) != 1:
                raise TestbedError(f"{at}: rewards are not a one-dimensional array")
            for name, expected in _expected_fields(meta, int(rewards.shape[0])).items():
                field = member(episode, name, at)
                if not isinstance(field, h5py.Dataset):
                    raise TestbedError(f"{at}: {name} are not an array")
                _check_field(name, field.shape, field.dtype, expected, where=at)
                declared += int(np.prod(field.shape, dtype=np.float64)) * field.dtype.itemsize
            infos = member(episode, "infos", at)
            if infos is not None:
                if not isinstance(infos, h5py.Group):
                    raise TestbedError(f"{at}: infos are not a group of arrays")
                order = orders[i] if i < len(orders) else None
                declared += check_infos(infos, int(rewards.shape[0]), order, at)
            if declared > MAX_DATASET_BYTES:
                raise TestbedError(f"{where} declares more than {MAX_DATASET_BYTES} bytes of arrays")


def _check_minari_metadata(data_dir: pathlib.Path, *, where: str) -> None:
    """Read Minari's ``metadata.json`` (and the JSON strings inside it Minari parses again)
    within :mod:`testbed.safe_json`'s limits, before Minari reads it without any.

    Raises:
        TestbedError: one line naming the file.
    """
    path = data_dir / "metadata.json"
    raw = safe_json.read_file(path, what=f"the metadata of the {where}")
    if not isinstance(raw, dict):
        raise TestbedError(f"{where}: {path} is not a JSON object")
    for key in ("observation_space", "action_space", "env_spec"):
        if isinstance(raw.get(key), str):
            safe_json.check(raw[key], where=f"{where}: {path}'s {key!r}")


def read_minari(dataset: str, *, root: str | pathlib.Path | None = None) -> Demonstrations:
    """Read a Minari dataset written by :func:`export_minari` back into demonstrations.

    Args:
        dataset: a dataset directory or a Minari id under ``root``.
        root: Minari datasets root for an id (default :func:`default_root`).

    Raises:
        TestbedError: minari missing, no dataset, a dataset without the testbed's record, a
            corrupt file, or data that disagree with the record (counts, seeds, spaces, values).
    """
    minari = _minari()
    from imitation.data.types import TrajectoryWithRew

    path = dataset_dir(dataset, root=root)
    where = f"Minari dataset at {path}"
    _check_minari_metadata(path / "data", where=where)
    try:
        data = minari.MinariDataset(path / "data")
        raw = data.storage.metadata
        record = raw.get(RECORD_KEY)
        if not isinstance(record, dict) or not isinstance(record.get("demonstrations"), dict):
            raise TestbedError(
                f"{where} has no '{RECORD_KEY}' record in its metadata: only datasets written by "
                "`testbed export-minari` carry the scenario that demonstrations need"
            )
        meta = DemoMetadata.from_dict(record["demonstrations"], where=f"{where}: the '{RECORD_KEY}' record")
        orders = record.get("info_key_order") or []
        if not isinstance(orders, list):
            raise TestbedError(f"{where}: the '{RECORD_KEY}' record's info_key_order is not a list")
        if raw.get("data_format") == "hdf5":  # headers first: shapes and dtypes before Minari reads
            _check_hdf5(path / "data", meta, orders, where=where)
        episodes = list(data.iterate_episodes())
        seeds = [m.get("seed") for m in data.storage.get_episode_metadata(range(len(episodes)))]
    except TestbedError:
        raise
    except Exception as e:  # h5py, json, minari and gymnasium raise many types on corrupt files
        raise TestbedError(f"cannot read {where}: {type(e).__name__}: {e}".splitlines()[0]) from None
    if len(episodes) != meta.n_episodes or len(meta.seeds) != len(episodes):
        raise TestbedError(f"{where} holds {len(episodes)} episodes; its record says {meta.n_episodes}")
    if [None if s is None else int(s) for s in seeds] != list(meta.seeds):
        raise TestbedError(f"{where}: the episodes' seeds differ from the record's")
    trajectories = []
    for i, ep in enumerate(episodes):
        at = f"{where}, episode {i}"
        rewards = np.asarray(ep.rewards)
        if rewards.ndim != 1:
            raise TestbedError(f"{at}: rewards are not a one-dimensional array")
        n = len(rewards)
        fields = _expected_fields(meta, n)
        for name in fields:  # Minari's arrays as read, whatever the storage format
            value = rewards if name == "rewards" else np.asarray(getattr(ep, name))
            _check_field(name, value.shape, value.dtype, fields[name], where=at)
        order = orders[i] if i < len(orders) and isinstance(orders[i], dict) else {}
        infos = _arrays_to_infos(ep.infos, n, order, where=at) if ep.infos else [{}] * n
        obs, acts = np.asarray(ep.observations), np.asarray(ep.actions)
        trajectories.append(
            TrajectoryWithRew(
                obs=obs,
                acts=acts,
                infos=np.asarray(infos, dtype=object),
                terminal=bool(ep.terminations[-1]),
                rews=np.asarray(ep.rewards, dtype=np.float64),
            )
        )
    _check_values(trajectories, meta, where=where)
    note = f"imported from the Minari dataset {raw.get('dataset_id')} (testbed import-minari)"
    meta = dataclasses.replace(meta, note=f"{meta.note}; {note}" if meta.note else note)
    return Demonstrations(_as_recorded_dtype(trajectories, meta.observation_space), meta)


__all__ = ["export_minari", "read_minari", "dataset_dir", "default_root", "check_dataset_id", "RECORD_KEY"]
