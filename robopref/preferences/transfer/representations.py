"""Segment representations and the distance matrices inside one task that GW compares.

Transfer runs over **segments** (fixed-length windows of episodes, the units the loop asks
about), not whole trajectories: each node of a plan is one segment. Gromov-Wasserstein needs
only distances *inside* each task, so the source and target may have different observation
spaces; a cross-task cost (fused GW, the learned representation) needs matching ones.

Representations of a set of ``N`` segments with observations ``(N, L, obs_dim)``:

- ``pooled``: the time-mean of the observation and its change over the segment (last minus
  first), ``(N, 2 * obs_dim)``, standardised per dimension within the set; Euclidean distance.
- ``dtw``: dynamic time warping between the standardised observation sequences, resampled to
  ``dtw_points`` steps (O(N^2 dtw_points^2), vectorised over all pairs).
- ``learned``: the time-mean of a reward model's last hidden layer (``hidden_features``) on
  ``(o_t, a_t)``, standardised; Euclidean. With the *source* task's model this applies to the
  target only when observation and action spaces match.
- ``goal_relative``: progress towards the goal, the same quantity in every task: per step the
  distances hand-goal, object-goal and hand-object (m), each pooled over the segment (start,
  end, change, min, mean), ``(N, 15)`` in metres, *not* standardised, so two tasks' features are
  comparable and fused GW's cross-task cost means "as far from its goal". Needs Meta-World's
  goal-carrying 39-d observations (see ``goal_relative_features``).

Every cost matrix is divided by its largest entry, so solver settings (entropic epsilon) mean
the same on every task.
"""

from __future__ import annotations

import numpy as np
import torch

from robopref.errors import ConfigError, RobopError

REPRESENTATIONS = ("pooled", "dtw", "learned", "goal_relative")
# Representations whose features are in physical units shared by every task: fused GW compares
# them across tasks as they are instead of standardising them over both sets.
UNIT_REPRESENTATIONS = ("goal_relative",)


class TransferError(RobopError):
    """Transfer cannot go on with these inputs (one line naming the fix)."""


def standardise(features: np.ndarray) -> np.ndarray:
    """Per-dimension z-score of ``(N, D)`` features within the set; constant dimensions
    become 0."""
    features = np.asarray(features, dtype=np.float64)
    std = features.std(0)
    return ((features - features.mean(0)) / np.where(std > 1e-8, std, 1.0)).astype(np.float32)


def pooled_features(obs: np.ndarray) -> np.ndarray:
    """``(N, L, obs_dim)`` -> ``(N, 2 * obs_dim)``: time-mean and last-minus-first, standardised."""
    obs = np.asarray(obs, dtype=np.float32)
    return standardise(np.concatenate([obs.mean(1), obs[:, -1] - obs[:, 0]], axis=1))


# Meta-World v3 observation (``SawyerXYZEnv._get_obs``): hand xyz [0:3], gripper opening [3],
# first object xyz [4:7] and quaternion [7:11], a second object [11:18], the previous frame's
# 18 numbers [18:36], the goal xyz [36:39] (zeros when the env is partially observable).
METAWORLD_OBS_DIM = 39
HAND, OBJECT, GOAL = slice(0, 3), slice(4, 7), slice(36, 39)
GOAL_RELATIVE_NAMES = tuple(
    f"{d}_{stat}" for d in ("hand_goal", "object_goal", "hand_object")
    for stat in ("start", "end", "change", "min", "mean")
)


def goal_distances(obs: np.ndarray, needed_by: str = "representation=goal_relative",
                   instead: str = "representation=pooled") -> np.ndarray:
    """Per-step distances ``(N, L, 3)`` in metres of ``(N, L, 39)`` Meta-World observations:
    hand-goal, object-goal, hand-object.

    Refuses observations that are not Meta-World's 39-d layout, and ones whose goal entries
    are all zero (a partially observable env hides the goal), with one line naming the fix
    (``needed_by`` says which setting asked, ``instead`` what to use).
    """
    obs = np.asarray(obs, dtype=np.float64)
    if obs.ndim != 3 or obs.shape[-1] != METAWORLD_OBS_DIM:
        raise TransferError(
            f"{needed_by} reads Meta-World's 39-d observations (hand 0:3, object 4:7, goal "
            f"36:39), these have shape {obs.shape}: use {instead}"
        )
    if obs.size and not np.abs(obs[..., GOAL]).any():
        raise TransferError(
            f"{needed_by} needs the goal in the observation, but obs[36:39] is zero "
            "throughout (a partially observable Meta-World env): make the goal observable or "
            f"use {instead}"
        )
    hand, obj, goal = obs[..., HAND], obs[..., OBJECT], obs[..., GOAL]
    return np.stack([np.linalg.norm(hand - goal, axis=-1), np.linalg.norm(obj - goal, axis=-1),
                     np.linalg.norm(hand - obj, axis=-1)], axis=-1)


def goal_relative_features(obs: np.ndarray) -> np.ndarray:
    """``(N, L, 39)`` -> ``(N, 15)`` metres: for hand-goal, object-goal and hand-object
    distance (in that order), the segment's start, end, change (end - start), min and mean
    (``GOAL_RELATIVE_NAMES``). Not standardised: a centimetre means the same in every task."""
    d = goal_distances(obs)
    stats = [d[:, 0], d[:, -1], d[:, -1] - d[:, 0], d.min(1), d.mean(1)]  # each (N, 3)
    return np.stack(stats, axis=2).reshape(len(d), -1).astype(np.float32)


def learned_features(model, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Time-pooled hidden features of reward ``model`` (``hidden_features(obs, act)`` ->
    ``(N, L, H)``), standardised: ``(N, H)``."""
    if not hasattr(model, "hidden_features"):
        raise ConfigError(
            f"representation=learned needs a reward model with hidden_features; "
            f"{type(model).__name__} has none: use representation=pooled"
        )
    if obs.shape[-1] != model.obs_dim or act.shape[-1] != model.act_dim:
        raise TransferError(
            f"the reward model takes obs/act dims {model.obs_dim}/{model.act_dim}, these segments "
            f"have {obs.shape[-1]}/{act.shape[-1]}: a source model's features apply only when "
            "observation spaces match; use representation=pooled or dtw"
        )
    return standardise(model.hidden_features(obs, act).mean(1))


def euclidean_costs(features: np.ndarray) -> np.ndarray:
    """Pairwise Euclidean distances ``(N, N)`` of ``(N, D)`` features (float32)."""
    f = torch.as_tensor(np.asarray(features, dtype=np.float32))
    return torch.cdist(f, f).numpy()


def cross_costs(source_features: np.ndarray, target_features: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(n_s, n_t)`` between two tasks' features of one size, divided by
    the largest (fused GW's cross-task term)."""
    costs = torch.cdist(
        torch.as_tensor(np.asarray(source_features, dtype=np.float32)),
        torch.as_tensor(np.asarray(target_features, dtype=np.float32)),
    ).numpy()
    top = float(costs.max())
    return costs / top if top > 0 else costs


def dtw_costs(obs: np.ndarray, points: int = 10) -> np.ndarray:
    """DTW distance between every pair of ``(N, L, obs_dim)`` sequences, each resampled to
    ``points`` steps after standardising every observation dimension over the set: ``(N, N)``."""
    obs = np.asarray(obs, dtype=np.float32)
    n, length, dim = obs.shape
    index = np.linspace(0, length - 1, min(points, length)).round().astype(int)
    seq = standardise(obs.reshape(n * length, dim)).reshape(n, length, dim)[:, index]
    s = torch.as_tensor(seq)
    m = len(index)
    # Local cost between step a of segment i and step b of segment j: (m, m, N, N).
    local = torch.stack(
        [torch.stack([torch.cdist(s[:, a], s[:, b]) for b in range(m)]) for a in range(m)]
    )
    acc = torch.full((m + 1, m + 1, n, n), float("inf"))
    acc[0, 0] = 0.0
    for a in range(1, m + 1):
        for b in range(1, m + 1):
            best = torch.minimum(torch.minimum(acc[a - 1, b], acc[a, b - 1]), acc[a - 1, b - 1])
            acc[a, b] = local[a - 1, b - 1] + best
    costs = acc[m, m]
    return (0.5 * (costs + costs.T)).numpy()


def normalised(costs: np.ndarray, what: str) -> np.ndarray:
    """``costs`` divided by its largest entry, after checking it is a finite square matrix."""
    costs = np.asarray(costs, dtype=np.float32)
    if costs.ndim != 2 or costs.shape[0] != costs.shape[1]:
        raise TransferError(f"{what} distance matrix must be square, got shape {costs.shape}")
    if not np.isfinite(costs).all():
        raise TransferError(
            f"{what} distance matrix has NaN or inf entries: check the segments' observations "
            "(non-finite sensor values) or use representation=pooled"
        )
    top = float(costs.max())
    return costs / top if top > 0 else costs


def segment_features(representation: str, obs: np.ndarray, act: np.ndarray, what: str,
                     model=None) -> np.ndarray:
    """The ``(N, D)`` features of one task's segments, without their ``(N, N)`` costs (the
    feature solvers, ``lowrank`` and ``anchors``, need no more)."""
    if len(obs) == 0:
        raise TransferError(f"the {what} set has no segments: roll out episodes on it first")
    if representation == "dtw":
        raise TransferError(
            "representation=dtw has no features for solver=lowrank or anchors: use "
            "representation=pooled or learned, or solver=entropic"
        )
    if representation == "pooled":
        features = pooled_features(obs)
    elif representation == "goal_relative":
        features = goal_relative_features(obs)
    else:
        features = learned_features(model, obs, act)
    if not np.isfinite(features).all():
        raise TransferError(
            f"the {what} features have NaN or inf entries: check the segments' observations "
            "(non-finite sensor values)"
        )
    return features


def intra_task_costs(
    representation: str,
    obs: np.ndarray,
    act: np.ndarray,
    what: str,
    dtw_points: int = 10,
    model=None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The normalised ``(N, N)`` cost matrix of one task's segments and the features it came
    from (``None`` for DTW, which has none)."""
    if len(obs) == 0:
        raise TransferError(f"the {what} set has no segments: roll out episodes on it first")
    if representation == "pooled":
        features = pooled_features(obs)
        return normalised(euclidean_costs(features), what), features
    if representation == "learned":
        features = learned_features(model, obs, act)
        return normalised(euclidean_costs(features), what), features
    if representation == "goal_relative":
        features = goal_relative_features(obs)
        return normalised(euclidean_costs(features), what), features
    if representation == "dtw":
        return normalised(dtw_costs(obs, dtw_points), what), None
    raise ConfigError(
        f"unknown transfer representation '{representation}': use one of {list(REPRESENTATIONS)}"
    )
