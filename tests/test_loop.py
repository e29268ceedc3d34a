"""Pieces of the preference loop that run without a simulator."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeRewardBase, make_episodes

from robopref.errors import ConfigError
from robopref.loop import LoopConfig, select_by_learned_return


class FirstObsReward(FakeRewardBase):
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
     {"average_last": -1}, {"average_last": 2, "validation_episodes": 5},
     {"demo_variations": -1}],
)
def test_loop_config_validation(kwargs):
    with pytest.raises(ConfigError):
        LoopConfig(**kwargs)


@pytest.mark.parametrize("per_goal", [1, 3, 4])
def test_draws_come_in_groups_sharing_a_variation(per_goal):
    from robopref.envs.metaworld import MetaWorldConfig
    from robopref.envs.metaworld_task import MetaWorldTask

    task = MetaWorldTask(MetaWorldConfig())
    draws = task.draw("train", 10, np.random.default_rng(0), per_goal)
    assert len(draws) == 10 and all(d in task.variations("train") for d in draws)
    groups = [draws[i : i + per_goal] for i in range(0, 10, per_goal)]
    assert all(all(v == group[0] for v in group) for group in groups)


def test_demos_can_come_from_the_first_train_variations_and_exploration_from_all():
    from robopref.envs.metaworld import MetaWorldConfig
    from robopref.envs.metaworld_task import MetaWorldTask

    wide = MetaWorldTask(MetaWorldConfig(train_goal_sets=[0, 4]))
    narrow = MetaWorldTask(MetaWorldConfig())
    demos = wide.draw("train", 25, np.random.default_rng(7), within=50)
    # The demos of the narrow split's seed, exactly: widening exploration leaves BC as it was.
    assert demos == narrow.draw("train", 25, np.random.default_rng(7))
    assert all(goal_set == 0 for goal_set, _ in demos)
    rollouts = wide.draw("train", 200, np.random.default_rng(8))
    assert {goal_set for goal_set, _ in rollouts} == {0, 4}
    with pytest.raises(ConfigError, match="101 variations asked of the 100"):
        wide.draw("train", 5, np.random.default_rng(0), within=101)


def test_loop_config_rejects_zero_rollouts_per_goal():
    with pytest.raises(ConfigError, match="rollouts_per_goal"):
        LoopConfig(rollouts_per_goal=0)
