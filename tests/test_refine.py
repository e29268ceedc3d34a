"""Refinement: reward-weighted and advantage-weighted regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FakeRewardBase

from robopref.data import Episode
from robopref.errors import ConfigError
from robopref.policies import BCConfig, BCPolicy
from robopref.refine import (
    REFINERS,
    AdvantageWeightedRegression,
    AWRConfig,
    RewardWeightedRegression,
    RWRConfig,
    exp_weights,
    goal_baseline,
    reward_to_go,
)
from robopref.training import Trainer, TrainerConfig

# --------------------------------------------------------------------------- exp_weights


def test_weights_have_mean_one():
    rng = np.random.default_rng(0)
    for _ in range(5):
        returns = rng.normal(scale=rng.uniform(0.1, 100), size=int(rng.integers(2, 40)))
        w = exp_weights(returns, temperature=0.7, max_weight=20.0)
        assert w.shape == returns.shape
        assert w.mean() == pytest.approx(1.0)
        assert (w > 0).all()


def test_weights_are_monotone_in_returns():
    returns = np.random.default_rng(1).normal(size=30)
    w = exp_weights(returns, temperature=0.5, max_weight=1e9)
    order = np.argsort(returns)
    assert (np.diff(w[order]) > 0).all()  # strictly increasing without the cap


def test_weights_match_the_documented_formula():
    returns = np.array([1.0, 2.0, 4.0, 9.0])
    z = (returns - 4.0) / np.sqrt(((returns - 4.0) ** 2).mean())
    raw = np.minimum(np.exp(z / 0.5), 3.0)
    np.testing.assert_allclose(exp_weights(returns, 0.5, 3.0), raw / raw.mean())


def test_weights_are_capped():
    returns = np.array([0.0] * 8 + [50.0, 100.0])
    w = exp_weights(returns, temperature=0.05, max_weight=5.0)
    # Both outliers hit the cap: same weight, despite different returns.
    assert w[8] == w[9]
    assert w.mean() == pytest.approx(1.0)
    # Before normalisation the capped weight was 5 and the others exp(z / T) < 1.
    assert w[9] / w[0] > 5.0
    uncapped = exp_weights(returns, temperature=0.05, max_weight=1e30)
    assert uncapped[9] > uncapped[8]


def test_equal_returns_give_unit_weights():
    np.testing.assert_array_equal(exp_weights(np.full(6, 3.5), 0.5, 20.0), np.ones(6))


def test_weights_ignore_scale_and_offset_of_returns():
    returns = np.random.default_rng(2).normal(size=12)
    np.testing.assert_allclose(
        exp_weights(returns, 0.5, 20.0), exp_weights(7.0 * returns - 3.0, 0.5, 20.0)
    )


def test_higher_temperature_flattens_weights():
    returns = np.random.default_rng(3).normal(size=20)
    spreads = [exp_weights(returns, t, 1e9).std() for t in (0.25, 0.5, 1.0, 4.0)]
    assert spreads == sorted(spreads, reverse=True)
    assert spreads[-1] < 0.5 * spreads[0]


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"max_weight": 0.99},
        {"demo_weight": -0.1},
        {"anchor_weight": -0.1},
        {"baseline": "value"},
    ],
)
def test_rwr_config_validation(kwargs):
    with pytest.raises(ConfigError):
        RWRConfig(**kwargs)


def test_rwr_config_boundaries_and_registry():
    RWRConfig(max_weight=1.0, demo_weight=0.0, anchor_weight=0.0)
    assert REFINERS["rwr"] == (RWRConfig, RewardWeightedRegression)


def test_goal_baseline_is_the_goal_mean_and_the_global_mean_for_singletons_and_unknowns():
    returns = np.array([1.0, 3.0, 10.0, 20.0, 30.0, 7.0, 4.0])
    goals = [0, 0, 5, 5, 5, 9, None]
    overall = returns.mean()
    np.testing.assert_allclose(
        goal_baseline(returns, goals), [2.0, 2.0, 20.0, 20.0, 20.0, overall, overall]
    )


def test_goal_baseline_without_goals_is_the_global_mean():
    returns = np.array([1.0, 2.0, 6.0])
    np.testing.assert_allclose(goal_baseline(returns, [None] * 3), np.full(3, 3.0))


def test_rwr_goal_baseline_upweights_the_best_episode_of_a_hard_goal():
    """Goal 1 is hard (every return low): with a global baseline its best episode gets almost
    no weight; compared within its goal, it is the one to imitate."""
    T = 4
    returns = {0: [10.0, 11.0, 9.0], 1: [0.0, 1.0, -1.0]}

    class ReturnByEpisode(FakeRewardBase):
        obs_dim, act_dim = 1, 1

        def member_rewards(self, obs, act):
            # Each episode's actions hold its return / T, so the learned return is the return.
            return np.asarray(act, dtype=np.float64)[None, ..., 0]

        def fit(self, preferences, episodes):
            return {}

    episodes = [
        Episode(np.zeros((T, 1)), np.full((T, 1), r / T), np.zeros(T), np.zeros(T, bool),
                meta={"goal_index": goal})
        for goal, rs in returns.items() for r in rs
    ]
    captured = {}

    class Capture(RewardWeightedRegression):
        def refine(self, *args):
            import robopref.refine.rwr as rwr

            original = rwr.fit_anchored

            def spy(trainer, policy, base, obs, act, weights, anchor):
                captured["weights"] = weights.reshape(-1, T)[:, 0]
                return policy.clone(), {}

            rwr.fit_anchored = spy
            try:
                return super().refine(*args)
            finally:
                rwr.fit_anchored = original

    trainer = Trainer(TrainerConfig(steps=1, device="cpu", progress=False))
    base = make_base_policy()
    for baseline in ("global", "goal"):
        Capture(RWRConfig(temperature=0.5, baseline=baseline), trainer).refine(
            base, base, episodes, [], ReturnByEpisode()
        )
        w = captured["weights"]
        best_hard = w[4]  # return 1.0 on goal 1
        if baseline == "global":
            assert best_hard < 0.2 * w[:3].min()
        else:
            # The best episode of each goal gets the same (largest) weight.
            assert best_hard == pytest.approx(w[1]) and best_hard == pytest.approx(w.max())
            assert w[5] == pytest.approx(w[2])


# --------------------------------------------------------------------------- refinement


class ActionRewardModel(FakeRewardBase):
    """Reward ``sign * a_t`` for 1-D actions: positive actions are good (``sign = 1``)."""

    obs_dim, act_dim = 1, 1

    def __init__(self, sign: float = 1.0):
        self.sign = sign

    def member_rewards(self, obs, act):
        return self.sign * np.asarray(act, dtype=np.float64)[None, ..., 0]

    def fit(self, preferences, episodes):
        return {}


def make_base_policy() -> BCPolicy:
    torch.manual_seed(0)
    return BCPolicy(1, 1, BCConfig(hidden_sizes=[16, 16]))


def rollouts_around(policy: BCPolicy, n: int = 24, T: int = 10) -> list[Episode]:
    """Episodes of the policy with a per-episode action offset (the exploration)."""
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(n):
        obs = rng.uniform(-1, 1, size=(T, 1)).astype(np.float32)
        offset = rng.normal(scale=0.3)
        act = np.clip(policy.act(obs) + offset + rng.normal(scale=0.05, size=(T, 1)), -0.95, 0.95)
        episodes.append(Episode(obs, act, np.full(T, np.nan), np.zeros(T, bool)))
    return episodes


def refiner(anchor_weight: float = 0.1, steps: int = 300) -> RewardWeightedRegression:
    cfg = TrainerConfig(steps=steps, batch_size=64, lr=3e-3, device="cpu", progress=False)
    return RewardWeightedRegression(
        RWRConfig(temperature=0.5, anchor_weight=anchor_weight), Trainer(cfg)
    )


EVAL_OBS = np.linspace(-1, 1, 101, dtype=np.float32)[:, None]


def mean_shift(refined: BCPolicy, base: BCPolicy) -> float:
    return float((refined.act(EVAL_OBS) - base.act(EVAL_OBS)).mean())


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_rwr_moves_policy_toward_rewarded_actions(sign):
    base = make_base_policy()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    policy = base.clone()
    policy_state = {k: v.clone() for k, v in policy.state_dict().items()}
    rollouts = rollouts_around(base)
    demos = rollouts_around(base, n=4)  # unweighted imitation data around the base
    refined, metrics = refiner().refine(policy, base, rollouts, demos, ActionRewardModel(sign))
    assert refined is not policy and refined is not base
    assert sign * mean_shift(refined, base) > 0.1
    # Neither input policy was modified.
    for key, value in base.state_dict().items():
        assert torch.equal(value, base_state[key]), key
    for key, value in policy.state_dict().items():
        assert torch.equal(value, policy_state[key]), key
    assert {"loss", "weighted_bc", "anchor", "effective_episodes"} <= set(metrics)
    assert 1.0 <= metrics["effective_episodes"] < len(rollouts)


def test_rwr_effective_episodes_is_all_episodes_when_returns_tie():
    base = make_base_policy()
    rollouts = rollouts_around(base, n=6)

    class ZeroReward(ActionRewardModel):
        def member_rewards(self, obs, act):
            return np.zeros((1, *np.asarray(act).shape[:-1]))

    _, metrics = refiner(steps=2).refine(base.clone(), base, rollouts, [], ZeroReward())
    assert metrics["effective_episodes"] == pytest.approx(6.0)


# --------------------------------------------------------------------------- AWR


def test_reward_to_go_matches_hand_computed_sums():
    np.testing.assert_allclose(
        reward_to_go(np.array([1.0, 2.0, 3.0]), 0.5), [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]
    )
    np.testing.assert_allclose(reward_to_go(np.array([1.0, 1.0]), 1.0), [2.0, 1.0])


@pytest.mark.parametrize(
    "kwargs",
    [{"gamma": 0.0}, {"gamma": 1.5}, {"temperature": 0.0}, {"max_weight": 0.5},
     {"anchor_weight": -1.0}, {"value_steps": 0}],
)
def test_awr_config_validation(kwargs):
    with pytest.raises(ConfigError):
        AWRConfig(**kwargs)


def awr(anchor_weight: float = 0.1, steps: int = 300) -> AdvantageWeightedRegression:
    cfg = TrainerConfig(steps=steps, batch_size=64, lr=3e-3, device="cpu", progress=False)
    config = AWRConfig(temperature=0.5, anchor_weight=anchor_weight, value_steps=100)
    return AdvantageWeightedRegression(config, Trainer(cfg))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_awr_moves_policy_toward_rewarded_actions(sign):
    base = make_base_policy()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    rollouts = rollouts_around(base)
    refined, metrics = awr().refine(base.clone(), base, rollouts, [], ActionRewardModel(sign))
    assert sign * mean_shift(refined, base) > 0.1
    for key, value in base.state_dict().items():
        assert torch.equal(value, base_state[key]), key
    assert 0.0 < metrics["effective_step_fraction"] < 1.0


@pytest.mark.parametrize("make_refiner", [refiner, awr], ids=["rwr", "awr"])
def test_anchor_keeps_policy_near_base(make_refiner):
    base = make_base_policy()
    rollouts = rollouts_around(base)
    model = ActionRewardModel()
    loose, _ = make_refiner(anchor_weight=0.0).refine(base.clone(), base, rollouts, [], model)
    tight, _ = make_refiner(anchor_weight=50.0).refine(base.clone(), base, rollouts, [], model)
    assert abs(mean_shift(tight, base)) < 0.5 * abs(mean_shift(loose, base))
    assert mean_shift(loose, base) > 0.1


def test_awr_is_registered():
    assert REFINERS["awr"] == (AWRConfig, AdvantageWeightedRegression)
