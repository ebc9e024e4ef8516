"""DART (Laskey et al. 2017) with its noise fitted to the learner's error.

DART collects demonstrations while the *applied* action is perturbed and the recorded label stays
the expert's clean action, so that the data cover states a learner that errs will reach. Laskey
et al. set the noise so that the noisy supervisor deviates from its clean actions about as often
as the trained learner does (their noise is fitted to the learner's error on the supervisor's
distribution), instead of tuning it on returns. With K discrete actions and a uniformly random
applied action with probability p, the applied action differs from the expert's with probability
p (K-1)/K; matching the learner's error rate eps gives p = eps K/(K-1), at most 1
(:func:`fitted_noise`).

At a budget of B expert labels (:func:`dart_demonstrations`):

1. the first B//2 labels are clean expert demonstrations (a seed block's first B//2
   transitions, so a BC clone of the same block trains on the same ones);
2. the learner's error eps_hat on the expert's distribution is estimated by 2-fold
   cross-fitting on them (:func:`fit_noise`): the episodes are split into two folds (alternate
   episodes), a BC clone is trained on each fold with the final clone's recipe, its argmax is
   compared with the expert's labels on the *other* fold, and the disagreements of both are
   pooled over every clean label;
3. p = min(1, eps_hat K/(K-1));
4. the remaining B - B//2 labels are collected with that noise from the seeds that follow
   (the last clean episode used may be cut; its seed is not used again);
5. the clone trains on all B labels.

The cross-fitting reuses the clean half, so the method consumes exactly B expert labels, all of
which the final clone trains on.

Note:
    Each fold's clone trains on about B/4 labels, a quarter of the final clone's, so eps_hat
    overestimates the final clone's error on the expert's states (more noise, not less).
    Discrete actions only: the harness's continuous noise is Gaussian, for which a matching
    error rate is not defined.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from testbed.errors import TestbedError

if TYPE_CHECKING:
    from testbed.demos import Demonstrations
    from testbed.rollout import RolloutPool
    from testbed.scenarios import Scenario
    from testbed.training import TrainConfig

Recipe = Callable[[int], "TrainConfig"]
"""The BC recipe of a clone trained on a given number of labels (e.g.
``functools.partial(kit.every_label_config, seed, epochs=..., batch_size=...)``)."""


def fitted_noise(eps_hat: float, n_actions: int) -> float:
    """The probability p of a uniformly random applied action that makes the applied action
    differ from the expert's at rate ``eps_hat``: min(1, eps_hat K/(K-1)) for K = ``n_actions``.

    Raises:
        TestbedError: fewer than 2 actions, or ``eps_hat`` not in [0, 1].
    """
    if n_actions < 2:
        raise TestbedError(f"DART's noise needs at least 2 discrete actions, got {n_actions}")
    if not 0.0 <= eps_hat <= 1.0:
        raise TestbedError(f"an error rate must be in [0, 1], got {eps_hat}")
    return min(1.0, eps_hat * n_actions / (n_actions - 1))


@dataclasses.dataclass(frozen=True)
class NoiseFit:
    """The cross-fitted error of the learner on the expert's distribution, and the noise it sets."""

    eps_hat: float
    """Pooled disagreement: ``sum(n_errors) / sum(n_scored)``."""
    noise: float
    """p = min(1, eps_hat K/(K-1)) (:func:`fitted_noise`)."""
    folds: tuple[tuple[int, ...], tuple[int, ...]]
    """Episode indices (into the clean demonstrations) of the two folds."""
    n_errors: tuple[int, int]
    """Labels of fold 1 - k the clone of fold k disagreed with (argmax != expert)."""
    n_scored: tuple[int, int]
    """Labels the clone of fold k was scored on (those of fold 1 - k)."""


def fold_split(n_episodes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two folds of whole episodes: even and odd indices (balanced in labels within one episode,
    and both span the seed block).

    Raises:
        TestbedError: fewer than 2 episodes.
    """
    if n_episodes < 2:
        raise TestbedError(f"DART's cross-fitting needs at least 2 clean episodes, got {n_episodes}: raise the budget")
    return tuple(range(0, n_episodes, 2)), tuple(range(1, n_episodes, 2))


def fit_noise(clean: Demonstrations, recipe: Recipe, *, n_actions: int) -> NoiseFit:
    """eps_hat by 2-fold cross-fitting on ``clean`` (:func:`fold_split`; each fold's clone
    trained by :func:`testbed.training.train_bc` with ``recipe(fold labels)``) and its noise.

    Raises:
        TestbedError: fewer than 2 episodes, or a fold too small for its recipe.
    """
    import torch

    from testbed.training import stack_transitions, train_bc

    folds = fold_split(len(clean.trajectories))
    errors, scored = [], []
    for k in (0, 1):
        train, other = clean.subset(folds[k]), clean.subset(folds[1 - k])
        policy = train_bc(train, recipe(train.n_transitions)).policy
        obs, acts = stack_transitions(other.trajectories)
        with torch.no_grad():
            predicted = policy._predict(torch.as_tensor(obs), deterministic=True).cpu().numpy()
        errors.append(int(np.sum(predicted != acts)))
        scored.append(len(acts))
    eps_hat = sum(errors) / sum(scored)
    return NoiseFit(eps_hat, fitted_noise(eps_hat, n_actions), folds, (errors[0], errors[1]), (scored[0], scored[1]))


@dataclasses.dataclass(frozen=True)
class DartData:
    """DART's training data at one budget."""

    demos: Demonstrations
    """All B labels: the clean ones first, then the noisy ones (labels always the expert's)."""
    fit: NoiseFit
    """The noise and the error it was fitted to."""
    n_clean: int
    """Clean labels (B//2)."""
    noisy_seeds: tuple[int, int]
    """First and last seed of the noisy episodes."""

    def record(self) -> dict[str, Any]:
        """Per clone, for tables: ``noise`` (p), ``eps_hat``, ``n_clean_labels``, ``n_noisy_labels``."""
        return {
            "noise": self.fit.noise,
            "eps_hat": self.fit.eps_hat,
            "n_clean_labels": self.n_clean,
            "n_noisy_labels": self.demos.n_transitions - self.n_clean,
        }


def n_discrete_actions(scenario: Scenario) -> int:
    """K, the scenario's number of discrete actions.

    Raises:
        TestbedError: a continuous action space.
    """
    from testbed.scenarios import describe_spaces

    space = describe_spaces(scenario)["action_space"]
    if space["type"] != "Discrete":
        raise TestbedError(f"DART with fitted noise needs discrete actions; {scenario.name} has {space['type']}")
    return int(space["n"])


def dart_demonstrations(
    scenario: Scenario,
    expert: str,
    clean: Demonstrations,
    budget: int,
    *,
    recipe: Recipe,
    pool: RolloutPool,
    seed_stop: int,
) -> DartData:
    """DART's B = ``budget`` labels (see the module docstring).

    Args:
        clean: clean expert demonstrations of consecutive seeds, holding at least B//2
            transitions; their first B//2 are DART's clean half.
        recipe: the BC recipe of the fold clones (the final clone's, at the fold's labels).
        pool: where the noisy episodes run.
        seed_stop: one past the last seed the noisy episodes may use (the seed block's end).

    Raises:
        TestbedError: too few clean episodes to cross-fit, continuous actions, or the noisy
            episodes needed seeds from ``seed_stop`` on.
    """
    from testbed.collect import collect_transitions

    n_clean = budget // 2
    head = clean.first_transitions(n_clean)
    fit = fit_noise(head, recipe, n_actions=n_discrete_actions(scenario))
    first = head.seeds[-1] + 1
    noisy = collect_transitions(scenario, expert, budget - n_clean, seed=first, pool=pool, noise=fit.noise)
    if noisy.seeds[-1] >= seed_stop:
        raise TestbedError(f"DART at {budget} labels needed seeds beyond {seed_stop - 1}, the end of its block")
    data = head.concatenate(noisy)
    noise = {
        "type": "DART with fitted noise (testbed.dart): uniform random applied action on the noisy episodes",
        "probability": fit.noise,
        "eps_hat": fit.eps_hat,
        "n_clean_transitions": n_clean,
        "first_noisy_seed": first,
    }
    data = dataclasses.replace(data, metadata=dataclasses.replace(data.metadata, noise=noise))
    return DartData(data, fit, n_clean, (noisy.seeds[0], noisy.seeds[-1]))
