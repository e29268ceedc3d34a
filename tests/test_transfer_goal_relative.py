"""The goal-relative segment representation: its shape and units, its sanity on segments that
reach or leave the goal, its refusal of observations without a goal, and transfer between two
tasks that are mirror images over one state space (drawer-open/drawer-close in miniature)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_episode, named

from robopref.data import Episode
from robopref.errors import ConfigError
from robopref.preferences import ScriptedTeacher, sample_pairs
from robopref.preferences.transfer import (
    DensePlan,
    SourceBank,
    SourceLabels,
    TransferConfig,
    TransferError,
    TransferSource,
    goal_distance_labels,
    goal_progress,
    intra_task_costs,
    orient_by_labels,
    orient_by_progress,
    transfer_labels,
)
from robopref.preferences.transfer.representations import (
    GOAL_RELATIVE_NAMES,
    euclidean_costs,
    goal_relative_features,
)

GOAL = np.array([0.0, 0.8, 0.1])


def segment(hand_path, object_path, goal=GOAL) -> np.ndarray:
    """``(L, 39)`` Meta-World-style observations: hand at [0:3], object at [4:7], goal at
    [36:39], the rest zero."""
    hand, obj = np.asarray(hand_path, float), np.asarray(object_path, float)
    obs = np.zeros((len(hand), 39))
    obs[:, 0:3], obs[:, 4:7], obs[:, 36:39] = hand, obj, goal
    return obs


def line(start, end, steps=11) -> np.ndarray:
    return np.linspace(np.asarray(start, float), np.asarray(end, float), steps)


def test_features_are_pooled_goal_distances_in_metres():
    # The object moves 0.3 m straight onto the goal; the hand holds it 0.05 m above.
    obj = line(GOAL + [0.3, 0, 0], GOAL)
    hand = obj + [0, 0, 0.05]
    features = goal_relative_features(np.stack([segment(hand, obj)]))
    assert features.shape == (1, 15) and features.dtype == np.float32
    assert len(GOAL_RELATIVE_NAMES) == 15
    value = dict(zip(GOAL_RELATIVE_NAMES, features[0], strict=True))
    assert value["object_goal_start"] == pytest.approx(0.3, abs=1e-6)
    assert value["object_goal_end"] == pytest.approx(0.0, abs=1e-6)
    assert value["object_goal_change"] == pytest.approx(-0.3, abs=1e-6)
    assert value["object_goal_min"] == pytest.approx(0.0, abs=1e-6)
    assert value["object_goal_mean"] == pytest.approx(0.15, abs=1e-6)
    assert value["hand_object_mean"] == pytest.approx(0.05, abs=1e-6)
    assert value["hand_goal_end"] == pytest.approx(0.05, abs=1e-6)
    assert value["hand_goal_start"] == pytest.approx(np.hypot(0.3, 0.05), abs=1e-6)


def test_features_are_not_standardised_within_the_set():
    """A segment's features do not depend on the other segments (metres, not z-scores), and a
    rigid motion of the whole scene (goal included) leaves them unchanged."""
    rng = np.random.default_rng(0)
    obs = np.stack([segment(line(GOAL + rng.normal(0, 0.2, 3), GOAL + rng.normal(0, 0.2, 3)),
                            line(GOAL + rng.normal(0, 0.2, 3), GOAL)) for _ in range(6)])
    alone = goal_relative_features(obs[:1])
    np.testing.assert_allclose(goal_relative_features(obs)[:1], alone, atol=1e-6)
    shifted = obs.copy()
    for part in (slice(0, 3), slice(4, 7), slice(36, 39)):
        shifted[..., part] += [0.1, -0.2, 0.05]
    np.testing.assert_allclose(goal_relative_features(shifted), goal_relative_features(obs),
                               atol=1e-6)


def test_a_segment_that_reaches_the_goal_is_nearer_another_that_does_than_one_moving_away():
    reach_a = segment(line(GOAL + [0.3, 0.0, 0.1], GOAL), line(GOAL + [0.2, 0, 0], GOAL))
    # Another task's geometry: approaches from the other side, over another distance.
    reach_b = segment(line(GOAL + [-0.1, -0.25, 0.1], GOAL), line(GOAL + [0, -0.25, 0], GOAL))
    # Starts where reach_a starts and moves away from the goal.
    away = segment(line(GOAL + [0.3, 0.0, 0.1], GOAL + [0.5, 0.0, 0.1]),
                   line(GOAL + [0.2, 0, 0], GOAL + [0.4, 0, 0]))
    costs = euclidean_costs(goal_relative_features(np.stack([reach_a, reach_b, away])))
    assert costs[0, 1] < costs[0, 2]
    assert costs[1, 0] < costs[1, 2]


def test_observations_without_a_goal_are_refused_with_one_line():
    with pytest.raises(TransferError, match="39-d observations.*use representation=pooled"):
        goal_relative_features(np.zeros((2, 5, 12)))
    hidden = np.stack([segment(line(GOAL, GOAL + 0.1), line(GOAL, GOAL), goal=np.zeros(3))])
    with pytest.raises(TransferError, match="obs\\[36:39\\] is zero.*make the goal observable"):
        goal_relative_features(hidden)
    with pytest.raises(TransferError, match="39-d"):
        intra_task_costs("goal_relative", np.zeros((3, 5, 7)), np.zeros((3, 5, 2)), "target")
    for bad in (np.zeros((2, 5, 12)), hidden):
        with pytest.raises(TransferError) as raised:
            goal_relative_features(bad)
        assert "\n" not in str(raised.value)


def drawer_episodes(goal_y: float, count: int, seed: int, dataset_id: str) -> list:
    """A one-axis drawer whose handle moves in y between 0.5 and 0.7 (the same states in both
    tasks); the goal is at ``goal_y`` and the reward is 10 minus 30 x the handle's distance to
    it. With the goal at either end, the two tasks are mirror images over one state space."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(count):
        y = np.clip(rng.uniform(0.5, 0.7) + np.cumsum(rng.normal(0, 0.004, 40))
                    + rng.uniform(-0.004, 0.004) * np.arange(40), 0.5, 0.7)
        obj = np.stack([np.zeros(40), y, np.full(40, 0.1)], 1)
        hand = obj + [0.0, 0.0, 0.05]
        obs = segment(hand, obj, goal=[0.0, goal_y, 0.1])
        reward = 10.0 - 30.0 * np.abs(y - goal_y)
        episodes.append(Episode(obs.astype(np.float32), rng.normal(size=(40, 4)),
                                reward.astype(np.float32), np.zeros(40, bool)))
    return named(*episodes, dataset_id=dataset_id)


def mirrored_transfer_accuracy(representation: str, solver: str) -> float:
    source = drawer_episodes(0.5, 30, 0, "open")
    pairs = sample_pairs(source, 10, 600, np.random.default_rng(0))
    bank = SourceBank([p for p in ScriptedTeacher().label(pairs, source) if p is not None],
                      source, max_nodes=200)
    target = drawer_episodes(0.7, 30, 1, "close")
    queries = sample_pairs(target, 10, 300, np.random.default_rng(1))
    config = TransferConfig(representation=representation, target_nodes=200,
                            gw={"solver": solver, "epsilon": 0.01, "alpha": 0.5,
                                "sinkhorn_iter": 200})
    z = TransferSource(config, bank=bank).soft_labels(queries, target)
    truth = np.array([a.rewards(target).sum() - b.rewards(target).sum() for a, b in queries])
    decided = truth != 0
    return float(np.mean((z[decided] > 0.5) == (truth[decided] > 0)))


def test_goal_relative_fused_gw_transfers_between_mirror_image_tasks():
    """Over raw state the cross-task cost pulls the open drawer onto the open drawer, which is
    good in one task and bad in the other; over goal-relative features it pulls "near the
    goal" onto "near the goal"."""
    assert mirrored_transfer_accuracy("pooled", "entropic_fused") < 0.3
    assert mirrored_transfer_accuracy("goal_relative", "entropic_fused") > 0.9


def test_the_transfer_source_refuses_goal_relative_on_other_observations():
    source = drawer_episodes(0.5, 6, 0, "open")
    pairs = sample_pairs(source, 10, 40, np.random.default_rng(0))
    bank = SourceBank([p for p in ScriptedTeacher().label(pairs, source) if p is not None],
                      source)
    target = named(*[make_episode(40, obs_dim=6, act_dim=4, seed=s) for s in range(4)])
    config = TransferConfig(representation="goal_relative", target_nodes=20)
    with pytest.raises(TransferError, match="goal_relative reads Meta-World"):
        TransferSource(config, bank=bank).label(
            sample_pairs(target, 10, 5, np.random.default_rng(0)), target)


# --- orientation: the plan or its mirror -------------------------------------------------


def approach(distance: float) -> np.ndarray:
    """``(L, 39)``: hand and object held ``distance`` m from the goal for the segment."""
    obj = np.repeat((GOAL + [distance, 0, 0])[None], 11, 0)
    return segment(obj, obj)


def test_goal_progress_and_the_heuristic_prefer_the_segment_nearer_the_goal():
    obs = np.stack([approach(0.3), approach(0.1), approach(0.1)])
    np.testing.assert_allclose(goal_progress(obs), [0.6, 0.2, 0.2], atol=1e-6)  # 2 x distance
    episodes = named(*[Episode(o.astype(np.float32), np.zeros((11, 4)), np.zeros(11),
                               np.zeros(11, bool)) for o in obs])
    from robopref.data import Segment

    first, second, third = (Segment(e.id, 0, 11) for e in episodes)
    z = goal_distance_labels([(first, second), (second, first), (second, third)], episodes)
    np.testing.assert_array_equal(z, [0.0, 1.0, 0.5])


def test_progress_orientation_flips_a_plan_read_backwards_and_keeps_one_read_right():
    """Source node k is better than node l when k > l; target node i sits nearer its goal the
    larger i is. The identity plan reads the target right, the anti-diagonal (the mirror,
    which GW cannot tell apart) backwards; progress tells them apart without target labels."""
    n = 20
    first, second = np.triu_indices(n, 1)
    labels = SourceLabels(n, second, first, np.ones(len(first)), np.ones(len(first)))
    target = np.stack([approach(0.4 - 0.02 * i) for i in range(n)])
    truth = (second > first).astype(float)  # target pair (second, first): second is nearer
    for plan, flip in ((np.eye(n) / n, False), (np.eye(n)[::-1] / n, True)):
        choice = orient_by_progress(DensePlan(plan), labels, target,
                                    np.random.default_rng(0), pairs=200)
        assert choice["flip"] is flip
        z = transfer_labels(DensePlan(plan), labels, second, first)
        z = 1 - z if choice["flip"] else z
        assert np.mean((z > 0.5) == (truth > 0.5)) == 1.0


def test_orientation_by_a_few_target_labels():
    z = np.array([0.9, 0.8, 0.3, 0.7])
    assert orient_by_labels(z, np.array([0.0, 0.0, 1.0, 0.5]))["flip"] is True
    kept = orient_by_labels(z, np.array([1.0, 1.0, 0.0, 0.0]))
    assert kept["flip"] is False and kept["agreement"] == pytest.approx(0.75)


def test_progress_orientation_needs_goal_carrying_observations():
    with pytest.raises(ConfigError, match="unknown transfer orient"):
        TransferConfig(orient="sideways")
    source = drawer_episodes(0.5, 6, 0, "open")
    pairs = sample_pairs(source, 10, 40, np.random.default_rng(0))
    bank = SourceBank([p for p in ScriptedTeacher().label(pairs, source) if p is not None],
                      source)
    target = named(*[make_episode(40, obs_dim=6, act_dim=4, seed=s) for s in range(4)])
    config = TransferConfig(orient="progress", target_nodes=20,  # pooled features: fine
                            gw={"epsilon": 0.05, "sinkhorn_iter": 200})
    with pytest.raises(TransferError, match="orient=progress reads.*use orient=none"):
        TransferSource(config, bank=bank).label(
            sample_pairs(target, 10, 5, np.random.default_rng(0)), target)
    # On goal-carrying observations it runs and says which way it read the plan.
    mirrored = drawer_episodes(0.7, 8, 1, "close")
    source = TransferSource(config, bank=bank)
    source.label(sample_pairs(mirrored, 10, 5, np.random.default_rng(0)), mirrored)
    assert isinstance(source.last["orientation"]["flip"], bool)
