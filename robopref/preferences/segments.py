"""Cutting episodes into fixed-length segments and pairing them up as candidate queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from robopref.data import Episode, Segment, as_pool


def sample_segments(
    episodes: Mapping[str, Episode] | Sequence[Episode],
    length: int,
    count: int,
    rng: np.random.Generator,
    episode_ids: list[str] | None = None,
) -> list[Segment]:
    """``count`` segments of ``length`` steps, episodes and start steps drawn uniformly.

    ``episode_ids`` restricts the episodes drawn from (default: all). Episodes shorter
    than ``length`` are never drawn.
    """
    pool = as_pool(episodes)
    ids = list(pool) if episode_ids is None else list(episode_ids)
    ids = [i for i in ids if len(pool[i]) >= length]
    if not ids:
        raise ValueError(
            f"no episode has >= {length} steps: shorten the segment length or record longer "
            "episodes"
        )
    chosen = rng.integers(0, len(ids), size=count)
    segments = []
    for c in chosen:
        start = int(rng.integers(0, len(pool[ids[c]]) - length + 1))
        segments.append(Segment(ids[c], start, start + length))
    return segments


def sample_pairs(
    episodes: Mapping[str, Episode] | Sequence[Episode],
    length: int,
    count: int,
    rng: np.random.Generator,
    episode_ids: list[str] | None = None,
) -> list[tuple[Segment, Segment]]:
    """``count`` candidate pairs of independently drawn segments."""
    segs = sample_segments(episodes, length, 2 * count, rng, episode_ids)
    return list(zip(segs[::2], segs[1::2], strict=True))
