"""Collect, save and load demonstrations.

A demonstration directory holds

- ``trajectories/`` — imitation ``TrajectoryWithRew`` objects written by
  ``imitation.data.serialize.save`` (read them back with plain
  ``imitation.data.serialize.load(DIR / "trajectories")``);
- ``metadata.json`` — scenario and full env config, expert and its parameters, seeds,
  counts, observation/action spaces, package versions, git commit and creation time.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Sequence

from imitation.data.types import TrajectoryWithRew

from testbed.errors import TestbedError
from testbed.outputs import atomic_output_dir, read_json, write_json
from testbed.policies import PolicySpec
from testbed.provenance import provenance
from testbed.scenarios import Scenario, describe_spaces

TRAJECTORIES = "trajectories"
METADATA = "metadata.json"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Demonstrations:
    """Expert episodes with the record of how they were made."""

    trajectories: Sequence[TrajectoryWithRew]
    """One trajectory per episode, in seed order."""
    metadata: dict[str, Any]
    """Contents of ``metadata.json``."""

    @property
    def seeds(self) -> list[int]:
        """Episode seeds, aligned with :attr:`trajectories`."""
        return [int(s) for s in self.metadata["seeds"]]

    @property
    def n_transitions(self) -> int:
        """Total (observation, action) pairs."""
        return int(sum(len(t.acts) for t in self.trajectories))


def episode_seeds(seed: int, n_episodes: int) -> list[int]:
    """The seeds of ``n_episodes`` consecutive episodes starting at ``seed``.

    Raises:
        TestbedError: ``n_episodes < 1`` or a negative seed.
    """
    if n_episodes < 1:
        raise TestbedError(f"--episodes must be at least 1, got {n_episodes}")
    if seed < 0:
        raise TestbedError(f"--seed must be non-negative, got {seed}")
    return list(range(seed, seed + n_episodes))


def collect(
    scenario: Scenario,
    expert: str,
    *,
    n_episodes: int,
    seed: int,
    n_workers: int = 1,
    pool: Any = None,
    noise: float = 0.0,
    progress: bool = False,
) -> Demonstrations:
    """Drive ``n_episodes`` episodes with an expert and keep them as demonstrations.

    Args:
        scenario: where the expert drives.
        expert: expert name (``scripted``).
        n_episodes: number of episodes; episode ``i`` uses seed ``seed + i``.
        seed: first episode seed.
        n_workers: rollout worker processes (results do not depend on it).
        pool: an open :class:`testbed.rollout.RolloutPool` to use instead.
        noise: DART-style noise injection: with this probability a uniformly random action
            is applied instead of the expert's, while the recorded label stays the expert's
            clean action (the applied one is in each step's ``applied_action`` info). In a
            continuous-action scenario every applied action gets Gaussian noise of standard
            deviation ``noise`` times the action range instead (clipped to the Box).
        progress: show a progress bar.
    """
    from testbed.rollout import rollouts

    spec = PolicySpec.parse(f"expert:{expert}")
    seeds = episode_seeds(seed, n_episodes)
    if not 0.0 <= noise <= 1.0:
        raise TestbedError(f"--noise must be a probability in [0, 1], got {noise}")
    from testbed.experts import make_expert
    from testbed.policies import check_expert_fits

    check_expert_fits(make_expert(expert), scenario)
    continuous = scenario.config["action"]["type"] == "ContinuousAction"
    records = rollouts(
        scenario, spec, seeds, n_workers=n_workers, pool=pool, noise=noise, progress=progress, desc="collect"
    )
    from testbed.experts import make_expert

    trajectories = [r.trajectory for r in records]
    metadata = {
        "format_version": FORMAT_VERSION,
        "scenario": scenario.to_dict(),
        **describe_spaces(scenario),
        "expert": {"name": expert, "params": make_expert(expert).params()},
        "noise": (
            {"type": "uniform random action (DART-style)", "probability": noise}
            if not continuous
            else {"type": "Gaussian, std = noise * (high - low) per component, clipped (DART-style)", "noise": noise}
        ) if noise > 0 else None,
        "seeds": seeds,
        "n_episodes": len(trajectories),
        "n_transitions": int(sum(len(t.acts) for t in trajectories)),
        "n_crashed": int(sum(bool(t.infos[-1]["crashed"]) for t in trajectories)),
        "provenance": provenance(),
    }
    return Demonstrations(trajectories, metadata)


def human_demonstrations(
    scenario: Scenario,
    trajectories: Sequence[TrajectoryWithRew],
    seeds: Sequence[int],
    *,
    mapper: dict[str, Any],
    driving: dict[str, Any],
) -> Demonstrations:
    """Episodes a person drove (:mod:`testbed.human`), with the same metadata as :func:`collect`.

    Args:
        scenario: where they were driven.
        trajectories: the kept episodes; ``acts`` are the applied actions.
        seeds: each episode's seed, aligned with ``trajectories``.
        mapper: the key mapping's parameters (recorded as the "expert"'s).
        driving: pacing and every driven episode, kept or not (seed, steps, how it ended).
    """
    if len(trajectories) != len(seeds):
        raise ValueError("one seed per trajectory")
    return Demonstrations(
        list(trajectories),
        {
            "format_version": FORMAT_VERSION,
            "scenario": scenario.to_dict(),
            **describe_spaces(scenario),
            "expert": {"name": "human", "params": mapper},
            "noise": None,
            "seeds": [int(s) for s in seeds],
            "n_episodes": len(trajectories),
            "n_transitions": int(sum(len(t.acts) for t in trajectories)),
            "n_crashed": int(sum(bool(t.infos[-1]["crashed"]) for t in trajectories)),
            "driving": driving,
            "provenance": provenance(),
        },
    )


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
        write_json(tmp / METADATA, demos.metadata)
    return pathlib.Path(path)


def load_demos(path: str | pathlib.Path, *, scenario: Scenario | None = None) -> Demonstrations:
    """Read a demonstration directory, checking it is whole and fits ``scenario``.

    Raises:
        TestbedError: missing or corrupt files, or spaces that differ from the scenario's.
    """
    root = pathlib.Path(path)
    if not root.is_dir():
        raise TestbedError(f"demonstration directory not found: {root}")
    metadata = read_json(root / METADATA, what="demonstration metadata")
    required = ("scenario", "observation_space", "action_space", "seeds", "n_episodes")
    if not isinstance(metadata, dict) or any(k not in metadata for k in required):
        raise TestbedError(f"demonstration metadata is missing fields ({root / METADATA})")
    trajectories = _load_trajectories(root / TRAJECTORIES)
    if len(trajectories) != metadata["n_episodes"] or len(metadata["seeds"]) != len(trajectories):
        raise TestbedError(
            f"demonstrations at {root} are inconsistent: metadata says {metadata['n_episodes']} episodes, "
            f"found {len(trajectories)}"
        )
    if scenario is not None:
        check_spaces(metadata, scenario, what=f"demonstrations at {root}")
    return Demonstrations(_as_recorded_dtype(trajectories, metadata["observation_space"]), metadata)


def _as_recorded_dtype(trajectories: list[TrajectoryWithRew], space: Any) -> list[TrajectoryWithRew]:
    """Give observations back their recorded dtype: imitation's serialize reads uint8 camera
    frames as int64 (8x the memory)."""
    import numpy as np

    dtype = np.dtype(space.get("dtype", "float32")) if isinstance(space, dict) else None
    if dtype is None or all(t.obs.dtype == dtype for t in trajectories):
        return trajectories
    return [dataclasses.replace(t, obs=np.asarray(t.obs, dtype=dtype)) for t in trajectories]


def _load_trajectories(path: pathlib.Path) -> list[TrajectoryWithRew]:
    from imitation.data import serialize

    if not path.is_dir():
        raise TestbedError(f"demonstration trajectories not found: {path}")
    try:
        trajectories = list(serialize.load_with_rewards(path))
    except Exception as e:  # datasets/pyarrow raise many types on corrupt files
        raise TestbedError(f"cannot read demonstrations at {path}: {type(e).__name__}: {e}".splitlines()[0]) from None
    if not trajectories:
        raise TestbedError(f"demonstrations at {path} contain no episodes")
    return trajectories


def check_spaces(record: dict[str, Any], scenario: Scenario, *, what: str) -> None:
    """Fail unless ``record``'s observation and action spaces equal ``scenario``'s.

    Raises:
        TestbedError: naming which space differs and the two scenarios.
    """
    expected = describe_spaces(scenario)
    made_for = record.get("scenario", {}).get("name", "?")
    for key in ("observation_space", "action_space"):
        if record.get(key) != expected[key]:
            raise TestbedError(
                f"{what} were made for scenario {made_for!r} with a different {key.replace('_', ' ')} "
                f"than scenario {scenario.name!r}: {_brief(record.get(key))} vs {_brief(expected[key])}"
            )
    # Same shape is not enough: Kinematics features in absolute vs relative coordinates, or
    # in another order, would feed a clone numbers that mean something else.
    theirs = record.get("scenario", {}).get("config", {}).get("observation")
    ours = scenario.to_dict()["config"]["observation"]
    if theirs != ours:
        raise TestbedError(
            f"{what} were made for scenario {made_for!r} whose observation config differs from "
            f"scenario {scenario.name!r}'s: {theirs} vs {ours}"
        )


def _brief(space: Any) -> str:
    if not isinstance(space, dict):
        return repr(space)
    if space.get("type") == "Discrete":
        return f"Discrete({space.get('n')})"
    return f"{space.get('type')}{tuple(space.get('shape', ()))}"
