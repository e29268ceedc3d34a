"""Which way round a plan is read: choosing between transferred labels and their mirror.

Gromov-Wasserstein sees distances inside each task only, so a target set and its mirror image
(good and bad swapped along the same geometry) are one problem to it, and the plan can come
out read backwards (docs/transfer.md, "Which way round"). Flipping every transferred label,
``z -> 1 - z``, is the mirror plan's answer. One bit decides between the two:

- ``progress`` (zero-shot, no target labels): the orientation whose labels agree more often
  with goal progress on pairs of target nodes, i.e. prefer the segment whose hand and object
  are nearer the goal on average (``goal_progress``). Needs Meta-World-style observations that
  carry the goal. Progress only picks the orientation; the ranking itself is the plan's.
- ``orient_by_labels`` (few-shot): the orientation that agrees more often with a handful of
  target labels; reported apart from the zero-shot scores, as it asks someone.
"""

from __future__ import annotations

import numpy as np

from robopref.preferences.transfer.label_transfer import SourceLabels, transfer_labels
from robopref.preferences.transfer.representations import goal_distances

ORIENTATIONS = ("none", "progress")


def goal_progress(obs: np.ndarray) -> np.ndarray:
    """``(N, L, 39)`` Meta-World observations -> ``(N,)`` metres: the segment's mean of
    hand-goal plus object-goal distance (lower: further along)."""
    return goal_distances(obs, needed_by="transfer.orient=progress", instead="orient=none")[
        ..., :2].sum(-1).mean(1)


def agreement(z: np.ndarray, first_better: np.ndarray) -> float:
    """Fraction of answered pairs (finite ``z``, not 0.5) whose label ``z (B,)`` prefers the
    same segment as ``first_better (B,)`` (bool); NaN when no pair is answered."""
    z = np.asarray(z, dtype=np.float64)
    answered = np.isfinite(z) & (z != 0.5)
    if not answered.any():
        return float("nan")
    return float(np.mean((z[answered] > 0.5) == np.asarray(first_better)[answered]))


def goal_distance_labels(pairs, episodes) -> np.ndarray:
    """The goal-distance heuristic, no source labels: ``(B,)`` 1 where the first segment of a
    pair has the lower ``goal_progress``, 0 where the second has, 0.5 on ties. A baseline
    for transfer on Meta-World, whose dense rewards grow as hand and object near the goal."""
    from robopref.data import as_pool

    pool = as_pool(episodes)
    first = goal_progress(np.stack([a.observations(pool) for a, _ in pairs]))
    second = goal_progress(np.stack([b.observations(pool) for _, b in pairs]))
    return np.where(first < second, 1.0, np.where(first > second, 0.0, 0.5))


def orient_by_progress(plan, labels: SourceLabels, target_obs: np.ndarray,
                       rng: np.random.Generator, pairs: int = 2000) -> dict:
    """Whether to flip the labels moved along ``plan``: transfers labels to ``pairs`` random
    pairs of the plan's target nodes (``target_obs (n_t, L, 39)``) and compares them with
    goal progress. Returns ``{"flip": bool, "agreement": float}`` (agreement of the unflipped
    labels; NaN leaves them as they are)."""
    progress = goal_progress(target_obs)
    n = len(progress)
    first = rng.integers(0, n, pairs)
    second = (first + rng.integers(1, n, pairs)) % n
    z = transfer_labels(plan, labels, first, second)
    decided = progress[first] != progress[second]
    share = agreement(z[decided], progress[first][decided] < progress[second][decided])
    return {"flip": bool(share < 0.5), "agreement": share}


def orient_by_labels(z: np.ndarray, truth: np.ndarray) -> dict:
    """Few-shot orientation from target labels: ``z (B,)`` transferred and ``truth (B,)``
    (1 first preferred, 0 second, 0.5 tie, left out) on the same pairs. Returns
    ``{"flip": bool, "agreement": float}``."""
    truth = np.asarray(truth, dtype=np.float64)
    decided = truth != 0.5
    share = agreement(np.asarray(z)[decided], truth[decided] > 0.5)
    return {"flip": bool(share < 0.5), "agreement": share}
