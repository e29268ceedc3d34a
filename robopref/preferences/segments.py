"""Cutting episodes into fixed-length segments and pairing them up as candidate queries."""

from __future__ import annotations

import numpy as np

from robopref.data import Episode, Segment


def sample_segments(
    episodes: list[Episode],
    length: int,
    count: int,
    rng: np.random.Generator,
    episode_indices: list[int] | None = None,
) -> list[Segment]:
    """``count`` segments of ``length`` steps, episodes and start steps drawn uniformly.

    ``episode_indices`` restricts the episodes drawn from (default: all). Episodes shorter
    than ``length`` are never drawn.
    """
    pool = list(range(len(episodes))) if episode_indices is None else list(episode_indices)
    pool = [i for i in pool if len(episodes[i]) >= length]
    if not pool:
        raise ValueError(
            f"no episode has >= {length} steps: shorten the segment length or record longer "
            "episodes"
        )
    chosen = rng.choice(pool, size=count)
    starts = [int(rng.integers(0, len(episodes[i]) - length + 1)) for i in chosen]
    return [Segment(int(i), s, s + length) for i, s in zip(chosen, starts, strict=True)]


def sample_pairs(
    episodes: list[Episode],
    length: int,
    count: int,
    rng: np.random.Generator,
    episode_indices: list[int] | None = None,
) -> list[tuple[Segment, Segment]]:
    """``count`` candidate pairs of independently drawn segments."""
    segs = sample_segments(episodes, length, 2 * count, rng, episode_indices)
    return list(zip(segs[::2], segs[1::2], strict=True))
