"""Exploration noise around a policy (robopref.rollout.GaussianExploration)."""

from __future__ import annotations

import numpy as np
import pytest

from robopref.policies import Policy
from robopref.rollout import GaussianExploration


class Zero(Policy):
    def __init__(self, act_dim: int = 3):
        self.act_dim, self.episodes = act_dim, 0

    def begin_episodes(self, n: int) -> None:
        self.episodes += 1

    def act(self, obs):
        return np.zeros((len(obs), self.act_dim), np.float32)


def noise_trace(correlation: float, steps: int = 20000, std: float = 0.1) -> np.ndarray:
    explorer = GaussianExploration(Zero(), std, seed=3, low=-10, high=10, correlation=correlation)
    explorer.begin_episodes(2)
    return np.stack([explorer.act(np.zeros((2, 1))) for _ in range(steps)])  # (T, 2, 3)


def lag1(trace: np.ndarray) -> float:
    x = trace.reshape(len(trace), -1)
    return float(np.mean([np.corrcoef(x[:-1, j], x[1:, j])[0, 1] for j in range(x.shape[1])]))


@pytest.mark.parametrize("correlation", [0.0, 0.5, 0.9])
def test_noise_has_the_configured_std_and_step_correlation(correlation):
    trace = noise_trace(correlation)
    assert trace.std() == pytest.approx(0.1, rel=0.08)
    assert lag1(trace) == pytest.approx(correlation, abs=0.03)


def test_noise_restarts_with_each_batch_of_episodes():
    explorer = GaussianExploration(Zero(), 1.0, seed=0, low=-10, high=10, correlation=0.99)
    explorer.begin_episodes(1)
    last = [explorer.act(np.zeros((1, 1))) for _ in range(50)][-1]
    explorer.begin_episodes(1)
    first = explorer.act(np.zeros((1, 1)))
    # A fresh episode draws fresh noise, not 0.99 of the last episode's.
    assert not np.allclose(first, 0.99 * last, atol=0.3)
    assert explorer.policy.episodes == 2


def test_actions_are_clipped_and_correlation_validated():
    explorer = GaussianExploration(Zero(), 5.0, seed=0, correlation=0.5)
    explorer.begin_episodes(4)
    for _ in range(10):
        action = explorer.act(np.zeros((4, 1)))
        assert action.dtype == np.float32 and np.abs(action).max() <= 1.0
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="correlation"):
            GaussianExploration(Zero(), 0.1, correlation=bad)
