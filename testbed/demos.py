"""Demonstration datasets: imitation trajectories with a typed record of how they were made.

A demonstration directory holds

- ``trajectories/`` — imitation ``TrajectoryWithRew`` objects written by
  ``imitation.data.serialize.save`` (read them back with plain
  ``imitation.data.serialize.load(DIR / "trajectories")``);
- ``metadata.json`` — a :class:`DemoMetadata`: scenario and full env config, expert and its
  parameters, noise, seeds, counts, observation/action spaces, package versions, git commit
  and creation time.

This module is pure data: collecting demonstrations is :mod:`testbed.collect`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
from imitation.data.types import TrajectoryWithRew

from testbed import safe_json
from testbed.errors import TestbedError
from testbed.outputs import atomic_output_dir, read_json, write_json
from testbed.provenance import provenance
from testbed.scenarios import Scenario, check_record, check_spaces, describe_spaces
from testbed.spaces import brief, is_int, space_from_dict

TRAJECTORIES = "trajectories"
METADATA = "metadata.json"
FORMAT_VERSION = 1


DAGGER_NOTE = "DAgger aggregate"
"""How the ``note`` of a DAgger aggregate's record starts: such data cannot be replayed
(:func:`testbed.verify.verify_demos` refuses them)."""


@dataclasses.dataclass(frozen=True)
class DemoMetadata:
    """The record of a demonstration dataset (``metadata.json``).

    Build one with :meth:`describe`, which derives every count from the trajectories, so the
    record cannot disagree with the data it describes.
    """

    scenario: dict[str, Any]
    """:meth:`testbed.scenarios.Scenario.to_dict` of where the episodes were driven."""
    observation_space: dict[str, Any]
    """Observation space (:func:`testbed.spaces.space_to_dict`)."""
    action_space: dict[str, Any]
    """Action space (:func:`testbed.spaces.space_to_dict`)."""
    expert: dict[str, Any]
    """``{"name": ..., "params": {...}}`` of the driver whose actions are the labels."""
    seeds: list[int]
    """Episode seeds, aligned with the trajectories."""
    n_episodes: int
    """Number of episodes."""
    n_transitions: int
    """Total (observation, action) pairs."""
    n_crashed: int | None = None
    """Episodes that ended in a crash (None in records that did not count them)."""
    noise: dict[str, Any] | None = None
    """The DART-style noise injected while collecting (None: none)."""
    format_version: int | None = FORMAT_VERSION
    """Version of this record's layout (None in records written before it was kept)."""
    provenance: dict[str, Any] | None = None
    """Package versions, git commit, creation time (:func:`testbed.provenance.provenance`)."""
    driving: dict[str, Any] | None = None
    """Human data: pacing and every driven episode, kept or not."""
    note: str | None = None
    """Free text on how the data were made (e.g. DAgger's aggregate)."""

    @classmethod
    def describe(
        cls,
        scenario: Scenario,
        trajectories: Sequence[TrajectoryWithRew],
        seeds: Sequence[int],
        *,
        expert: Mapping[str, Any],
        noise: Mapping[str, Any] | None = None,
        driving: Mapping[str, Any] | None = None,
        note: str | None = None,
        with_provenance: bool = True,
    ) -> DemoMetadata:
        """The record of ``trajectories`` driven in ``scenario`` (counts derived from them)."""
        if len(trajectories) != len(seeds):
            raise ValueError("one seed per trajectory")
        return cls(
            scenario=scenario.to_dict(),
            **describe_spaces(scenario),
            expert=dict(expert),
            noise=None if noise is None else dict(noise),
            seeds=[int(s) for s in seeds],
            n_episodes=len(trajectories),
            n_transitions=int(sum(len(t.acts) for t in trajectories)),
            n_crashed=_n_crashed(trajectories),
            driving=None if driving is None else dict(driving),
            note=note,
            provenance=provenance() if with_provenance else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``driving`` and ``note`` only when set)."""
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "scenario": self.scenario,
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "expert": self.expert,
            "noise": self.noise,
            "seeds": list(self.seeds),
            "n_episodes": self.n_episodes,
            "n_transitions": self.n_transitions,
            "n_crashed": self.n_crashed,
        }
        if self.driving is not None:
            out["driving"] = self.driving
        if self.note is not None:
            out["note"] = self.note
        out["provenance"] = self.provenance
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "demonstration metadata") -> DemoMetadata:
        """Read and type-check a record.

        Raises:
            TestbedError: a missing field or a field of the wrong type, naming it.
        """
        if not isinstance(data, dict):
            raise TestbedError(f"{where} is not a JSON object")
        required = ("scenario", "observation_space", "action_space", "seeds", "n_episodes")
        missing = [k for k in required if k not in data]
        if missing:
            raise TestbedError(f"{where} is missing fields: {', '.join(missing)}")
        for key in ("scenario", "observation_space", "action_space"):
            _expect(isinstance(data[key], dict), where, key, "an object")
        _expect(isinstance(data["scenario"].get("config"), dict), where, "scenario.config", "an object")
        expert = data.get("expert") or {"name": "?", "params": {}}
        _expect(isinstance(expert, dict), where, "expert", "an object")
        seeds = data["seeds"]
        _expect(isinstance(seeds, list) and all(is_int(s) for s in seeds), where, "seeds", "a list of integers")
        for key in ("n_episodes", "n_transitions", "n_crashed", "format_version"):
            value = data.get(key)
            _expect(value is None or is_int(value), where, key, "an integer")
        for key in ("noise", "provenance", "driving"):
            _expect(data.get(key) is None or isinstance(data[key], dict), where, key, "an object or null")
        _expect(isinstance(expert.get("name", ""), str), where, "expert.name", "a string")
        _expect(isinstance(expert.get("params", {}), dict), where, "expert.params", "an object")
        check_record(data, where=where)
        n_transitions = data.get("n_transitions")
        return cls(
            scenario=data["scenario"],
            observation_space=data["observation_space"],
            action_space=data["action_space"],
            expert=expert,
            seeds=[int(s) for s in seeds],
            n_episodes=int(data["n_episodes"]),
            n_transitions=-1 if n_transitions is None else int(n_transitions),
            n_crashed=data.get("n_crashed"),
            noise=data.get("noise"),
            format_version=data.get("format_version"),
            provenance=data.get("provenance"),
            driving=data.get("driving"),
            note=data.get("note") if isinstance(data.get("note"), str) else None,
        )


def _expect(ok: bool, where: str, key: str, kind: str) -> None:
    if not ok:
        raise TestbedError(f"{where}: field {key!r} must be {kind}")


def _n_crashed(trajectories: Sequence[TrajectoryWithRew]) -> int:
    return int(sum(bool(t.infos[-1].get("crashed")) for t in trajectories if t.infos is not None and len(t.infos)))


@dataclasses.dataclass(frozen=True)
class Demonstrations:
    """Expert episodes with the record of how they were made."""

    trajectories: Sequence[TrajectoryWithRew]
    """One trajectory per episode, in seed order."""
    metadata: DemoMetadata
    """The record of ``metadata.json``."""

    @property
    def seeds(self) -> list[int]:
        """Episode seeds, aligned with :attr:`trajectories`."""
        return list(self.metadata.seeds)

    @property
    def n_transitions(self) -> int:
        """Total (observation, action) pairs."""
        return int(sum(len(t.acts) for t in self.trajectories))

    def with_trajectories(self, trajectories: Sequence[TrajectoryWithRew], seeds: Sequence[int]) -> Demonstrations:
        """The same record for other episodes (counts recomputed from them)."""
        if len(trajectories) != len(seeds):
            raise ValueError("one seed per trajectory")
        meta = dataclasses.replace(
            self.metadata,
            seeds=[int(s) for s in seeds],
            n_episodes=len(trajectories),
            n_transitions=int(sum(len(t.acts) for t in trajectories)),
            n_crashed=_n_crashed(trajectories),
        )
        return Demonstrations(list(trajectories), meta)

    def subset(self, indices: Sequence[int]) -> Demonstrations:
        """The episodes at ``indices`` (in that order), with a record that counts them."""
        return self.with_trajectories([self.trajectories[i] for i in indices], [self.seeds[i] for i in indices])

    def first(self, n_episodes: int) -> Demonstrations:
        """The first ``n_episodes`` episodes."""
        return self.subset(range(min(n_episodes, len(self.trajectories))))

    def concatenate(self, other: Demonstrations) -> Demonstrations:
        """These episodes followed by ``other``'s (the record stays this one's, recounted)."""
        return self.with_trajectories([*self.trajectories, *other.trajectories], self.seeds + other.seeds)

    def first_transitions(self, n: int) -> Demonstrations:
        """The first ``n`` (observation, action) pairs, in episode order; the last episode used
        is cut short (and marked non-terminal).

        Raises:
            TestbedError: fewer than ``n`` transitions available.
        """
        if self.n_transitions < n:
            raise TestbedError(f"only {self.n_transitions} demonstration transitions, {n} requested")
        kept: list[TrajectoryWithRew] = []
        left = n
        for t in self.trajectories:
            if left <= 0:
                break
            k = min(left, len(t.acts))
            kept.append(
                t
                if k == len(t.acts)
                else TrajectoryWithRew(
                    obs=t.obs[: k + 1],
                    acts=t.acts[:k],
                    infos=t.infos[:k] if t.infos is not None else None,
                    terminal=False,
                    rews=t.rews[:k],
                )
            )
            left -= k
        return self.with_trajectories(kept, self.seeds[: len(kept)])


def human_demonstrations(
    scenario: Scenario,
    trajectories: Sequence[TrajectoryWithRew],
    seeds: Sequence[int],
    *,
    mapper: dict[str, Any],
    driving: dict[str, Any],
) -> Demonstrations:
    """Episodes a person drove (:mod:`testbed.human`), with the same record as collected data.

    Args:
        scenario: where they were driven.
        trajectories: the kept episodes; ``acts`` are the applied actions.
        seeds: each episode's seed, aligned with ``trajectories``.
        mapper: the key mapping's parameters (recorded as the "expert"'s).
        driving: pacing and every driven episode, kept or not (seed, steps, how it ended).
    """
    meta = DemoMetadata.describe(
        scenario, trajectories, seeds, expert={"name": "human", "params": mapper}, driving=driving
    )
    return Demonstrations(list(trajectories), meta)


def quiet_datasets() -> None:
    """Turn off the progress bars ``datasets`` prints on every save (imitation's serialize)."""
    import datasets

    datasets.disable_progress_bars()


def save_demos(demos: Demonstrations, path: str | pathlib.Path, *, overwrite: bool = False) -> pathlib.Path:
    """Write ``demos`` to a new directory, atomically."""
    from imitation.data import serialize

    quiet_datasets()
    with atomic_output_dir(path, overwrite=overwrite) as tmp:
        serialize.save(tmp / TRAJECTORIES, list(demos.trajectories))
        write_json(tmp / METADATA, demos.metadata.to_dict())
    return pathlib.Path(path)


def load_demos(path: str | pathlib.Path, *, scenario: Scenario | None = None) -> Demonstrations:
    """Read a demonstration directory, checking it is whole and fits ``scenario``.

    Raises:
        TestbedError: missing or corrupt files, or spaces that differ from the scenario's.
    """
    root = pathlib.Path(path)
    if not root.is_dir():
        raise TestbedError(f"demonstration directory not found: {root}")
    metadata = DemoMetadata.from_dict(
        read_json(root / METADATA, what="demonstration metadata"), where=f"demonstration metadata ({root / METADATA})"
    )
    trajectories = _load_trajectories(root / TRAJECTORIES)
    if len(trajectories) != metadata.n_episodes or len(metadata.seeds) != len(trajectories):
        raise TestbedError(
            f"demonstrations at {root} are inconsistent: metadata says {metadata.n_episodes} episodes, "
            f"found {len(trajectories)}"
        )
    if scenario is not None:
        check_spaces(metadata.to_dict(), scenario, what=f"demonstrations at {root}")
    _check_values(trajectories, metadata, where=f"demonstrations at {root}")
    return Demonstrations(_as_recorded_dtype(trajectories, metadata.observation_space), metadata)


def _as_recorded_dtype(trajectories: list[TrajectoryWithRew], space: Any) -> list[TrajectoryWithRew]:
    """Give observations back their recorded dtype: imitation's serialize reads uint8 camera
    frames as int64 (8x the memory)."""
    import numpy as np

    dtype = np.dtype(space.get("dtype", "float32")) if isinstance(space, dict) else None
    if dtype is None or all(t.obs.dtype == dtype for t in trajectories):
        return trajectories
    return [dataclasses.replace(t, obs=np.asarray(t.obs, dtype=dtype)) for t in trajectories]


def _load_trajectories(path: pathlib.Path) -> list[TrajectoryWithRew]:
    """imitation's trajectories at ``path``, with their infos decoded as plain JSON.

    imitation decodes each step's info with ``jsonpickle``, which imports whatever class a
    ``{"py/object": "module.Class"}`` entry names: a demonstration file could run code. The
    testbed's infos are plain JSON objects, so they are read with :func:`json.loads` and an
    entry with a jsonpickle tag is refused.
    """
    import datasets
    import numpy as np
    from imitation.data import huggingface_utils

    if not path.is_dir():
        raise TestbedError(f"demonstration trajectories not found: {path}")
    try:
        # What imitation's serialize.load does for a directory, keeping the encoded infos.
        dataset = datasets.load_from_disk(str(path))
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError("not a dataset of trajectories written by imitation's serialize.save")
        sequence = huggingface_utils.TrajectoryDatasetSequence(dataset)
        encoded = dataset["infos"]
        trajectories = []
        for i in range(len(sequence)):
            t = sequence[i]
            if not isinstance(t, TrajectoryWithRew):
                raise ValueError(f"episode {i} has no rewards")
            infos = [
                _decode_info(text, where=f"demonstrations at {path}: episode {i}, step {k}")
                for k, text in enumerate(encoded[i])
            ]
            trajectories.append(dataclasses.replace(t, infos=np.asarray(infos, dtype=object)))
    except TestbedError:
        raise
    except Exception as e:  # datasets/pyarrow/imitation raise many types on corrupt files
        raise TestbedError(f"cannot read demonstrations at {path}: {type(e).__name__}: {e}".splitlines()[0]) from None
    if not trajectories:
        raise TestbedError(f"demonstrations at {path} contain no episodes")
    return trajectories


def _decode_info(text: Any, *, where: str) -> dict[str, Any]:
    """One step's info: a JSON object without jsonpickle tags (``py/object`` and the like)."""
    import json

    def refuse_tags(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        for key, _ in pairs:
            if key.startswith("py/"):
                raise TestbedError(f"{where}: the info holds a jsonpickle tag {key!r}; infos must be plain JSON")
        return dict(pairs)

    if not isinstance(text, str):
        raise TestbedError(f"{where}: the info is not text")
    safe_json.check(text, where=f"{where}: the info")  # size and nesting depth, before parsing
    try:
        # Without a '"py/' substring there is no tag; the C decoder then needs no hook.
        info = json.loads(text, object_pairs_hook=refuse_tags) if '"py/' in text else json.loads(text)
    except json.JSONDecodeError as e:
        raise TestbedError(f"{where}: the info is not JSON ({e})") from None
    if not isinstance(info, dict):
        raise TestbedError(f"{where}: the info is not a JSON object")
    return info


def _check_values(trajectories: Sequence[TrajectoryWithRew], metadata: DemoMetadata, *, where: str) -> None:
    """Refuse observations outside the recorded observation space (wrong shape, NaN, inf,
    out of bounds), actions outside the action space and non-finite rewards, naming the
    first bad episode and step: such data would otherwise fail deep inside training."""
    import numpy as np

    obs_space = space_from_dict(metadata.observation_space)
    act_space = space_from_dict(metadata.action_space)
    shape = tuple(obs_space.shape or ())
    low, high = np.asarray(obs_space.low, np.float64), np.asarray(obs_space.high, np.float64)  # type: ignore[attr-defined]
    for i, t in enumerate(trajectories):
        obs = np.asarray(t.obs)
        if obs.shape[1:] != shape:
            raise TestbedError(f"{where}: episode {i} has observations of shape {obs.shape[1:]}, not {shape}")
        values = obs.astype(np.float64)
        bad = ~np.isfinite(values) | (values < low) | (values > high)
        if bad.any():
            step = int(np.argwhere(bad)[0][0])
            raise TestbedError(
                f"{where}: episode {i}, step {step}: observation outside the observation space "
                f"(value {values[step][bad[step]].flat[0]!r}; bounds {brief(metadata.observation_space)})"
            )
        acts = np.asarray(t.acts)
        if isinstance(act_space, gym.spaces.Discrete):
            ok = np.isfinite(acts.astype(np.float64)) & (acts == np.round(acts))
            ok &= (acts >= act_space.start) & (acts < act_space.start + act_space.n)
            bad_steps = np.flatnonzero(~ok.reshape(len(acts), -1).all(axis=1))
        else:
            values = acts.astype(np.float64).reshape(len(acts), *(act_space.shape or ()))
            inside = np.isfinite(values) & (values >= act_space.low) & (values <= act_space.high)  # type: ignore[attr-defined]
            bad_steps = np.flatnonzero(~inside.reshape(len(acts), -1).all(axis=1))
        if len(bad_steps):
            step = int(bad_steps[0])
            raise TestbedError(
                f"{where}: episode {i}, step {step}: action {acts[step].tolist()!r} is outside the action space "
                f"{brief(metadata.action_space)}"
            )
        rews = np.asarray(t.rews, dtype=np.float64)
        if not np.isfinite(rews).all():
            step = int(np.flatnonzero(~np.isfinite(rews))[0])
            raise TestbedError(f"{where}: episode {i}, step {step}: reward {rews[step]!r} is not finite")
