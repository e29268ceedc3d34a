"""The robust Gaussian reward model: contract, config, save/load, pessimism, noise modelling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import linear_reward, make_episodes
from test_rewards import (
    ACT_DIM,
    OBS_DIM,
    SEG_LEN,
    TRUE_W,
    RewardModelContract,
    oracle_preferences,
    trainer,
)

from robopref.data import Episode, Preference, as_pool, assign_ids
from robopref.errors import ConfigError, RobopError
from robopref.preferences import sample_pairs
from robopref.rewards import (
    REWARD_MODELS,
    GaussianReward,
    GaussianRewardConfig,
    preference_accuracy,
)

REPO = Path(__file__).resolve().parents[1]


def gaussian(steps=20, hidden=(16, 16), trainer_kw=None, **kw) -> GaussianReward:
    config = GaussianRewardConfig(hidden_sizes=list(hidden), **kw)
    return GaussianReward(OBS_DIM, ACT_DIM, config, trainer(steps, **(trainer_kw or {})))


def random_inputs(b=4, t=7, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    obs = (scale * rng.normal(size=(b, t, OBS_DIM))).astype(np.float32)
    return obs, rng.normal(size=(b, t, ACT_DIM)).astype(np.float32)


class TestGaussianRewardContract(RewardModelContract):
    @pytest.fixture(
        params=[
            {},
            {"refine_with": "pessimistic", "pessimism_k": 2.0},
            {"use_actions": False},
            {"output_bound": 0.0, "samples": 1},
        ],
        ids=["mean", "pessimistic", "obs_only", "unbounded_one_sample"],
    )
    def make_model(self, request):
        return lambda: gaussian(**request.param)


def test_registry_and_shipped_config_build_the_model():
    assert REWARD_MODELS["gaussian"] == (GaussianRewardConfig, GaussianReward)
    group = yaml.safe_load((REPO / "configs" / "reward" / "gaussian.yaml").read_text())
    config, cls = REWARD_MODELS.from_group(group, "reward", seed=3)  # as robopref.cli.demo does
    assert config.seed == 3 and config.refine_with == "mean"
    assert {k: v for k, v in group.items() if k != "name"} == {
        k: getattr(GaussianRewardConfig(), k) for k in group if k != "name"
    }
    model = cls(OBS_DIM, ACT_DIM, config, trainer())
    assert model.member_rewards(*random_inputs()).shape == (1, 4, 7)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hidden_sizes": []},
        {"hidden_sizes": [8, 0]},
        {"output_bound": -1.0},
        {"samples": 0},
        {"sigma_prior": 0.0},
        {"sigma_weight": -0.1},
        {"sigma_prior": 10.0},  # log 10 > max_log_std
        {"min_log_std": 0.0, "max_log_std": -1.0},
        {"refine_with": "optimistic"},
        {"pessimism_k": -1.0},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ConfigError) as info:
        GaussianRewardConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_initialisation_is_seeded_starts_at_the_prior_and_leaves_global_rng_alone():
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    a = gaussian(seed=5, sigma_prior=0.3)
    assert torch.equal(torch.rand(3), expected_next)
    b, c = gaussian(seed=5, sigma_prior=0.3), gaussian(seed=6, sigma_prior=0.3)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.trunk[0].weight, c.trunk[0].weight)
    mu, sigma = a.reward_mean_std(*random_inputs())
    assert mu.shape == sigma.shape == (4, 7)
    np.testing.assert_allclose(sigma, 0.3, rtol=0.1)  # soft log-std clamp shifts it slightly
    assert np.ptp(sigma) < 1e-6  # data-independent before training


def test_bounds_on_mean_and_std():
    model = gaussian(output_bound=0.5, min_log_std=-3.0, max_log_std=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(30.0)
    mu, sigma = model.reward_mean_std(*random_inputs(8, 6, scale=10.0))
    assert np.abs(mu).max() <= 0.5 and np.abs(mu).max() > 0.45
    assert sigma.min() >= math.exp(-3.0) and sigma.max() <= math.exp(0.5)


def test_pessimistic_reward_is_mean_minus_k_std():
    obs, act = random_inputs()
    mean_model = gaussian(seed=2)
    pessimist = gaussian(seed=2, refine_with="pessimistic", pessimism_k=1.5)
    with torch.no_grad():  # make sigma vary with the input
        for m in (mean_model, pessimist):
            m.log_var_head.weight.copy_(torch.linspace(-1, 1, m.log_var_head.weight.numel()))
    mu, sigma = pessimist.reward_mean_std(obs, act)
    assert np.ptp(sigma) > 0.01
    np.testing.assert_array_equal(mean_model.member_rewards(obs, act)[0], mu)
    pessimistic = pessimist.member_rewards(obs, act)[0]
    np.testing.assert_allclose(pessimistic, mu - 1.5 * sigma, rtol=1e-6)
    assert (pessimistic <= mean_model.member_rewards(obs, act)[0]).all()


def test_fit_is_reproducible_and_leaves_global_rng_alone():
    episodes = make_episodes(6, T=12, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=40)
    prefs = oracle_preferences(
        sample_pairs(episodes, SEG_LEN, 30, np.random.default_rng(0)), episodes
    )
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    a, b, c = gaussian(steps=15), gaussian(steps=15), gaussian(steps=15, seed=1)
    for model in (a, b, c):
        model.fit(prefs, episodes)
    assert torch.equal(torch.rand(3), expected_next)
    assert int(a.noise_step) == 15
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.mean_head.weight, c.mean_head.weight)


def test_save_load_round_trip(tmp_path):
    episodes = make_episodes(6, T=10, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=3)
    prefs = oracle_preferences(
        sample_pairs(episodes, SEG_LEN, 20, np.random.default_rng(0)), episodes
    )
    model = gaussian(steps=30, use_actions=False, refine_with="pessimistic", pessimism_k=0.5)
    model.fit(prefs, episodes)
    path = model.save(tmp_path / "reward")
    loaded = GaussianReward.load(path, trainer())
    assert loaded.config == model.config
    assert (loaded.obs_dim, loaded.act_dim, loaded.num_members) == (OBS_DIM, ACT_DIM, 1)
    assert bool(loaded.normalizer_set) and int(loaded.noise_step) == 30
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    obs, act = random_inputs()
    got, want = loaded.reward_mean_std(obs, act), model.reward_mean_std(obs, act)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    for ep in episodes:
        np.testing.assert_array_equal(loaded.episode_rewards(ep), model.episode_rewards(ep))
    with pytest.raises(RobopError, match="not a 'bt_ensemble'"):
        REWARD_MODELS["bt_ensemble"][1].load(path, trainer())


def test_learns_a_linear_reward():
    reward_fn = linear_reward(TRUE_W)
    train_eps = make_episodes(
        30, T=20, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=0, reward_fn=reward_fn
    )
    test_eps = make_episodes(
        10, T=20, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=1000, reward_fn=reward_fn
    )
    prefs = oracle_preferences(
        sample_pairs(train_eps, SEG_LEN, 300, np.random.default_rng(0)), train_eps
    )
    # Unbounded mean, as in the ensemble's test: tanh saturates on noiseless 0/1 labels.
    model = gaussian(200, hidden=(32, 32), output_bound=0.0, trainer_kw={"batch_size": 64})
    test_pairs = sample_pairs(test_eps, SEG_LEN, 300, np.random.default_rng(1))
    before = preference_accuracy(model, test_pairs, test_eps)
    metrics = model.fit(prefs, train_eps)
    after = preference_accuracy(model, test_pairs, test_eps)
    assert after > 0.9 and after > before, (before, after)
    assert metrics["train_accuracy"] > 0.85
    assert {"bt_loss", "sigma_kl", "mean_sigma"} <= set(metrics)


# --------------------------------------------------------------------------- label noise


def region_episodes(per_region: int, seed: int, T: int = 20) -> list[Episode]:
    """Episodes ``0..n-1`` with ``obs[:, 3]`` near -2 (clean region), then as many near +2
    (noisy region); reward ``obs @ TRUE_W`` does not depend on the region (weight 0)."""
    rng = np.random.default_rng(seed)
    episodes = []
    for centre in [-2.0] * per_region + [2.0] * per_region:
        obs = rng.normal(size=(T, OBS_DIM)).astype(np.float32)
        obs[:, 3] = centre + 0.3 * obs[:, 3]
        act = rng.normal(size=(T, ACT_DIM)).astype(np.float32)
        episodes.append(Episode(obs, act, obs @ np.float32(TRUE_W), np.zeros(T, bool)))
    return assign_ids(episodes, "test")


def region_pairs(episodes, count, rng):
    """``count`` pairs within the clean half and ``count`` within the noisy half."""
    ids = [e.id for e in episodes]
    half = len(ids) // 2
    clean = sample_pairs(episodes, SEG_LEN, count, rng, episode_ids=ids[:half])
    return clean, sample_pairs(episodes, SEG_LEN, count, rng, episode_ids=ids[half:])


def mean_sigma(model, segments, episodes) -> float:
    pool = as_pool(episodes)
    obs = np.stack([s.observations(pool) for s in segments])
    act = np.stack([s.actions(pool) for s in segments])
    return float(model.reward_mean_std(obs, act)[1].mean())


@pytest.mark.parametrize("flip", [0.5, 0.0], ids=["noisy_region", "control"])
def test_label_noise_in_one_region_widens_sigma_there(flip):
    """Half the labels of pairs in one region of observation space are flipped: sigma must
    come out wider on that region's segments than on clean pairs' segments, on the training
    segments and on fresh episodes. With no flips (control) sigma must not separate the
    regions, so a sigma that keys on the region rather than on the labels fails too, as does
    one that ignores the data (equal everywhere) or the average-of-per-sample-BCE loss (it
    leaves sigma no wider where labels are noisy: ratio 0.75-1.01 over 3 seeds)."""
    episodes = region_episodes(12, seed=0)
    rng = np.random.default_rng(0)
    clean, noisy = region_pairs(episodes, 150, rng)
    prefs = oracle_preferences(clean + noisy, episodes)
    flipped = rng.random(len(noisy)) < flip
    prefs[len(clean) :] = [
        Preference(p.first, p.second, 1.0 - p.target) if f else p
        for p, f in zip(prefs[len(clean) :], flipped, strict=True)
    ]
    model = gaussian(300, hidden=(32, 32), sigma_prior=1.0, trainer_kw={"batch_size": 64})
    model.fit(prefs, episodes)
    fresh = region_episodes(6, seed=99)
    fresh_clean, fresh_noisy = region_pairs(fresh, 100, np.random.default_rng(5))
    ratios = [
        mean_sigma(model, [s for pair in noisy for s in pair], episodes)
        / mean_sigma(model, [s for pair in clean for s in pair], episodes),
        mean_sigma(model, [s for pair in fresh_noisy for s in pair], fresh)
        / mean_sigma(model, [s for pair in fresh_clean for s in pair], fresh),
    ]
    print(
        f"flip={flip}: sigma ratio noisy/clean region, train {ratios[0]:.2f} fresh {ratios[1]:.2f}"
    )
    if flip:
        assert min(ratios) > 1.5, ratios
    else:
        assert max(abs(r - 1.0) for r in ratios) < 0.2, ratios
