"""Clone run directories: the policy file format, safe loading and the run's metadata.

The counterpart of imitation's ``policies/serialize.py`` for this testbed. A run directory
holds ``policy.pt`` (stable-baselines3's ``policy.save`` format: ``{"state_dict", "data"}``),
``train_log.csv`` and ``metadata.json``.

Loading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` with an explicit
allow-list of the few classes a saved policy's constructor arguments need. SB3 2.2.1's
``policy.load`` and imitation's ``bc.reconstruct_policy`` call ``torch.load`` without that and
fail under torch's ``weights_only`` default.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from testbed.errors import TestbedError
from testbed.outputs import read_json
from testbed.scenarios import Scenario, check_record, check_spaces
from testbed.spaces import is_int, space_from_dict, space_to_dict

POLICY_FILE = "policy.pt"
LOG_FILE = "train_log.csv"
METADATA = "metadata.json"


def zero_schedule(progress_remaining: float) -> float:
    """SB3 learning-rate schedule placeholder stored in policy files (BC has its own optimiser)."""
    del progress_remaining
    return 0.0


def is_image_space(space: Any) -> bool:
    """Whether observations are uint8 images in [0, 255] (the camera sensor), which go
    through a CNN instead of the standardised MLP input."""
    from stable_baselines3.common.preprocessing import is_image_space as sb3_is_image_space

    return sb3_is_image_space(space, check_channels=False)


def make_policy(
    observation_space: Any,
    action_space: Any,
    net_arch: Sequence[int],
    *,
    obs_mean: list[float] | None = None,
    obs_std: list[float] | None = None,
) -> Any:
    """A fresh SB3 ``ActorCriticPolicy`` for BC: an MLP on standardised inputs, or, for image
    observations, an MLP on the features of SB3's ``NatureCNN`` (SB3 divides the uint8
    pixels by 255 before the CNN; the mean and std are then unused)."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    from testbed.networks import CNN_FEATURES, StandardizedFlattenExtractor

    if is_image_space(observation_space):
        from stable_baselines3.common.torch_layers import NatureCNN

        extractor: dict[str, Any] = {
            "features_extractor_class": NatureCNN,
            "features_extractor_kwargs": {"features_dim": CNN_FEATURES},
        }
    else:
        extractor = {
            "features_extractor_class": StandardizedFlattenExtractor,
            "features_extractor_kwargs": {"mean": obs_mean, "std": obs_std},
        }
    return ActorCriticPolicy(
        observation_space=observation_space,
        action_space=action_space,
        lr_schedule=zero_schedule,
        net_arch=list(net_arch),
        **extractor,
    )


def save_policy(policy: Any, path: str | pathlib.Path) -> None:
    """Save like SB3's ``policy.save`` (``{"state_dict", "data"}``), except that the stored
    schedule is :func:`zero_schedule`: SB3 stores its static ``_dummy_schedule``, which
    pickles through ``builtins.getattr`` — a global no safe loader should allow."""
    import torch

    data = policy._get_constructor_parameters()
    data["lr_schedule"] = zero_schedule
    # Fresh spaces: one that has been sampled (NatureCNN samples the observation space to
    # size its linear layer) pickles its numpy Generator, which the safe loader refuses.
    for key in ("observation_space", "action_space"):
        data[key] = space_from_dict(space_to_dict(data[key]))
    torch.save({"state_dict": policy.state_dict(), "data": data}, str(path))


def _safe_globals() -> list[Any]:
    """The classes and functions a saved ``ActorCriticPolicy``'s constructor data refers to."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common import torch_layers

    from testbed.networks import StandardizedFlattenExtractor

    numpy_dtypes = [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32", "uint8", "bool")]
    return [
        gym.spaces.Box,
        gym.spaces.Discrete,
        np.ndarray,
        np.dtype,
        *numpy_dtypes,
        np._core.multiarray._reconstruct,  # type: ignore[attr-defined]  # private numpy, not in its stubs
        np._core.multiarray.scalar,  # type: ignore[attr-defined]
        torch.nn.Tanh,
        torch.nn.ReLU,
        torch.optim.Adam,
        torch_layers.FlattenExtractor,
        torch_layers.NatureCNN,
        StandardizedFlattenExtractor,
        zero_schedule,
        # Clones written before this module existed name the schedule by its old home.
        (zero_schedule, "testbed.training.zero_schedule"),
    ]


def load_policy(path: str | pathlib.Path) -> Any:
    """Load an SB3 ``ActorCriticPolicy`` saved with ``policy.save`` — safely.

    Uses ``torch.load(weights_only=True)`` with the allow-list of :func:`_safe_globals`, so a
    file that would need any other class to unpickle is rejected, never executed.

    Raises:
        TestbedError: the file is missing, not a policy, or needs classes outside the list.
    """
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    p = pathlib.Path(path)
    if not p.is_file():
        raise TestbedError(f"policy file not found: {p}")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            saved = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip/unsafe-global errors all mean "not a policy we can load"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TestbedError(f"{p} is not a loadable policy file: {reason}") from None
    if not isinstance(saved, dict) or "state_dict" not in saved or "data" not in saved:
        raise TestbedError(f"{p} is not a policy file (expected SB3's {{'state_dict', 'data'}})")
    try:
        policy = ActorCriticPolicy(**saved["data"])
        policy.load_state_dict(saved["state_dict"])
    except Exception as e:
        raise TestbedError(f"{p} does not hold a valid ActorCriticPolicy: {str(e).splitlines()[0]}") from None
    policy.set_training_mode(False)
    return policy


def read_clone_metadata(run_dir: str | pathlib.Path) -> dict[str, Any]:
    """The ``metadata.json`` of a run directory, validated: its scenario record as strictly as
    a demonstration's (:meth:`testbed.scenarios.Scenario.from_dict`), its spaces as objects,
    and the demonstration seeds it records as lists of integers.

    Raises:
        TestbedError: missing or corrupt file, or a field of the wrong type, naming it.
    """
    path = pathlib.Path(run_dir) / METADATA
    meta = read_json(path, what="clone metadata")
    where = f"clone metadata ({path})"
    if not isinstance(meta, dict):
        raise TestbedError(f"{where} is not a JSON object")
    missing = [k for k in ("scenario", "observation_space", "action_space") if k not in meta]
    if missing:
        raise TestbedError(f"{where} is missing fields: {', '.join(missing)}")
    check_record(meta, where=where)
    demos = meta.get("demos", {})
    if not isinstance(demos, dict):
        raise TestbedError(f"{where}: field 'demos' must be an object")
    for key in ("train_seeds", "val_seeds"):
        seeds = demos.get(key, [])
        if not (isinstance(seeds, list) and all(is_int(s) for s in seeds)):
            raise TestbedError(f"{where}: field 'demos.{key}' must be a list of integers")
    return meta


def load_clone(run_dir: str | pathlib.Path, *, scenario: Scenario | None = None) -> Any:
    """Load a run directory's policy, checking it fits ``scenario``.

    Raises:
        TestbedError: missing/corrupt files or mismatched spaces.
    """
    meta = read_clone_metadata(run_dir)
    if scenario is not None:
        check_spaces(meta, scenario, what=f"the clone at {run_dir}")
    return load_policy(pathlib.Path(run_dir) / POLICY_FILE)
