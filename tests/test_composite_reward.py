"""The composite reward: metric terms mapped to [0, 1] plus a model learned from pairs and
0-9 episode scores, under the RewardModel contract every reward passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_episodes
from test_rewards import ACT_DIM, CONTRACT_METRICS, OBS_DIM, RewardModelContract, trainer

from robopref.data import Score, Segment, load_episodes, save_episodes
from robopref.errors import ConfigError
from robopref.preferences import ScriptedTeacher, sample_pairs
from robopref.rewards import REWARD_MODELS, CompositeReward, CompositeRewardConfig
from robopref.rewards.composite import score_regression_loss

TERMS = [
    {"metric": "m0", "low": 0.0, "high": 1.0, "weight": 1.0},
    {"metric": "m1", "low": 1.0, "high": 0.5, "weight": 0.5},  # less is better
]


def composite(terms=TERMS, steps=20, **kw) -> CompositeReward:
    config = CompositeRewardConfig(terms=terms, hidden_sizes=[16, 16], **kw)
    return CompositeReward(OBS_DIM, ACT_DIM, config, trainer(steps))


class TestCompositeContract(RewardModelContract):
    @pytest.fixture(params=[{"terms": TERMS}, {"terms": [], "members": 1}],
                    ids=["metric_terms", "learned_only"])
    def make_model(self, request):
        return lambda: composite(**request.param)


def with_metrics(episodes, seed=0):
    rng = np.random.default_rng(seed)
    for e in episodes:
        e.metrics = rng.random((len(e), len(CONTRACT_METRICS)), np.float32)
        e.metric_names = CONTRACT_METRICS
    return episodes


def test_registered_with_a_validated_config():
    assert REWARD_MODELS["composite"] == (CompositeRewardConfig, CompositeReward)
    for bad, message in (
        ({"terms": [{"metric": "x", "low": 1.0, "high": 1.0}]}, "low != high"),
        ({"terms": [{"metric": "x", "weight": -1.0}]}, "weight must be >= 0"),
        ({"terms": [{"name": "x"}]}, "metric, low, high, weight"),
        ({"score_batch_size": 1}, "score_batch_size"),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            CompositeRewardConfig(**bad)
        assert "\n" not in str(info.value)


def test_metric_terms_map_to_the_unit_interval_in_either_direction():
    model = composite(learned_weight=0.0, learn_weights=False)
    assert model.metric_names == ("m0", "m1")
    metrics = np.array([[[-1.0, 2.0], [0.5, 0.75], [2.0, 0.0]]], np.float32)  # (1, 3, 2)
    obs = np.zeros((1, 3, OBS_DIM), np.float32)
    act = np.zeros((1, 3, ACT_DIM), np.float32)
    rewards = model.member_rewards(obs, act, metrics=metrics)[0, 0]
    # phi(m0) = clip(m0, 0, 1); phi(m1) = clip((1 - m1) / 0.5, 0, 1); weights 1 and 0.5
    np.testing.assert_allclose(rewards, [0.0, 0.5 + 0.25, 1.0 + 0.5], atol=1e-4)


def test_a_missing_metric_is_one_line_naming_it():
    model = composite()
    obs, act = np.zeros((1, 2, OBS_DIM), np.float32), np.zeros((1, 2, ACT_DIM), np.float32)
    with pytest.raises(ValueError, match="m0") as info:
        model.member_rewards(obs, act)
    assert "\n" not in str(info.value)
    bare = make_episodes(1, T=5, obs_dim=OBS_DIM, act_dim=ACT_DIM)[0]
    with pytest.raises(ValueError, match="no per-step metric"):
        model.episode_rewards(bare)


def test_scores_alone_teach_the_order_of_episodes():
    # True quality is the first observation coordinate; 0-9 scores of whole episodes only.
    torch.manual_seed(0)
    episodes = with_metrics(make_episodes(40, T=12, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=5))
    for i, e in enumerate(episodes):
        e.observations[:, 0] = (i % 10) / 10.0
    scores = [Score(Segment(e.id, 0, len(e)), float(i % 10)) for i, e in enumerate(episodes)]
    model = composite(terms=[], steps=150, members=2, score_batch_size=16)
    metrics = model.fit([], episodes, scores=scores)
    assert metrics["score_correlation"] > 0.9
    assert {"score_loss", "weight/learned", "contribution/learned"} <= set(metrics)


def test_fit_on_pairs_and_scores_reports_every_component():
    episodes = with_metrics(make_episodes(8, T=12, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=9))
    pairs = sample_pairs(episodes, 5, 20, np.random.default_rng(0))
    preferences = [p for p in ScriptedTeacher().label(pairs, episodes) if p is not None]
    scores = [Score(Segment(e.id, 0, len(e)), float(i)) for i, e in enumerate(episodes)]
    model = composite()
    metrics = model.fit(preferences, episodes, scores=scores)
    for name in ("m0", "m1", "learned"):
        assert metrics[f"weight/{name}"] > 0
        assert np.isfinite(metrics[f"contribution/{name}"])
    assert {"bt_loss", "score_loss", "train_accuracy"} <= set(metrics)
    with pytest.raises(ValueError, match="preferences or episode scores"):
        model.fit([], episodes, scores=[])


def test_fixed_weights_stay_as_configured():
    episodes = with_metrics(make_episodes(6, T=10, obs_dim=OBS_DIM, act_dim=ACT_DIM))
    pairs = sample_pairs(episodes, 5, 10, np.random.default_rng(1))
    preferences = [p for p in ScriptedTeacher().label(pairs, episodes) if p is not None]
    metrics = composite(learn_weights=False).fit(preferences, episodes)
    assert metrics["weight/m0"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["weight/m1"] == pytest.approx(0.5, abs=1e-4)


def test_score_regression_loss_is_scale_free():
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    target = torch.tensor([0.1, 0.2, 0.3, 0.4])
    weight = torch.ones(4)
    assert float(score_regression_loss(returns, target, weight)) < 1e-6
    assert float(score_regression_loss(1000 * returns, target, weight)) < 1e-6
    assert float(score_regression_loss(-returns, target, weight)) == pytest.approx(1.0)


def test_save_load_and_frame_rewards_of_a_dataset_with_metrics(tmp_path):
    episodes = with_metrics(make_episodes(3, T=8, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=2))
    pairs = sample_pairs(episodes, 4, 10, np.random.default_rng(2))
    model = composite(steps=5)
    model.fit([p for p in ScriptedTeacher().label(pairs, episodes) if p], episodes)
    save_episodes(episodes, tmp_path / "ds", fps=20, state_dim=3)
    loaded = load_episodes(tmp_path / "ds")
    assert loaded[1].metric_names == CONTRACT_METRICS
    np.testing.assert_allclose(loaded[1].metrics, episodes[1].metrics)
    again = CompositeReward.load(model.save(tmp_path / "reward"), trainer())
    np.testing.assert_allclose(again.frame_rewards(tmp_path / "ds", 1),
                               model.episode_rewards(episodes[1]), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_the_gpu_with_bf16_and_answers_numpy_calls():
    episodes = with_metrics(make_episodes(8, T=12, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=3))
    pairs = sample_pairs(episodes, 5, 30, np.random.default_rng(3))
    preferences = [p for p in ScriptedTeacher().label(pairs, episodes) if p is not None]
    scores = [Score(Segment(e.id, 0, len(e)), float(i)) for i, e in enumerate(episodes)]
    model = CompositeReward(OBS_DIM, ACT_DIM, CompositeRewardConfig(terms=TERMS),
                            trainer(30, device="cuda"))
    metrics = model.fit(preferences, episodes, scores=scores)
    assert all(np.isfinite(v) for v in metrics.values())
    assert model.raw_weight.device.type == "cuda" and model.raw_weight.dtype == torch.float32
    rewards = model.episode_rewards(episodes[0])
    assert rewards.shape == (12,) and rewards.dtype == np.float32
