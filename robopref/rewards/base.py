"""The reward-model contract: per-step rewards learned from preferences."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy.special import expit

from robopref.data import Episode, Preference, Segment, as_pool

Episodes = Mapping[str, Episode] | Sequence[Episode]


class RewardModel(ABC):
    """A model of per-step reward ``r(o_t, a_t)``, possibly an ensemble of ``M`` members.

    Shapes: observations ``(B, T, obs_dim)``, actions ``(B, T, act_dim)``. Rewards are
    unitless (only differences of segment sums are identified by preferences). Segments
    name episodes by stable id; ``episodes`` is a mapping id -> ``Episode`` (or a list of
    episodes that carry ids).

    ``save(path)`` writes the model (weights and config, with a format version);
    ``load(path, trainer)`` rebuilds it in another process.
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
    def fit(self, preferences: list[Preference], episodes: Episodes) -> dict[str, float]:
        """Train on (soft, weighted) preferences over segments of ``episodes``; return
        metrics. Each preference's ``target`` is the probability the model should give the
        first segment, its ``weight`` its share of the loss."""

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` atomically; returns ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path, trainer) -> RewardModel:
        """The model saved at ``path``; ``trainer`` trains it on further ``fit`` calls."""

    def step_rewards(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """Ensemble-mean per-step reward ``(B, T)``."""
        return self.member_rewards(obs, act).mean(0)

    def episode_rewards(self, episode: Episode) -> np.ndarray:
        """Per-frame reward ``(T,)`` for any episode, e.g. one read from a dataset."""
        return self.step_rewards(episode.observations[None], episode.actions[None])[0]

    def frame_rewards(self, dataset_root: str | Path, episode_index: int) -> np.ndarray:
        """Per-frame learned reward ``(T,)`` of episode ``episode_index`` of the
        LeRobotDataset at ``dataset_root``."""
        from robopref.data import load_episodes

        for episode in load_episodes(dataset_root):
            if episode.episode_index == episode_index:
                return self.episode_rewards(episode)
        raise IndexError(f"dataset {dataset_root} has no episode {episode_index}")

    def preference_probabilities(
        self, pairs: list[tuple[Segment, Segment]], episodes: Episodes
    ) -> np.ndarray:
        """Per-member Bradley–Terry ``P(first preferred)``, shape ``(M, B)``."""
        from robopref.data import segment_pair_arrays

        obs, act = segment_pair_arrays(pairs, as_pool(episodes))  # (B, 2, L, dim)
        b, _, length, _ = obs.shape
        rewards = self.member_rewards(
            obs.reshape(b * 2, length, -1), act.reshape(b * 2, length, -1)
        ).reshape(self.num_members, b, 2, length)
        returns = rewards.sum(-1)
        return expit(returns[..., 0] - returns[..., 1])
