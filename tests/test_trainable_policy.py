"""The trainable-policy protocol: policies on a frozen base (a minimal one, and the shipped
``ResidualPolicy``) go through the refiners, weight averaging and checkpoints without any of
them knowing their type."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import FakeRewardBase, make_episodes
from torch import nn

from robopref.errors import CheckpointError
from robopref.policies import (
    BCConfig,
    BCPolicy,
    ResidualConfig,
    ResidualPolicy,
    TrainablePolicy,
    average_policies,
    train_bc,
)
from robopref.refine import (
    AdvantageWeightedRegression,
    AWRConfig,
    RewardWeightedRegression,
    RWRConfig,
)
from robopref.training import Trainer, TrainerConfig


class BiasOnBase(TrainablePolicy):
    """action = base(obs) + bias: the smallest policy that sits on a frozen base."""

    kind = "bias_on_base"

    def __init__(self, base: TrainablePolicy):
        super().__init__()
        self.obs_dim, self.act_dim = base.obs_dim, base.act_dim
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.bias = nn.Parameter(torch.zeros(self.act_dim))

    def forward(self, obs):
        return self.base(obs) + self.bias

    def imitation_loss(self, obs, actions):
        return ((self(obs) - actions) ** 2).sum(-1)

    def base_policy(self):
        return self.base

    def config_dict(self):
        return {}

    @classmethod
    def from_config(cls, config, obs_dim, act_dim, base):
        return cls(base)


class FirstActionReward(FakeRewardBase):
    """Reward = first action coordinate: refinement should push the bias up there."""

    obs_dim, act_dim = 5, 2

    def member_rewards(self, obs, act):
        return np.asarray(act, dtype=np.float64)[None, ..., 0]

    def fit(self, preferences, episodes):
        return {}


def trainer(steps=200):
    return Trainer(TrainerConfig(steps=steps, batch_size=64, lr=1e-2, device="cpu",
                                 progress=False))


def own_trainables(policy: TrainablePolicy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.named_parameters() if v.requires_grad}


def perturb(policy: TrainablePolicy, seed: int) -> TrainablePolicy:
    """Set every trainable parameter to seeded normal values (a 'refined' policy)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in policy.parameters():
            if param.requires_grad:
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return policy


ON_BASE = {
    "bias": BiasOnBase,
    "residual": lambda base: ResidualPolicy(base, ResidualConfig(hidden_sizes=[16])),
}


@pytest.fixture(params=sorted(ON_BASE))
def on_base(request):
    """Builds a policy of each kind on a given base."""
    return ON_BASE[request.param]


@pytest.fixture
def base(tmp_path):
    policy = BCPolicy(5, 2, BCConfig(hidden_sizes=[16], action_low=-3.0, action_high=3.0))
    train_bc(policy, make_episodes(4, T=20), trainer(50))
    policy.save(tmp_path / "checkpoints" / "policy_bc")
    return policy


@pytest.mark.parametrize("refiner_cls", ["rwr", "awr"])
def test_refiners_train_only_the_policy_on_top_of_the_frozen_base(base, on_base, refiner_cls):
    refiner = (
        RewardWeightedRegression(RWRConfig(anchor_weight=0.0), trainer())
        if refiner_cls == "rwr"
        else AdvantageWeightedRegression(AWRConfig(anchor_weight=0.0, value_steps=20), trainer())
    )
    policy = on_base(base)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    initial = own_trainables(policy)
    rollouts = make_episodes(8, T=20, seed=30)
    refined, _ = refiner.refine(policy, base, rollouts, [], FirstActionReward())
    assert type(refined) is type(policy) and refined is not policy
    for key, value in own_trainables(policy).items():
        assert torch.equal(value, initial[key]), key  # the input is never modified
    for key, value in refined.base.state_dict().items():
        assert torch.equal(value, before[key]), key  # the base stayed frozen
    changed = own_trainables(refined)
    assert any(not torch.equal(changed[k], initial[k]) for k in initial)


def test_averaging_averages_only_what_trains(base, on_base):
    a, b = perturb(on_base(base), 1), perturb(on_base(base), 2)
    mean = average_policies([a, b])
    pa, pb, pm = own_trainables(a), own_trainables(b), own_trainables(mean)
    assert set(pm) == set(pa) and not any(k.startswith("base.") for k in pm)
    for key in pm:
        assert torch.allclose(pm[key], (pa[key] + pb[key]) / 2), key
    for key, value in mean.base.state_dict().items():
        assert torch.equal(value, base.state_dict()[key])


def test_checkpoint_names_its_base_and_moves_with_it(base, on_base, tmp_path):
    policy = perturb(on_base(base), 3)
    path = policy.save(tmp_path / "checkpoints" / "policy_round1")
    meta = json.loads((path / "config.json").read_text())
    assert meta["kind"] == policy.kind and meta["base"] == "policy_bc"
    assert meta["format_version"] == 1 and (path / "model.safetensors").is_file()
    from safetensors.torch import load_file

    stored = set(load_file(str(path / "model.safetensors")))
    assert stored == set(policy.own_state()) and set(own_trainables(policy)) <= stored
    assert not any(k.startswith("base.") for k in stored)  # not the base's weights
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "checkpoints", moved)
    loaded = type(policy).load(moved / "policy_round1")
    obs = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded.act(obs), policy.act(obs))
    shutil.rmtree(moved / "policy_bc")
    with pytest.raises(CheckpointError, match="base policy policy_bc") as info:
        type(policy).load(moved / "policy_round1")
    assert "\n" not in str(info.value)


def test_a_policy_whose_base_was_never_saved_cannot_be_saved(on_base, tmp_path):
    base = BCPolicy(5, 2, BCConfig(hidden_sizes=[4]))
    with pytest.raises(CheckpointError, match="save the base policy first"):
        on_base(base).save(tmp_path / "p")
    assert not (tmp_path / "p").exists()
