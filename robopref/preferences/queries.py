"""Query selection: which candidate pairs to ask a labeller about.

``uniform`` picks at random; ``disagreement`` picks the pairs on which ensemble members'
``P(first preferred)`` varies most (std over members); ``entropy`` picks the pairs whose
ensemble-mean ``P`` is closest to 0.5 (highest Bernoulli entropy).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from robopref.data import Episode, Segment
from robopref.registry import Registry
from robopref.rewards import RewardModel


class QuerySelector(ABC):
    @abstractmethod
    def select(
        self,
        pairs: list[tuple[Segment, Segment]],
        episodes: list[Episode],
        reward_model: RewardModel | None,
        count: int,
        rng: np.random.Generator,
    ) -> list[int]:
        """Indices (into ``pairs``) of ``min(count, len(pairs))`` distinct queries."""


@dataclass
class UniformConfig:
    pass


class UniformSelector(QuerySelector):
    def __init__(self, config: UniformConfig | None = None):
        self.config = config or UniformConfig()

    def select(self, pairs, episodes, reward_model, count, rng):
        return sorted(rng.choice(len(pairs), size=min(count, len(pairs)), replace=False).tolist())


class _ScoredSelector(QuerySelector):
    """Top-``count`` pairs by a score of the members' ``P(first)``; uniform before any fit."""

    def score(self, probs: np.ndarray) -> np.ndarray:  # (M, B) -> (B,)
        raise NotImplementedError

    def select(self, pairs, episodes, reward_model, count, rng):
        count = min(count, len(pairs))
        if count == 0:
            return []
        if reward_model is None:
            return UniformSelector().select(pairs, episodes, None, count, rng)
        scores = self.score(reward_model.preference_probabilities(pairs, episodes))
        # Random tie-break so equal scores (e.g. an untrained model) do not pick by position.
        order = np.lexsort((rng.random(len(pairs)), -scores))
        return sorted(order[:count].tolist())


@dataclass
class DisagreementConfig:
    pass


class DisagreementSelector(_ScoredSelector):
    def __init__(self, config: DisagreementConfig | None = None):
        self.config = config or DisagreementConfig()

    def score(self, probs):
        return probs.std(0)


@dataclass
class EntropyConfig:
    pass


class EntropySelector(_ScoredSelector):
    def __init__(self, config: EntropyConfig | None = None):
        self.config = config or EntropyConfig()

    def score(self, probs):
        p = np.clip(probs.mean(0), 1e-6, 1 - 1e-6)
        return -(p * np.log(p) + (1 - p) * np.log(1 - p))


QUERY_SELECTORS = Registry(
    "query selector",
    {
        "uniform": (f"{__name__}:UniformConfig", f"{__name__}:UniformSelector"),
        "disagreement": (f"{__name__}:DisagreementConfig", f"{__name__}:DisagreementSelector"),
        "entropy": (f"{__name__}:EntropyConfig", f"{__name__}:EntropySelector"),
    },
)
