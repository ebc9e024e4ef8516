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

import io
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from testbed import safe_zip
from testbed.errors import TestbedError
from testbed.outputs import read_json
from testbed.scenarios import Scenario, check_record, check_spaces
from testbed.spaces import brief, is_int, space_from_dict, space_to_dict

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
    # Serialised in memory and written with a plain write: torch's own file writer reports a
    # full disk as an errno-less RuntimeError ("unexpected pos"); a write names file and errno.
    buffer = io.BytesIO()
    torch.save({"state_dict": policy.state_dict(), "data": data}, buffer)
    pathlib.Path(path).write_bytes(buffer.getvalue())


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


def load_policy(path: str | pathlib.Path, *, metadata: dict[str, Any] | None = None) -> Any:
    """Load an SB3 ``ActorCriticPolicy`` saved with ``policy.save`` — safely.

    Uses ``torch.load(weights_only=True)`` with the allow-list of :func:`_safe_globals`, so a
    file that would need any other class to unpickle is rejected, never executed. The file
    (a zip, torch's format) is first checked like any archive (:mod:`testbed.safe_zip`).

    Args:
        path: the policy file.
        metadata: the clone's record (:func:`read_clone_metadata`); when given, every tensor
            must have the name and shape the network it describes has (:func:`check_weights`).

    Raises:
        TestbedError: the file is missing, not a policy, needs classes outside the list, or
            holds weights that do not fit ``metadata``.
    """
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    p = pathlib.Path(path)
    if not p.is_file():
        raise TestbedError(f"policy file not found: {p}")
    safe_zip.check_archive(p, where=str(p))
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            saved = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip/unsafe-global errors all mean "not a policy we can load"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TestbedError(f"{p} is not a loadable policy file: {reason}") from None
    if not isinstance(saved, dict) or "state_dict" not in saved or "data" not in saved:
        raise TestbedError(f"{p} is not a policy file (expected SB3's {{'state_dict', 'data'}})")
    if metadata is not None:
        check_weights(saved["state_dict"], saved["data"], metadata, where=str(p))
    try:
        policy = ActorCriticPolicy(**saved["data"])
        policy.load_state_dict(saved["state_dict"])
    except Exception as e:
        raise TestbedError(f"{p} does not hold a valid ActorCriticPolicy: {str(e).splitlines()[0]}") from None
    policy.set_training_mode(False)
    return policy


MAX_HIDDEN_LAYERS = 64
"""Most hidden layers a clone's recorded ``net_arch`` may list."""
BUILD_FREELY_WEIGHTS = 10_000_000
"""A network described by a clone's record is built to compare with its weights when it has
no more weights than the policy file holds, or than this (40 MB of float32): beyond both, a
record that misdescribes its weights could otherwise make the check exhaust memory."""


def _lower_bound_weights(observation_space: Any, action_space: Any, net_arch: Sequence[int]) -> int:
    """Fewer weights than :func:`make_policy`'s network for these arguments has: its policy
    MLP's matrices (and, for images, NatureCNN's linear layer), without building anything."""
    from testbed.networks import CNN_FEATURES

    shape = [int(s) for s in observation_space.shape]
    n_in, cnn = int(np.prod(shape)), 0
    if is_image_space(observation_space):
        n_in = CNN_FEATURES
        side = shape[1:]  # NatureCNN takes channels first
        for kernel, stride in ((8, 4), (4, 2), (3, 1)):
            side = [max((s - kernel) // stride + 1, 0) for s in side]
        cnn = 64 * int(np.prod(side)) * CNN_FEATURES
    n_out = int(action_space.n) if hasattr(action_space, "n") else int(np.prod(action_space.shape))
    sizes = [n_in, *net_arch, n_out]
    return cnn + sum(a * b for a, b in zip(sizes, sizes[1:]))


def check_weights(state: Any, data: Any, metadata: dict[str, Any], *, where: str) -> None:
    """Refuse weights that do not fit the network a clone's metadata describes: its recorded
    spaces and ``config.net_arch`` (the policy file's own ``net_arch`` if the record has none).

    Every tensor is compared, by name and shape, with a network :func:`make_policy` builds from
    the record, so a ``policy.pt`` from another architecture or another observation or action
    space is refused before it is loaded (loading would fail with torch's own multi-line error,
    or succeed and drive with a network the record misdescribes). A network larger than both
    the weights and :data:`BUILD_FREELY_WEIGHTS` is refused without being built
    (:func:`_lower_bound_weights`).

    Args:
        state: the policy file's ``state_dict``.
        data: the policy file's constructor parameters (``data``).
        metadata: the clone's record (:func:`read_clone_metadata`).
        where: the policy file, for messages.

    Raises:
        TestbedError: one line naming the first tensor that is missing, extra or of another
            shape, or a recorded ``net_arch`` that is not a list of positive integers.
    """
    import torch

    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise TestbedError(f"{where} is not a policy file: its state_dict is not a mapping of names to tensors")
    config = metadata.get("config")
    net_arch = config.get("net_arch") if isinstance(config, dict) and "net_arch" in config else None
    if net_arch is None and isinstance(data, dict):
        net_arch = data.get("net_arch")
    if not (
        isinstance(net_arch, list)
        and len(net_arch) <= MAX_HIDDEN_LAYERS
        and all(is_int(h) and h >= 1 for h in net_arch)
    ):
        raise TestbedError(
            f"{where}: the clone's recorded net_arch {net_arch!r} is not a list of at most {MAX_HIDDEN_LAYERS} "
            "positive integers"
        )
    observation_space = space_from_dict(metadata["observation_space"])
    action_space = space_from_dict(metadata["action_space"])
    spaces = f"{brief(metadata['observation_space'])} -> {net_arch} -> {brief(metadata['action_space'])}"
    described = f"the network its metadata.json describes ({spaces})"
    held = sum(int(v.numel()) for v in state.values())
    needed = _lower_bound_weights(observation_space, action_space, net_arch)
    if needed > max(held, BUILD_FREELY_WEIGHTS):  # too large to build just to name a tensor
        raise TestbedError(f"{where} holds {held} weights; {described} needs at least {needed}")
    network = make_policy(observation_space, action_space, net_arch)
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    for name, shape in expected.items():
        if name not in state:
            raise TestbedError(f"{where} has no tensor {name!r}, which {described} has")
        if tuple(state[name].shape) != shape:
            raise TestbedError(
                f"{where}: tensor {name!r} has shape {list(state[name].shape)}, but {described} needs {list(shape)}"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise TestbedError(f"{where} has a tensor {extra[0]!r} that {described} does not have")


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
    return load_policy(pathlib.Path(run_dir) / POLICY_FILE, metadata=meta)
