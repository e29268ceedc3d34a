"""Pieces of the preference loop that run without a simulator."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_episodes

from robopref.errors import ConfigError
from robopref.loop import LoopConfig, select_by_learned_return
from robopref.rewards import RewardModel


class FirstObsReward(RewardModel):
    """Reward = first observation coordinate: known returns for selection tests."""

    obs_dim, act_dim = 5, 2

    def member_rewards(self, obs, act):
        return np.asarray(obs, dtype=np.float64)[None, ..., 0]

    def fit(self, preferences, episodes):
        return {}


def shifted(episodes, offset):
    for e in episodes:
        e.observations[:, 0] = offset
    return episodes


def test_selection_picks_highest_mean_learned_return():
    candidates = [
        shifted(make_episodes(3, T=4, seed=1), 0.0),
        shifted(make_episodes(3, T=4, seed=2), 2.0),
        shifted(make_episodes(3, T=4, seed=3), 1.0),
    ]
    best, scores = select_by_learned_return(candidates, FirstObsReward())
    assert best == 1
    assert scores == pytest.approx([0.0, 8.0, 4.0])


def test_selection_ties_go_to_the_earliest_candidate():
    candidates = [shifted(make_episodes(2, T=3, seed=s), 1.0) for s in range(3)]
    assert select_by_learned_return(candidates, FirstObsReward())[0] == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"rounds": 0}, {"segment_length": 0}, {"exploration_std": -0.1},
     {"validation_episodes": -1}, {"refine_from": "sideways"},
     {"exploration_correlation": 1.0}, {"exploration_correlation": -0.5},
     {"average_last": -1}, {"average_last": 2, "validation_episodes": 5}],
)
def test_loop_config_validation(kwargs):
    with pytest.raises(ConfigError):
        LoopConfig(**kwargs)


@pytest.mark.parametrize("per_goal", [1, 3, 4])
def test_rollouts_come_in_groups_sharing_a_goal(monkeypatch, per_goal):
    import robopref.loop as loop_module
    from robopref.loop import PreferenceLoop

    seen = {}

    def fake_collect(vec_env, policy, goals, task, max_steps, source, progress):
        seen["goals"] = goals
        return []

    monkeypatch.setattr(loop_module, "collect_episodes", fake_collect)
    loop = object.__new__(PreferenceLoop)
    loop.config = LoopConfig(save_datasets=False)
    loop.rng = np.random.default_rng(0)
    loop.vec_env, loop.task, loop.max_steps, loop.progress = None, "t", 5, False
    loop.rollout(None, 10, "rollouts", per_goal)
    goals = seen["goals"]
    assert len(goals) == 10 and all(0 <= g < 50 for g in goals)
    groups = [goals[i : i + per_goal] for i in range(0, 10, per_goal)]
    assert all(len(set(group)) == 1 for group in groups)
    if per_goal == 1:  # the ungrouped draw is unchanged (same goals as before grouping)
        assert goals == np.random.default_rng(0).integers(0, 50, size=10).tolist()


def test_loop_config_rejects_zero_rollouts_per_goal():
    with pytest.raises(ConfigError, match="rollouts_per_goal"):
        LoopConfig(rollouts_per_goal=0)
