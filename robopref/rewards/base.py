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

    Two optional extensions, both off by default:

    - ``metric_names``: a model that also reads the task's per-step metrics (``Episode.metrics``,
      e.g. a composite reward over Peel-v0's removed fraction and force) names them here; it
      then receives ``metrics (B, T, K)`` as ``member_rewards(obs, act, metrics=...)``, and the
      methods below pass each episode's columns of those names. Models that name none are
      never given the argument.
    - ``uses_scores``: a model that also learns from whole-episode 0-9 scores
      (``robopref.data.Score``) accepts ``fit(preferences, episodes, scores=[...])``.
    """

    obs_dim: int
    act_dim: int
    metric_names: tuple[str, ...] = ()
    uses_scores: bool = False

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

    def rewards_of(self, obs: np.ndarray, act: np.ndarray, metrics=None) -> np.ndarray:
        """``member_rewards`` ``(M, B, T)``, handing ``metrics (B, T, K)`` on only to a model
        that reads metrics (``metric_names``)."""
        if self.metric_names:
            return self.member_rewards(obs, act, metrics=metrics)
        return self.member_rewards(obs, act)

    def step_rewards(self, obs: np.ndarray, act: np.ndarray, metrics=None) -> np.ndarray:
        """Ensemble-mean per-step reward ``(B, T)``."""
        return self.rewards_of(obs, act, metrics).mean(0)

    def episode_rewards(self, episode: Episode) -> np.ndarray:
        """Per-frame reward ``(T,)`` for any episode, e.g. one read from a dataset."""
        metrics = None
        if self.metric_names:
            metrics = episode.metric_columns(self.metric_names)[None]
        return self.step_rewards(episode.observations[None], episode.actions[None], metrics)[0]

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
        from robopref.data import segment_pair_arrays, segment_pair_metrics

        pool = as_pool(episodes)
        obs, act = segment_pair_arrays(pairs, pool)  # (B, 2, L, dim)
        b, _, length, _ = obs.shape
        metrics = None
        if self.metric_names:
            metrics = segment_pair_metrics(pairs, pool, self.metric_names)
            metrics = metrics.reshape(b * 2, length, -1)
        rewards = self.rewards_of(
            obs.reshape(b * 2, length, -1), act.reshape(b * 2, length, -1), metrics
        ).reshape(self.num_members, b, 2, length)
        returns = rewards.sum(-1)
        return expit(returns[..., 0] - returns[..., 1])
