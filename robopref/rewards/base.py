"""The reward-model contract: per-step rewards learned from preferences."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from scipy.special import expit

from robopref.data import Episode, Preference, Segment


class RewardModel(ABC):
    """A model of per-step reward ``r(o_t, a_t)``, possibly an ensemble of ``M`` members.

    Shapes: observations ``(B, T, obs_dim)``, actions ``(B, T, act_dim)``. Rewards are
    unitless (only differences of segment sums are identified by preferences).
    """

    obs_dim: int
    act_dim: int

    @property
    def num_members(self) -> int:
        return 1

    @abstractmethod
    def member_rewards(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """Per-member per-step rewards ``(M, B, T)``."""

    @abstractmethod
    def fit(self, preferences: list[Preference], episodes: list[Episode]) -> dict[str, float]:
        """Train on labelled segment pairs (segments index into ``episodes``); return metrics."""

    def step_rewards(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """Ensemble-mean per-step reward ``(B, T)``."""
        return self.member_rewards(obs, act).mean(0)

    def episode_rewards(self, episode: Episode) -> np.ndarray:
        """Per-frame reward ``(T,)`` for any episode, e.g. one read from a dataset."""
        return self.step_rewards(episode.observations[None], episode.actions[None])[0]

    def preference_probabilities(
        self, pairs: list[tuple[Segment, Segment]], episodes: list[Episode]
    ) -> np.ndarray:
        """Per-member Bradley–Terry ``P(first preferred)``, shape ``(M, B)``."""
        from robopref.data import segment_pair_arrays

        obs, act = segment_pair_arrays(pairs, episodes)  # (B, 2, L, dim)
        b, _, length, _ = obs.shape
        rewards = self.member_rewards(
            obs.reshape(b * 2, length, -1), act.reshape(b * 2, length, -1)
        ).reshape(self.num_members, b, 2, length)
        returns = rewards.sum(-1)
        return expit(returns[..., 0] - returns[..., 1])
