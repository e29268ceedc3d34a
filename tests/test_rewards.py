"""Reward models: the RewardModel contract, the Bradley–Terry ensemble, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import FakeRewardBase, eid, linear_reward, make_episodes
from torch import nn

from robopref.data import Label, Preference, Segment, segment_pair_arrays
from robopref.errors import ConfigError, RobopError
from robopref.preferences import ScriptedTeacher, sample_pairs
from robopref.rewards import (
    REWARD_MODELS,
    BTEnsemble,
    EnsembleConfig,
    RewardModel,
    StackedMLP,
    preference_accuracy,
)
from robopref.training import Trainer, TrainerConfig

OBS_DIM, ACT_DIM, SEG_LEN = 5, 2, 5
CONTRACT_METRICS = ("m0", "m1")
TRUE_W = [1.0, -0.5, 0.25, 0.0, 0.0]


def trainer(steps: int = 20, **kwargs) -> Trainer:
    kwargs = {"batch_size": 32, "lr": 3e-3, "device": "cpu", "progress": False, **kwargs}
    return Trainer(TrainerConfig(steps=steps, **kwargs))


def ensemble(members=3, use_actions=True, steps=20, seed=0, hidden=(16, 16), **kw) -> BTEnsemble:
    config = EnsembleConfig(
        members=members, hidden_sizes=list(hidden), use_actions=use_actions, seed=seed, **kw
    )
    return BTEnsemble(OBS_DIM, ACT_DIM, config, trainer(steps))


def oracle_preferences(pairs, episodes) -> list[Preference]:
    return [p for p in ScriptedTeacher().label(pairs, episodes) if p is not None]


# --------------------------------------------------------------------------- contract


class RewardModelContract:
    """Behaviour every RewardModel must show; subclasses provide ``make_model``."""

    @pytest.fixture
    def make_model(self):
        raise NotImplementedError

    @pytest.fixture
    def data(self):
        episodes = make_episodes(6, T=12, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=40)
        rng = np.random.default_rng(1)
        for episode in episodes:  # per-step task metrics, for models that read them
            episode.metrics = rng.random((len(episode), len(CONTRACT_METRICS)), np.float32)
            episode.metric_names = CONTRACT_METRICS
        pairs = sample_pairs(episodes, SEG_LEN, 30, np.random.default_rng(0))
        return episodes, pairs

    def test_is_a_reward_model(self, make_model):
        model = make_model()
        assert isinstance(model, RewardModel)
        assert (model.obs_dim, model.act_dim) == (OBS_DIM, ACT_DIM)
        assert model.num_members >= 1

    def test_member_and_step_reward_shapes(self, make_model):
        model = make_model()
        rng = np.random.default_rng(0)
        obs = rng.normal(size=(4, 7, OBS_DIM)).astype(np.float32)
        act = rng.normal(size=(4, 7, ACT_DIM)).astype(np.float32)
        # A model that names per-step metrics gets them; one that names none never does.
        extra = {}
        if model.metric_names:
            extra = {"metrics": rng.random((4, 7, len(model.metric_names)), np.float32)}
        members = model.member_rewards(obs, act, **extra)
        assert members.shape == (model.num_members, 4, 7)
        assert np.isfinite(members).all()
        steps = model.step_rewards(obs, act, **extra)
        assert steps.shape == (4, 7)
        np.testing.assert_allclose(steps, members.mean(0), rtol=1e-6)

    def test_episode_rewards_shape(self, make_model, data):
        model = make_model()
        episodes, _ = data
        ep = episodes[0]
        rewards = model.episode_rewards(ep)
        assert rewards.shape == (len(ep),)
        metrics = ep.metric_columns(model.metric_names)[None] if model.metric_names else None
        np.testing.assert_allclose(
            rewards,
            model.step_rewards(ep.observations[None], ep.actions[None], metrics)[0],
            rtol=1e-6,
        )

    def test_preference_probabilities(self, make_model, data):
        model = make_model()
        episodes, pairs = data
        probs = model.preference_probabilities(pairs, episodes)
        assert probs.shape == (model.num_members, len(pairs))
        assert ((probs > 0) & (probs < 1)).all()
        swapped = model.preference_probabilities([(b, a) for a, b in pairs], episodes)
        np.testing.assert_allclose(probs + swapped, 1.0, atol=1e-6)

    def test_fit_returns_a_dict_of_floats(self, make_model, data):
        model = make_model()
        episodes, pairs = data
        prefs = oracle_preferences(pairs, episodes)
        metrics = model.fit(prefs, episodes)
        assert isinstance(metrics, dict) and metrics
        assert all(isinstance(v, float) for v in metrics.values())
        probs = model.preference_probabilities(pairs, episodes)
        assert probs.shape == (model.num_members, len(pairs))


class TestBTEnsembleContract(RewardModelContract):
    @pytest.fixture(
        params=[
            {"members": 1},
            {"members": 3},
            {"members": 3, "use_actions": False},
            {"members": 2, "output_bound": 0.0},
        ],
        ids=["members1", "members3", "obs_only", "unbounded"],
    )
    def make_model(self, request):
        return lambda: ensemble(**request.param)


# --------------------------------------------------------------------------- BT ensemble


def test_registry():
    assert REWARD_MODELS["bt_ensemble"] == (EnsembleConfig, BTEnsemble)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"members": 0},
        {"hidden_sizes": []},
        {"hidden_sizes": [8, 0]},
        {"output_bound": -1.0},
    ],
)
def test_ensemble_config_validation(kwargs):
    with pytest.raises(ConfigError):
        EnsembleConfig(**kwargs)


def test_initialisation_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    a = ensemble(seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    b, c = ensemble(seed=5), ensemble(seed=6)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.stack.weight["0"], c.stack.weight["0"])
    # Members start different from each other.
    w = a.stack.weight["0"]
    assert not torch.equal(w[0], w[1])


def test_output_bound_limits_rewards():
    model = ensemble(output_bound=0.5)
    with torch.no_grad():
        for p in model.stack.parameters():
            p.mul_(30.0)
    obs = np.random.default_rng(0).normal(scale=10, size=(8, 6, OBS_DIM)).astype(np.float32)
    act = np.zeros((8, 6, ACT_DIM), np.float32)
    rewards = model.member_rewards(obs, act)
    assert np.abs(rewards).max() <= 0.5
    assert np.abs(rewards).max() > 0.45


def test_stacked_mlp_equals_loop_over_members():
    torch.manual_seed(0)
    members = [
        nn.Sequential(
            nn.Linear(4, 8), nn.LeakyReLU(), nn.Linear(8, 8), nn.LeakyReLU(), nn.Linear(8, 1)
        )
        for _ in range(3)
    ]
    stacked = StackedMLP(members)
    assert stacked.num_members == 3
    x = torch.randn(10, 4)
    out = stacked(x)
    assert out.shape == (3, 10)
    loop = torch.stack([m(x).squeeze(-1) for m in members])
    assert torch.allclose(out, loop, atol=1e-6)
    per_member_x = torch.randn(3, 10, 4)
    out = stacked(per_member_x)
    loop = torch.stack([m(xm).squeeze(-1) for m, xm in zip(members, per_member_x, strict=True)])
    assert out.shape == (3, 10)
    assert torch.allclose(out, loop, atol=1e-6)


def test_stacked_mlp_parameters_train():
    torch.manual_seed(0)
    stacked = StackedMLP([nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))] * 2)
    names = {name for name, _ in stacked.named_parameters()}
    assert names == {"weight.0", "bias.0", "weight.2", "bias.2"}
    stacked(torch.randn(5, 2)).sum().backward()
    assert all(p.grad is not None for p in stacked.parameters())


def test_forward_matches_member_modules_after_normalisation():
    model = ensemble(members=2, use_actions=True)
    obs = torch.randn(3, 4, OBS_DIM)
    act = torch.randn(3, 4, ACT_DIM)
    with torch.no_grad():
        model.in_mean.fill_(0.5)
        model.in_std.fill_(2.0)
        out = model(obs, act)  # (M, 3, 4)
        x = (torch.cat([obs, act], -1) - 0.5) / 2.0
        weight, bias = model.stack.weight, model.stack.bias  # (M, in, out), (M, 1, out)
        for m in range(2):
            h = x
            for i in ("0", "2"):
                h = nn.functional.leaky_relu(h @ weight[i][m] + bias[i][m])
            r = (h @ weight["4"][m] + bias["4"][m]).squeeze(-1)
            assert torch.allclose(out[m], torch.tanh(r), atol=1e-5)


def test_obs_only_model_ignores_actions():
    model = ensemble(use_actions=False)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(2, 5, OBS_DIM)).astype(np.float32)
    a1 = rng.normal(size=(2, 5, ACT_DIM)).astype(np.float32)
    a2 = rng.normal(size=(2, 5, ACT_DIM)).astype(np.float32)
    np.testing.assert_array_equal(model.member_rewards(obs, a1), model.member_rewards(obs, a2))
    assert not np.array_equal(
        ensemble(use_actions=True).member_rewards(obs, a1),
        ensemble(use_actions=True).member_rewards(obs, a2),
    )


def test_bt_ensemble_learns_a_linear_reward():
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
    assert len(prefs) == 300
    # Unbounded outputs: with the default tanh bound and noiseless 0/1 labels, BCE drives the
    # per-step rewards into saturation (a sign-like reward), which orders fresh pairs worse.
    model = BTEnsemble(
        OBS_DIM,
        ACT_DIM,
        EnsembleConfig(members=3, hidden_sizes=[32, 32], output_bound=0.0),
        trainer(200, lr=3e-3, batch_size=64),
    )
    test_pairs = sample_pairs(test_eps, SEG_LEN, 300, np.random.default_rng(1))
    before = preference_accuracy(model, test_pairs, test_eps)
    metrics = model.fit(prefs, train_eps)
    after = preference_accuracy(model, test_pairs, test_eps)
    assert after > 0.9, (before, after)
    assert after > before
    assert metrics["train_accuracy"] > 0.85
    # The normaliser was set from the training pairs and is frozen afterwards.
    assert bool(model.normalizer_set)
    mean = model.in_mean.clone()
    model.fit(oracle_preferences(test_pairs[:10], test_eps), test_eps)
    assert torch.equal(model.in_mean, mean)


def test_equal_labels_pull_segment_returns_together():
    episodes = make_episodes(8, T=10, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=7)
    pairs = sample_pairs(episodes, SEG_LEN, 40, np.random.default_rng(3))
    prefs = [Preference(a, b, Label.EQUAL) for a, b in pairs]
    model = ensemble(members=2, steps=200, output_bound=0.0)
    with torch.no_grad():
        for p in model.stack.parameters():
            p.mul_(3.0)  # start with clearly different returns

    obs, act = segment_pair_arrays(pairs, episodes)  # (B, 2, L, dim)

    def mean_abs_gap():
        returns = model.step_rewards(obs, act).sum(-1)  # (B, 2)
        return float(np.abs(returns[:, 0] - returns[:, 1]).mean())

    model.trainer = trainer(0)
    assert model.fit(prefs, episodes) == {}  # zero steps: only sets the input normaliser
    before = mean_abs_gap()
    model.trainer = trainer(200)
    metrics = model.fit(prefs, episodes)
    after = mean_abs_gap()
    assert before > 0.5
    assert after < 0.25 * before, (before, after)
    assert math.isnan(metrics["train_accuracy"])  # no decided pairs to score


def test_fit_without_preferences_raises():
    with pytest.raises(ValueError, match="at least one"):
        ensemble().fit([], make_episodes(1, T=5))


def test_save_load_round_trip(tmp_path):
    episodes = make_episodes(6, T=10, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=3)
    pairs = sample_pairs(episodes, SEG_LEN, 20, np.random.default_rng(0))
    model = ensemble(members=3, use_actions=False, steps=30, output_bound=2.0)
    model.fit(oracle_preferences(pairs, episodes), episodes)
    path = tmp_path / "reward.pt"
    model.save(path)
    loaded = BTEnsemble.load(path, trainer())
    assert loaded.config == model.config
    assert (loaded.obs_dim, loaded.act_dim, loaded.num_members) == (OBS_DIM, ACT_DIM, 3)
    assert bool(loaded.normalizer_set)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    for ep in episodes:
        np.testing.assert_array_equal(loaded.episode_rewards(ep), model.episode_rewards(ep))
    # A freshly built model with the same seed differs: the round trip carried the training.
    fresh = ensemble(members=3, use_actions=False, output_bound=2.0)
    assert not np.array_equal(
        fresh.episode_rewards(episodes[0]), model.episode_rewards(episodes[0])
    )


def test_load_of_a_non_reward_checkpoint_raises(tmp_path):
    from robopref.policies import BCConfig, BCPolicy

    path = BCPolicy(3, 2, BCConfig(hidden_sizes=[4])).save(tmp_path / "policy")
    with pytest.raises(RobopError, match="not a 'bt_ensemble'"):
        BTEnsemble.load(path, trainer())
    with pytest.raises(RobopError, match="not a model checkpoint"):
        BTEnsemble.load(tmp_path / "missing", trainer())


# --------------------------------------------------------------------------- metrics


class LinearRewardModel(FakeRewardBase):
    """Exact reward ``sign * obs @ w`` (one member)."""

    obs_dim, act_dim = OBS_DIM, ACT_DIM

    def __init__(self, sign: float = 1.0):
        self.w = sign * np.asarray(TRUE_W)

    def member_rewards(self, obs, act):
        return (np.asarray(obs) @ self.w)[None]

    def fit(self, preferences, episodes):
        return {}


def test_preference_accuracy_of_perfect_and_reversed_models():
    eps = make_episodes(6, T=10, obs_dim=OBS_DIM, act_dim=ACT_DIM, reward_fn=linear_reward(TRUE_W))
    pairs = sample_pairs(eps, SEG_LEN, 50, np.random.default_rng(0))
    assert preference_accuracy(LinearRewardModel(1.0), pairs, eps) == 1.0
    assert preference_accuracy(LinearRewardModel(-1.0), pairs, eps) == 0.0


def test_preference_accuracy_leaves_out_ties():
    eps = make_episodes(2, T=10, obs_dim=OBS_DIM, act_dim=ACT_DIM, reward_fn=linear_reward(TRUE_W))
    tie = (Segment(eid(0), 0, 5), Segment(eid(0), 0, 5))
    assert math.isnan(preference_accuracy(LinearRewardModel(), [tie], eps))
    decided = (Segment(eid(0), 0, 5), Segment(eid(1), 0, 5))
    assert preference_accuracy(LinearRewardModel(), [tie, decided], eps) == 1.0


def test_hidden_features_are_what_the_output_layer_reads():
    """Each member's slice of ``hidden_features`` fed through that member's output layer
    gives its (pre-bound) reward: the features are the last hidden layer, not another."""
    import torch

    model = ensemble(members=3, hidden=(16, 8), output_bound=0.0)
    model.in_mean.normal_()
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(4, 5, model.obs_dim)).astype(np.float32)
    act = rng.normal(size=(4, 5, model.act_dim)).astype(np.float32)
    h = model.hidden_features(obs, act)
    assert h.shape == (4, 5, 3 * 8)
    last = [name for name in model.stack.layers if isinstance(name, str)][-1]
    per_member = torch.as_tensor(h).reshape(4, 5, 3, 8)
    rewards = torch.einsum("btmh,mho->mbt", per_member, model.stack.weight[last].detach()) + \
        model.stack.bias[last].detach().reshape(3, 1, 1)
    np.testing.assert_allclose(rewards.numpy(), model.member_rewards(obs, act), atol=1e-5)
