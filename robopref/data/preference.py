"""Segments of episodes and preferences between two segments."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from robopref.data.episode import Episode


class Label(StrEnum):
    """Which segment of a pair is preferred. Skipped queries carry no label at all."""

    FIRST = "first"
    SECOND = "second"
    EQUAL = "equal"

    @property
    def target(self) -> float:
        """Probability that the first segment is preferred, the Bradley–Terry target."""
        return {Label.FIRST: 1.0, Label.SECOND: 0.0, Label.EQUAL: 0.5}[self]


@dataclass(frozen=True)
class Segment:
    """Steps ``[start, end)`` of episode ``episode_index`` in some episode list."""

    episode_index: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"segment needs 0 <= start < end, got [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start

    def observations(self, episodes: list[Episode]) -> np.ndarray:
        """``(L, obs_dim)``"""
        return episodes[self.episode_index].observations[self.start : self.end]

    def actions(self, episodes: list[Episode]) -> np.ndarray:
        """``(L, act_dim)``"""
        return episodes[self.episode_index].actions[self.start : self.end]

    def rewards(self, episodes: list[Episode]) -> np.ndarray:
        """``(L,)`` ground-truth rewards."""
        return episodes[self.episode_index].rewards[self.start : self.end]


@dataclass(frozen=True)
class Preference:
    """A judgement between two segments.

    ``confidence`` in [0, 1]: 1 for a sure answer; soft sources (e.g. transferred labels)
    report less.
    """

    first: Segment
    second: Segment
    label: Label
    source: str = "unknown"
    annotator: str = ""
    confidence: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"preference confidence must lie in [0, 1], got {self.confidence}")
        if len(self.first) != len(self.second):
            raise ValueError(
                f"segments of a pair must have equal length, got {len(self.first)} "
                f"and {len(self.second)}"
            )


def segment_pair_arrays(
    pairs: list[tuple[Segment, Segment]], episodes: list[Episode]
) -> tuple[np.ndarray, np.ndarray]:
    """Gather a batch of pairs into ``obs (B, 2, L, obs_dim)`` and ``act (B, 2, L, act_dim)``."""
    obs = np.stack(
        [np.stack([a.observations(episodes), b.observations(episodes)]) for a, b in pairs]
    )
    act = np.stack([np.stack([a.actions(episodes), b.actions(episodes)]) for a, b in pairs])
    return obs, act


def preference_targets(preferences: list[Preference]) -> np.ndarray:
    """``(B,)`` float32 probability that the first segment is preferred."""
    return np.array([p.label.target for p in preferences], dtype=np.float32)
