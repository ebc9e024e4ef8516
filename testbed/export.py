"""Clones as plain stable-baselines3 models (``testbed export-policy``).

A clone's run directory (:mod:`testbed.clone_io`) loads only through the testbed: its input
standardisation is a custom features extractor,
:class:`testbed.networks.StandardizedFlattenExtractor`, which plain SB3 cannot import, and
SB3 2.2.1's ``policy.load`` fails under torch >= 2.6 (``weights_only``). The export is an SB3
model zip that plain SB3 loads in its documented way::

    from stable_baselines3 import PPO

    model = PPO.load("policy.zip")
    action, _ = model.predict(obs, deterministic=True)

The policy inside is an ``ActorCriticPolicy`` (PPO's ``MlpPolicy``; ``NatureCNN`` features
for camera clones) with SB3's own ``FlattenExtractor``. The standardisation
``z = (x - mean) / std`` is folded into the first linear layer of the policy and value
networks: ``W z + b = (W / std) x + (b - (W / std) mean)``, computed in float64 and rounded
once to float32, so logits agree with the clone's to float32 rounding (checked on every export)
and greedy actions agree wherever the clone's two best logits are not within that rounding of
each other. The algorithm container is only SB3's way to store a policy; its PPO
hyperparameters are placeholders (the clone was trained by BC), and ``model.learn`` would start
PPO from the clone.

The zip's ``data`` and ``policy.pth`` entries are SB3's; a ``testbed.json`` entry (ignored by
SB3's loader) records the clone's metadata, the scenario and the export's provenance. SB3's
loader unpickles ``data`` (cloudpickle) — only ever load model zips you trust; the testbed's own
``expert:sb3:`` loader reads the same file without unpickling.
"""

from __future__ import annotations

import io
import json
import pathlib
import zipfile
from typing import Any

import numpy as np

from testbed.cards import card_path, policy_card
from testbed.clone_io import POLICY_FILE, is_image_space, load_clone, read_clone_metadata
from testbed.errors import TestbedError
from testbed.outputs import atomic_output_file, check_output_path
from testbed.provenance import provenance
from testbed.spaces import space_from_dict

METADATA_ENTRY = "testbed.json"
"""The zip entry that records where an exported policy came from (SB3's loader ignores it)."""

FOLD_TOLERANCE = 1e-4
"""Largest accepted difference between the clone's and the export's logits (or Gaussian means)
on the export's self-check, relative to the logits' scale (max(1, |logit|))."""


def _first_linear(state: dict[str, Any], head: str, fallback: str) -> str:
    """The state-dict prefix of the first linear layer that reads the features on one head."""
    return head if f"{head}.weight" in state else fallback


def fold_standardisation(state: dict[str, Any], mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    """The state dict of the same policy with a plain ``FlattenExtractor``.

    Args:
        state: a clone's ``state_dict`` (with ``features_extractor.mean``/``std`` buffers).
        mean: per-feature mean of the flattened observation, shape ``(n_features,)``.
        std: per-feature standard deviation, shape ``(n_features,)``.

    Returns:
        The state dict without the extractor buffers, whose first linear layers on the policy
        and value heads absorb the standardisation (float64 arithmetic, float32 result).
    """
    import torch

    out = {k: v for k, v in state.items() if "features_extractor." not in k}
    mean64, std64 = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    for head, fallback in (("mlp_extractor.policy_net.0", "action_net"), ("mlp_extractor.value_net.0", "value_net")):
        prefix = _first_linear(out, head, fallback)
        weight = out[f"{prefix}.weight"].detach().cpu().numpy().astype(np.float64)
        bias = out[f"{prefix}.bias"].detach().cpu().numpy().astype(np.float64)
        folded = weight / std64[None, :]
        out[f"{prefix}.weight"] = torch.as_tensor(folded.astype(np.float32))
        out[f"{prefix}.bias"] = torch.as_tensor((bias - folded @ mean64).astype(np.float32))
    return out


def _spaces_only_env(observation_space: Any, action_space: Any) -> Any:
    """A gymnasium env that only carries the spaces SB3 needs to build a model; PPO's
    constructor never resets or steps it, and SB3 does not save it."""
    import gymnasium as gym

    class SpacesOnly(gym.Env):
        def __init__(self) -> None:
            self.observation_space = observation_space
            self.action_space = action_space

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
            raise RuntimeError("the export's placeholder env cannot be reset")

        def step(self, action: Any) -> Any:
            raise RuntimeError("the export's placeholder env cannot be stepped")

    return SpacesOnly()


def plain_model(clone: Any) -> Any:
    """An SB3 ``PPO`` model whose policy computes what ``clone`` computes, built only from
    stable-baselines3 and torch classes.

    Args:
        clone: a loaded clone (:func:`testbed.clone_io.load_clone`).
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN
    from stable_baselines3.common.vec_env import DummyVecEnv

    params = clone._get_constructor_parameters()
    observation_space, action_space = params["observation_space"], params["action_space"]
    image = is_image_space(observation_space)
    kwargs: dict[str, Any] = {
        "net_arch": params["net_arch"],
        "activation_fn": params["activation_fn"],
        "ortho_init": params["ortho_init"],
        "log_std_init": params["log_std_init"],
        "normalize_images": params["normalize_images"],
        "share_features_extractor": clone.share_features_extractor,
        "features_extractor_class": NatureCNN if image else FlattenExtractor,
        "features_extractor_kwargs": dict(params["features_extractor_kwargs"]) if image else {},
    }
    env = _spaces_only_env(observation_space, action_space)
    # n_steps = batch_size = 64: the unused rollout buffer stays small (camera frames are 32k values).
    model = PPO(
        ActorCriticPolicy,
        DummyVecEnv([lambda: env]),
        n_steps=64,
        batch_size=64,
        policy_kwargs=kwargs,
        device="cpu",
        seed=0,
        verbose=0,
    )
    state = clone.state_dict()
    if not image:
        extractor = clone.features_extractor
        state = fold_standardisation(state, extractor.mean.cpu().numpy(), extractor.std.cpu().numpy())
    model.policy.load_state_dict(state)
    model.policy.set_training_mode(False)
    return model


def _distribution_params(policy: Any, obs: np.ndarray) -> np.ndarray:
    """Logits (Discrete) or Gaussian means (Box) of ``policy`` on a batch of observations."""
    import torch

    with torch.no_grad():
        tensor, _ = policy.obs_to_tensor(obs)
        dist = policy.get_distribution(tensor).distribution
        values = dist.logits if hasattr(dist, "logits") else dist.mean
    return values.cpu().numpy().astype(np.float64)


def probe_observations(clone: Any, n: int = 256, *, seed: int = 0) -> np.ndarray:
    """Observations to compare clone and export on: Gaussian around the clone's input
    statistics (uniform pixels for camera clones), shape ``(n, *obs_shape)``."""
    rng = np.random.default_rng(seed)
    space = clone.observation_space
    if is_image_space(space):
        return rng.integers(0, 256, size=(n, *space.shape), dtype=np.uint8)
    mean = clone.features_extractor.mean.cpu().numpy().astype(np.float64)
    std = clone.features_extractor.std.cpu().numpy().astype(np.float64)
    flat = mean + std * rng.standard_normal((n, mean.size))
    return flat.reshape(n, *space.shape).astype(space.dtype)


def max_disagreement(clone: Any, exported: Any, obs: np.ndarray) -> float:
    """Largest difference between the two policies' logits (or means) on ``obs``, relative to
    max(1, |clone's value|)."""
    a, b = _distribution_params(clone, obs), _distribution_params(exported, obs)
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))))


def export_policy(run_dir: str | pathlib.Path, out: str | pathlib.Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write a clone as an SB3 model zip that plain stable-baselines3 loads with ``PPO.load``.

    Args:
        run_dir: a clone's run directory (``testbed train``).
        out: the ``.zip`` file to write (atomically: a temporary file renamed into place).
        overwrite: replace an existing file.

    Returns:
        The record stored in the zip's ``testbed.json`` entry, including ``max_disagreement``
        (the self-check on :func:`probe_observations`).

    Raises:
        TestbedError: a missing or corrupt clone, a bad output path, or an export whose
            outputs differ from the clone's by more than :data:`FOLD_TOLERANCE`.
    """
    run = pathlib.Path(run_dir)
    if not run.is_dir():
        raise TestbedError(f"clone run directory not found: {run}")
    target = check_output_path(out)
    if target.suffix != ".zip":
        raise TestbedError(f"--out must name a .zip file (SB3's model format), got {target}")
    if target.is_dir():
        raise TestbedError(f"output path is a directory, not a .zip file: {target}")
    if target.exists() and not overwrite:
        raise TestbedError(f"output file exists: {target} (pass --overwrite to replace it)")
    meta = read_clone_metadata(run)
    clone = load_clone(run)
    # The recorded spaces must be the policy's (a clone whose files disagree is corrupt).
    for key in ("observation_space", "action_space"):
        if space_from_dict(meta[key]) != getattr(clone, key):
            raise TestbedError(f"{run}: {POLICY_FILE} was made for another {key.replace('_', ' ')} than metadata.json")
    model = plain_model(clone)
    gap = max_disagreement(clone, model.policy, probe_observations(clone))
    if not gap <= FOLD_TOLERANCE:
        raise TestbedError(f"exported policy differs from the clone by {gap:.2e} (tolerance {FOLD_TOLERANCE:g})")
    record = {
        "format": "stable-baselines3 PPO model zip; load with stable_baselines3.PPO.load(path)",
        "policy": "ActorCriticPolicy with FlattenExtractor (NatureCNN for images); the clone's input "
        "standardisation folded into the first linear layers",
        "max_disagreement": gap,
        "clone": {"path": str(run), **meta},
        "export_provenance": provenance(),
    }
    buffer = io.BytesIO()
    model.save(buffer)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(METADATA_ENTRY, json.dumps(record, indent=2))
    # Built in memory, written in one go: a full disk fails a plain write (an OSError that
    # names the file), and atomic_output_file removes the partial file.
    card = policy_card(meta, run, {"out": str(target), **record, "provenance": record["export_provenance"]})
    with atomic_output_file(target) as tmp, atomic_output_file(card_path(target)) as card_tmp:
        tmp.write_bytes(buffer.getvalue())
        card_tmp.write_text(card)
    return record


__all__ = ["export_policy", "plain_model", "fold_standardisation", "max_disagreement", "METADATA_ENTRY"]
