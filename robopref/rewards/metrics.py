"""How well a reward model orders segments, judged against ground-truth returns."""

from __future__ import annotations

import numpy as np

from robopref.data import Segment, as_pool
from robopref.rewards.base import RewardModel


def preference_accuracy(
    model: RewardModel, pairs: list[tuple[Segment, Segment]], episodes
) -> float:
    """Fraction of pairs whose predicted order (ensemble mean) matches the true-return order.

    Pairs whose true returns tie are left out. NaN when no pair remains.
    """
    episodes = as_pool(episodes)
    true = np.array(
        [a.rewards(episodes).sum() - b.rewards(episodes).sum() for a, b in pairs], dtype=np.float64
    )
    prob = model.preference_probabilities(pairs, episodes).mean(0)
    keep = true != 0
    if not keep.any():
        return float("nan")
    return float(np.mean((prob[keep] > 0.5) == (true[keep] > 0)))
