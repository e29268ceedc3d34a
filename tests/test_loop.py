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
     {"validation_episodes": -1}, {"refine_from": "sideways"}],
)
def test_loop_config_validation(kwargs):
    with pytest.raises(ConfigError):
        LoopConfig(**kwargs)
