"""Network pieces of the testbed's policies (imports torch: import this module lazily)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

CNN_FEATURES = 256
"""Output size of the image policies' feature extractor, SB3's ``NatureCNN`` (Mnih et al.
2015: 8x8/4, 4x4/2, 3x3/1 convolutions, then one linear layer). On the camera sensor's
(4, 128, 64) frames its last convolution leaves 64 x 12 x 4 values; 256 features (instead of
SB3's default 512) halve the largest layer. Images smaller than 36 px per side leave the
convolutions nothing, which :mod:`testbed.scenarios` refuses."""


class StandardizedFlattenExtractor(BaseFeaturesExtractor):
    """Flatten the observation and standardise each feature with fixed statistics.

    highway-env's normalised Kinematics features span tiny ranges (a 1 m/s speed difference
    is about 0.01), which a plain MLP learns from poorly; standardising each feature with the
    training data's mean and std lets it learn (measured results live in ``results/``, not
    here). The statistics are constructor arguments (kept in the policy file's SB3 ``data``) and
    buffers (in its ``state_dict``).

    Args:
        observation_space: the (Box) observation space.
        mean: per-feature mean of the flattened observation (default 0).
        std: per-feature standard deviation (default 1).
    """

    def __init__(
        self, observation_space: gym.spaces.Box, mean: list[float] | None = None, std: list[float] | None = None
    ):
        size = int(np.prod(observation_space.shape))
        super().__init__(observation_space, size)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.as_tensor(mean if mean is not None else np.zeros(size), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std if std is not None else np.ones(size), dtype=torch.float32))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return (torch.flatten(observations, start_dim=1) - self.mean) / self.std

    def set_statistics(self, mean: Any, std: Any) -> None:
        """Replace the standardisation statistics in place."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))
