"""Behaviour cloning policies (robopref.policies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_episode

from robopref.data import Episode
from robopref.errors import CheckpointError, ConfigError, RobopError
from robopref.policies import (
    POLICIES,
    BCConfig,
    BCPolicy,
    Policy,
    average_policies,
    train_bc,
)
from robopref.training import (
    Trainer,
    TrainerConfig,
    load_model,
    load_state_dict_checked,
)

W = np.array([[0.5, -0.3], [0.2, 0.4], [-0.4, 0.1]], np.float32)  # (obs_dim 3, act_dim 2)


def linear_demos(n: int = 8, T: int = 20, offset: float = 0.0, seed: int = 0) -> list[Episode]:
    """Observations uniform in [-1, 1] (shifted by ``offset``); actions = (obs - offset) @ W."""
    demos = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        obs = rng.uniform(-1, 1, size=(T, 3)).astype(np.float32)
        demos.append(Episode(obs + offset, obs @ W, np.zeros(T), np.zeros(T, bool)))
    return demos


def trainer(steps: int, **kwargs) -> Trainer:
    kwargs = {"batch_size": 64, "lr": 3e-3, "device": "cpu", "progress": False, **kwargs}
    return Trainer(TrainerConfig(steps=steps, **kwargs))


def small_config(**kwargs) -> BCConfig:
    return BCConfig(hidden_sizes=[32, 32], **kwargs)


def make_policy(obs_dim=3, act_dim=2, seed=0, **kwargs) -> BCPolicy:
    torch.manual_seed(seed)
    return BCPolicy(obs_dim, act_dim, small_config(**kwargs))


def mse(policy: BCPolicy, demos: list[Episode]) -> float:
    obs = np.concatenate([d.observations for d in demos])
    act = np.concatenate([d.actions for d in demos])
    return float(((policy.act(obs) - act) ** 2).mean())


def test_registry_and_contract():
    assert POLICIES["bc"] == (BCConfig, BCPolicy)
    policy = make_policy()
    assert isinstance(policy, Policy)
    out = policy.act(np.zeros((4, 3), np.float32))
    assert out.shape == (4, 2) and out.dtype == np.float32
    policy.begin_episodes(4)  # stateless: accepted, changes nothing


def test_bc_learns_a_linear_map():
    demos = linear_demos(offset=3.0)  # off-centre observations: the normaliser must handle them
    held_out = linear_demos(n=2, offset=3.0, seed=100)
    policy = make_policy()
    before = mse(policy, demos)
    metrics = train_bc(policy, demos, trainer(400))
    assert metrics["loss"] < 0.02
    assert mse(policy, demos) < 0.005
    assert mse(policy, held_out) < 0.005
    assert mse(policy, demos) < 0.05 * before


def test_train_bc_sets_the_observation_normaliser():
    demos = linear_demos(n=3, offset=2.0)
    policy = make_policy()
    train_bc(policy, demos, trainer(1))
    obs = np.concatenate([d.observations for d in demos])
    np.testing.assert_allclose(policy.obs_mean.numpy(), obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(policy.obs_std.numpy(), obs.std(0, ddof=1), rtol=1e-4)


def test_constant_observation_dimensions_do_not_blow_up():
    demos = linear_demos(n=2)
    for d in demos:
        d.observations[:, 2] = 0.0
    policy = make_policy()
    train_bc(policy, demos, trainer(5))
    assert policy.obs_std[2].item() == pytest.approx(1e-3)
    assert np.isfinite(policy.act(demos[0].observations)).all()


@pytest.mark.parametrize(("low", "high"), [(-1.0, 1.0), (-2.0, 0.5), (3.0, 4.0)])
def test_actions_stay_within_bounds(low, high):
    policy = make_policy(action_low=low, action_high=high)
    with torch.no_grad():
        for p in policy.net.parameters():
            p.mul_(50.0)  # saturate the tanh
    obs = np.random.default_rng(0).normal(scale=100.0, size=(500, 3)).astype(np.float32)
    out = policy.act(obs)
    assert out.min() >= low and out.max() <= high
    assert out.min() < low + 0.05 * (high - low) and out.max() > high - 0.05 * (high - low)


def test_gaussian_head_trains():
    demos = linear_demos()
    policy = make_policy(head="gaussian")
    log_std_before = policy.log_std.detach().clone()
    obs = torch.as_tensor(np.concatenate([d.observations for d in demos]))
    act = torch.as_tensor(np.concatenate([d.actions for d in demos]))
    policy.set_normalizer(obs.numpy())
    nll_before = policy.imitation_loss(obs, act).mean().item()
    train_bc(policy, demos, trainer(400))
    with torch.no_grad():
        nll_after = policy.imitation_loss(obs, act).mean().item()
    assert nll_after < nll_before - 1.0
    assert mse(policy, demos) < 0.01
    assert (policy.log_std.detach() < log_std_before).all()  # learned to be more certain


def test_bc_loss_weights():
    policy = make_policy()
    obs = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    act = torch.zeros(6, 2)
    per_sample = policy.imitation_loss(obs, act).detach()
    weight = torch.tensor([1.0, 0.0, 2.0, 0.0, 0.0, 1.0])
    loss, _ = policy.bc_loss(policy, {"obs": obs, "act": act, "weight": weight})
    expected = (per_sample * weight).sum() / weight.sum()
    assert torch.allclose(loss.detach(), expected)
    plain, _ = policy.bc_loss(policy, {"obs": obs, "act": act})
    assert torch.allclose(plain.detach(), per_sample.mean())


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    demos = linear_demos(n=3, offset=1.0)
    policy = make_policy(head="gaussian", action_low=-2.0, action_high=2.0)
    train_bc(policy, demos, trainer(30))
    path = tmp_path / "policy.pt"
    policy.save(path)
    loaded = BCPolicy.load(path)
    assert (loaded.obs_dim, loaded.act_dim) == (3, 2)
    assert loaded.config == policy.config
    obs = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.act(obs), policy.act(obs))
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_load_into_policy_of_another_obs_dim_raises(tmp_path):
    path = tmp_path / "policy"
    make_policy(obs_dim=3).save(path)
    other = make_policy(obs_dim=4)
    with pytest.raises(CheckpointError, match="another shape") as info:
        load_state_dict_checked(other, load_model(path, "bc")[1], path)
    assert "\n" not in str(info.value)


def test_resume_bc_training_from_checkpoint_of_another_obs_dim_raises(tmp_path):
    path = tmp_path / "bc_train.pt"
    cfg = TrainerConfig(steps=2, batch_size=8, device="cpu", progress=False)
    train_bc(make_policy(), linear_demos(n=1), Trainer(cfg, checkpoint_path=path))
    demos4 = [make_episode(10, obs_dim=4, act_dim=2, seed=1)]
    with pytest.raises(CheckpointError, match="another shape"):
        train_bc(make_policy(obs_dim=4), demos4, Trainer(cfg, checkpoint_path=path))


def test_load_of_a_non_policy_checkpoint_raises(tmp_path):
    path = tmp_path / "trainer.pt"
    cfg = TrainerConfig(steps=1, batch_size=8, device="cpu", progress=False)
    train_bc(make_policy(), linear_demos(n=1), Trainer(cfg, checkpoint_path=path))
    with pytest.raises(RobopError, match="not a BC policy"):
        BCPolicy.load(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        BCPolicy.load(tmp_path / "missing.pt")


@pytest.mark.parametrize(("obs_dim", "act_dim"), [(4, 2), (3, 1)])
def test_train_bc_with_mismatched_dims_raises(obs_dim, act_dim):
    demos = [make_episode(10, obs_dim=obs_dim, act_dim=act_dim)]
    with pytest.raises(ConfigError, match="rebuild the policy"):
        train_bc(make_policy(obs_dim=3, act_dim=2), demos, trainer(1))


def test_train_bc_without_demos_raises():
    with pytest.raises(ValueError):
        train_bc(make_policy(), [], trainer(1))


def test_clone_is_independent():
    policy = make_policy()
    twin = policy.clone()
    obs = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(twin.act(obs), policy.act(obs))
    with torch.no_grad():
        twin.net[0].weight.add_(1.0)
    assert not np.array_equal(twin.act(obs), policy.act(obs))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"head": "diffusion"},
        {"hidden_sizes": []},
        {"hidden_sizes": [32, 0]},
        {"action_low": 1.0, "action_high": 1.0},
        {"action_low": 2.0, "action_high": -2.0},
    ],
)
def test_bc_config_validation(kwargs):
    with pytest.raises(ConfigError):
        BCConfig(**kwargs)


def mixed_scale_demos(n: int = 8, T: int = 40) -> list[Episode]:
    """Action 0 of order 1e-2 (centimetres), action 1 of order 1: the mixed units of a
    translation-plus-rotation arm action."""
    demos = []
    for i in range(n):
        rng = np.random.default_rng(i)
        obs = rng.uniform(-1, 1, size=(T, 3)).astype(np.float32)
        act = np.stack([1e-2 * np.sin(3 * obs[:, 0]), np.cos(2 * obs[:, 1])], axis=1)
        demos.append(Episode(obs, act, np.zeros(T), np.zeros(T, bool)))
    return demos


def small_dimension_error(normalize: bool) -> float:
    demos = mixed_scale_demos()
    policy = make_policy(normalize_actions=normalize)
    train_bc(policy, demos, trainer(400))
    obs = np.concatenate([d.observations for d in demos])
    act = np.concatenate([d.actions for d in demos])
    return float(np.abs(policy.act(obs)[:, 0] - act[:, 0]).mean() / np.abs(act[:, 0]).mean())


def test_action_normalisation_fits_the_small_dimension_the_raw_loss_ignores():
    normalised, raw = small_dimension_error(True), small_dimension_error(False)
    assert normalised < 0.75 * raw, (normalised, raw)


def test_normalised_loss_is_squared_error_in_units_of_the_action_scale():
    policy = make_policy(normalize_actions=True)
    policy.action_scale.copy_(torch.tensor([0.01, 2.0]))
    obs = torch.zeros(1, 3)
    target = policy(obs) + torch.tensor([[0.03, 1.0]])
    expected = (0.03 / 0.01) ** 2 + (1.0 / 2.0) ** 2
    assert policy.imitation_loss(obs, target).item() == pytest.approx(expected, rel=1e-4)


def test_action_scale_is_the_demo_std_and_survives_save_and_load(tmp_path):
    demos = mixed_scale_demos()
    policy = make_policy(normalize_actions=True)
    train_bc(policy, demos, trainer(2))
    act = np.concatenate([d.actions for d in demos])
    np.testing.assert_allclose(policy.action_scale.numpy(), act.std(0, ddof=1), rtol=1e-4)
    policy.save(tmp_path / "p.pt")
    loaded = BCPolicy.load(tmp_path / "p.pt")
    assert torch.equal(loaded.action_scale, policy.action_scale)
    assert make_policy().action_scale.tolist() == [1.0, 1.0]  # off by default


def test_action_scale_floors_a_constant_dimension():
    policy = make_policy()
    policy.set_action_scale(np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 3.0]]))
    assert policy.action_scale[0] == pytest.approx(1e-3 * policy.action_scale[1].item())


def test_checkpoint_from_before_action_scale_loads_with_unit_scale(tmp_path):
    from robopref.training import save_checkpoint

    policy = make_policy()
    state = {k: v for k, v in policy.state_dict().items() if k != "action_scale"}
    save_checkpoint(tmp_path / "old.pt", {"kind": "bc_policy", "obs_dim": 3, "act_dim": 2,
                                          "config": {"hidden_sizes": [32, 32]}, "model": state})
    assert BCPolicy.load(tmp_path / "old.pt").action_scale.tolist() == [1.0, 1.0]


def test_average_policies_is_the_parameter_mean_and_leaves_inputs_alone():
    base = make_policy(seed=0)
    train_bc(base, linear_demos(), trainer(5))
    members = [base.clone() for _ in range(3)]
    for i, member in enumerate(members):
        with torch.no_grad():
            for param in member.net.parameters():
                param.add_(float(i))
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in members]
    averaged = average_policies(members)
    for key, value in averaged.state_dict().items():
        expected = torch.stack([b[key] for b in before]).mean(0)
        assert torch.allclose(value, expected), key
    for member, state in zip(members, before, strict=True):
        assert all(torch.equal(v, state[k]) for k, v in member.state_dict().items())
    assert average_policies([base]).state_dict().keys() == base.state_dict().keys()


def test_average_policies_refuses_other_shapes_and_other_bases():
    a, b = make_policy(seed=0), BCPolicy(3, 2, BCConfig(hidden_sizes=[16]))
    with pytest.raises(ConfigError, match="different types or shapes"):
        average_policies([a, b])
    c = make_policy(seed=2)
    c.obs_mean.fill_(3.0)
    with pytest.raises(ConfigError, match="obs_mean"):
        average_policies([a, c])
    with pytest.raises(ValueError):
        average_policies([])
