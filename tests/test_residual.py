"""The residual policy on a frozen base (robopref.policies.residual) and the regression
refiners' ``residual`` option. The contract suite in test_trainable_policy.py runs on it too."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import FakeRewardBase, make_episodes
from hypothesis import given, settings
from hypothesis import strategies as st

from robopref.errors import ConfigError
from robopref.policies import (
    POLICIES,
    BCConfig,
    BCPolicy,
    ResidualConfig,
    ResidualPolicy,
    as_residual,
    average_policies,
    load_policy,
    train_bc,
)
from robopref.refine import (
    REFINERS,
    AWRConfig,
    RWRConfig,
)
from robopref.training import Trainer, TrainerConfig


def trainer(steps: int = 150, **kwargs) -> Trainer:
    return Trainer(TrainerConfig(steps=steps, batch_size=64, lr=1e-2, device="cpu",
                                 progress=False, **kwargs))


def make_bc(low=-1.0, high=1.0) -> BCPolicy:
    torch.manual_seed(0)
    policy = BCPolicy(5, 2, BCConfig(hidden_sizes=[16], action_low=low, action_high=high))
    train_bc(policy, make_episodes(4, T=20), trainer(30))
    return policy


def randomise(policy: ResidualPolicy, scale: float, seed: int = 0) -> ResidualPolicy:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in policy.net.parameters():
            param.copy_(scale * torch.randn(param.shape, generator=generator))
    return policy


OBS = np.random.default_rng(1).normal(size=(64, 5)).astype(np.float32)
BASE = make_bc()


@pytest.mark.parametrize("see_base_action", [True, False])
def test_at_init_the_residual_policy_is_the_base_exactly(see_base_action):
    base = make_bc()
    policy = ResidualPolicy(base, ResidualConfig(see_base_action=see_base_action))
    np.testing.assert_array_equal(policy.act(OBS), base.act(OBS))
    np.testing.assert_array_equal(policy.act(100 * OBS), base.act(100 * OBS))
    assert float(policy.residual_penalty(torch.as_tensor(OBS)).abs().max()) == 0.0


def test_the_bound_defaults_to_a_fraction_of_the_base_action_range():
    base = make_bc(low=[-1.0, -0.01], high=[1.0, 0.01])  # e.g. normalised and metres per tick
    policy = ResidualPolicy(base, ResidualConfig(max_residual_fraction=0.25))
    np.testing.assert_allclose(policy.bound.numpy(), [0.25, 0.0025])
    explicit = ResidualPolicy(base, ResidualConfig(max_residual=[0.1, 0.001]))
    np.testing.assert_allclose(explicit.bound.numpy(), [0.1, 0.001])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    weight_scale=st.floats(1e-3, 1e3),
    obs_scale=st.floats(1e-3, 1e6),
    bound=st.floats(1e-4, 10.0),
)
def test_the_residual_never_exceeds_its_bound(seed, weight_scale, obs_scale, bound):
    config = ResidualConfig(hidden_sizes=[32, 32], max_residual=bound)
    policy = randomise(ResidualPolicy(BASE, config), weight_scale, seed)
    obs = torch.as_tensor(
        np.random.default_rng(seed).normal(size=(32, 5)) * obs_scale, dtype=torch.float32
    )
    with torch.no_grad():
        residual = policy.residual(obs)
        base_action = policy.base(obs)
        total = policy(obs) - base_action
    assert torch.isfinite(residual).all()
    assert float(residual.abs().max()) <= bound * (1 + 1e-6)
    # base + residual - base carries float32 rounding of the base's size.
    rounding = 2 * torch.finfo(torch.float32).eps * float(base_action.abs().max())
    assert float(total.abs().max()) <= bound * (1 + 1e-6) + rounding


def test_the_base_is_frozen_and_stays_in_eval_mode():
    base = make_bc()
    policy = ResidualPolicy(base, ResidualConfig())
    policy.train()
    assert policy.training and not policy.base.training
    assert not any(p.requires_grad for p in policy.base.parameters())
    assert all(p.requires_grad for p in policy.net.parameters())


@pytest.mark.parametrize("refiner_name", ["rwr", "awr"])
def test_regression_refiners_with_residual_true_train_only_a_residual(refiner_name):
    """``residual: true`` wraps the given whole policy in a fresh residual; the input policy
    (flags included) and the base's weights stay as they were, even under weight decay."""

    class FirstActionReward(FakeRewardBase):
        obs_dim, act_dim = 5, 2

        def member_rewards(self, obs, act):
            return np.asarray(act, dtype=np.float64)[None, ..., 0]

        def fit(self, preferences, episodes):
            return {}

    base = make_bc()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    options = {"hidden_sizes": [16], "max_residual": 0.5, "l2_penalty": 0.01}
    config_cls, refiner_cls = REFINERS[refiner_name]
    extra = {"value_steps": 20} if refiner_name == "awr" else {}
    config = config_cls(anchor_weight=0.0, residual=True, residual_policy=options, **extra)
    refiner = refiner_cls(config, trainer(weight_decay=0.1))
    refined, metrics = refiner.refine(base, base, make_episodes(8, T=20, seed=30), [],
                                      FirstActionReward())
    assert isinstance(refined, ResidualPolicy)
    assert all(p.requires_grad for p in base.parameters())  # the input was not frozen in place
    for key, value in refined.base.state_dict().items():
        assert torch.equal(value, before[key]), key
    for key, value in base.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert float(refined.net[-1].weight.detach().abs().max()) > 0
    shift = refined.act(OBS) - base.act(OBS)
    assert shift[:, 0].mean() > 0.05  # the rewarded direction
    assert np.abs(shift).max() <= 0.5 + 1e-6  # never past the bound
    assert metrics["residual_penalty"] > 0
    # A residual given as the policy is trained as it is, not wrapped again.
    again, _ = refiner.refine(refined, base, make_episodes(4, T=20, seed=40), [],
                              FirstActionReward())
    assert isinstance(again.base, BCPolicy)


def test_regression_refiners_default_to_the_whole_policy():
    assert RWRConfig().residual is False and AWRConfig().residual is False


def test_save_and_load_with_the_base_moved_along(tmp_path):
    base = make_bc()
    base.save(tmp_path / "run" / "checkpoints" / "policy_bc")
    policy = randomise(as_residual(base, ResidualConfig(max_residual=0.3)), 0.5)
    path = policy.save(tmp_path / "run" / "checkpoints" / "policy_round1")
    meta = json.loads((path / "config.json").read_text())
    assert meta["kind"] == "residual" and meta["base"] == "policy_bc"
    shutil.move(tmp_path / "run", tmp_path / "elsewhere")
    loaded = load_policy(tmp_path / "elsewhere" / "checkpoints" / "policy_round1")
    assert isinstance(loaded, ResidualPolicy) and isinstance(loaded.base, BCPolicy)
    np.testing.assert_array_equal(loaded.act(OBS), policy.act(OBS))
    np.testing.assert_array_equal(loaded.bound.numpy(), policy.bound.numpy())
    assert not any(p.requires_grad for p in loaded.base.parameters())


def test_residuals_wrapped_separately_on_one_base_average_their_residuals_only():
    base = make_bc()
    a = randomise(as_residual(base, ResidualConfig()), 0.3, seed=1)
    b = randomise(as_residual(base, ResidualConfig()), 0.3, seed=2)
    assert a.base is not b.base  # each holds its own frozen copy
    mean = average_policies([a, b])
    for (name, pm), pa, pb in zip(
        mean.net.named_parameters(), a.net.parameters(), b.net.parameters(), strict=True
    ):
        assert torch.allclose(pm, (pa + pb) / 2), name
    np.testing.assert_array_equal(mean.base.act(OBS), base.act(OBS))


def test_clone_is_independent():
    policy = as_residual(make_bc(), ResidualConfig())
    copy = policy.clone()
    randomise(copy, 1.0)
    assert float(policy.net[-1].weight.detach().abs().max()) == 0.0


def test_residual_penalty_is_l2_in_units_of_the_bound():
    policy = randomise(ResidualPolicy(make_bc(), ResidualConfig(max_residual=0.2,
                                                                l2_penalty=3.0)), 0.5)
    obs = torch.as_tensor(OBS)
    with torch.no_grad():
        expected = 3.0 * ((policy.residual(obs) / 0.2) ** 2).sum(-1)
        np.testing.assert_allclose(policy.residual_penalty(obs), expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_sizes": []}, "hidden_sizes"),
        ({"max_residual": 0.0}, "max_residual"),
        ({"max_residual": [0.1, -0.1]}, "max_residual"),
        ({"max_residual_fraction": 0.0}, "max_residual_fraction"),
        ({"l2_penalty": -1.0}, "l2_penalty"),
    ],
)
def test_config_validation_is_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        ResidualConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_residual_options_in_a_refiner_config_name_the_key():
    with pytest.raises(ConfigError, match="refine.residual_policy.size") as info:
        RWRConfig(residual=True, residual_policy={"size": 3})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="l2_penalty"):
        AWRConfig(residual_policy={"l2_penalty": -1})


def test_wrong_bound_length_and_unbounded_base_are_refused():
    with pytest.raises(ConfigError, match="one per action dimension"):
        ResidualPolicy(make_bc(), ResidualConfig(max_residual=[0.1, 0.1, 0.1]))
    unbounded = make_bc()
    unbounded.config = None  # a base that declares no action bounds
    with pytest.raises(ConfigError, match="max_residual in action units"):
        ResidualPolicy(unbounded, ResidualConfig())
    ResidualPolicy(unbounded, ResidualConfig(max_residual=0.1))


def test_registered_and_refuses_to_be_built_without_a_base():
    assert POLICIES["residual"] == (ResidualConfig, ResidualPolicy)
    with pytest.raises(ConfigError, match="refine.residual=true"):
        ResidualPolicy(BCConfig(), ResidualConfig())  # a config where the base belongs


def test_imitation_loss_is_per_sample_in_units_of_the_half_action_range():
    base = make_bc(low=[-1.0, -0.01], high=[1.0, 0.01])
    policy = ResidualPolicy(base, ResidualConfig())
    obs = torch.as_tensor(OBS[:4])
    with torch.no_grad():
        target = base(obs) + torch.tensor([0.5, 0.005])
        np.testing.assert_allclose(policy.imitation_loss(obs, target), np.full(4, 0.5), rtol=1e-4)


def test_a_checkpoint_with_its_output_in_action_units_loads_to_the_same_actions(tmp_path):
    """Residual checkpoints written before the net's output was measured in units of the bound
    (``bound * tanh(raw / bound)``, no ``output_units`` in the config) load converted."""
    from safetensors.torch import load_file, save_file

    base = make_bc()
    base.save(tmp_path / "policy_bc")
    policy = randomise(as_residual(base, ResidualConfig(max_residual=[0.3, 0.002])), 0.5)
    path = policy.save(tmp_path / "policy_round1")
    bound = policy.bound
    # The same residual as the old parametrisation stored it: raw_old = bound * raw_new.
    tensors = load_file(str(path / "model.safetensors"))
    tensors["net.4.weight"] = tensors["net.4.weight"] * bound[:, None]
    tensors["net.4.bias"] = tensors["net.4.bias"] * bound
    save_file(tensors, str(path / "model.safetensors"))
    meta = json.loads((path / "config.json").read_text())
    del meta["config"]["output_units"]
    (path / "config.json").write_text(json.dumps(meta))
    with torch.no_grad():
        z = torch.cat([(torch.as_tensor(OBS) - policy.obs_mean) / policy.obs_std,
                       policy.base_action(torch.as_tensor(OBS)) / policy.base_action_scale], -1)
        hidden = policy.net[:-1](z)
        raw_old = hidden @ tensors["net.4.weight"].T + tensors["net.4.bias"]
        expected = policy.base_action(torch.as_tensor(OBS)) + bound * torch.tanh(raw_old / bound)
    loaded = load_policy(path)
    np.testing.assert_allclose(loaded.act(OBS), expected.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loaded.act(OBS), policy.act(OBS), rtol=1e-5, atol=1e-7)
    # Saved again, it is a current checkpoint and loads unchanged.
    again = load_policy(loaded.save(tmp_path / "policy_round2"))
    np.testing.assert_array_equal(again.act(OBS), loaded.act(OBS))


def test_a_gradient_step_moves_the_residual_by_the_same_fraction_of_its_bound_in_any_units():
    """The same data in metres (x 1e-3) and in normalised units: the same Adam steps give the
    same residual in units of the bound (with the net's output in action units, the metre
    version moved ~1000x further relative to its bound)."""
    moved = []
    for unit in (1.0, 1e-3):
        torch.manual_seed(0)
        base = BCPolicy(5, 2, BCConfig(hidden_sizes=[16], action_low=-unit, action_high=unit))
        policy = as_residual(base, ResidualConfig())
        optimiser = torch.optim.Adam(policy.net.parameters(), lr=3e-4)
        obs = torch.as_tensor(OBS)
        target = policy(obs).detach() + 0.1 * unit
        for _ in range(5):
            loss = policy.imitation_loss(obs, target).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            moved.append((policy.residual(obs) / policy.bound).numpy())
    assert np.abs(moved[0]).mean() > 1e-3
    np.testing.assert_allclose(moved[1], moved[0], rtol=1e-3, atol=1e-6)
