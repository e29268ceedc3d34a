"""PPO on the learned reward (robopref.refine.ppo), on a 1-D point that should reach a target.

The toy task is deterministic: a point at ``x`` moves by ``0.1 * a`` per step (``a`` in
[-1, 1]), 20 steps from one of four starts. The learned reward is the negative distance to the
target after the move; the env's own reward says the opposite, so a PPO that read it would
fail these tests.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import FakeRewardBase

from robopref.envs.task import Task
from robopref.errors import ConfigError
from robopref.policies import BCConfig, BCPolicy, ResidualPolicy
from robopref.refine import REFINERS, PPOConfig, PPORefiner
from robopref.refine.ppo import gae, learned_rewards
from robopref.training import Trainer, TrainerConfig

TARGET, STEP, T = 0.5, 0.1, 20


class PointEnv(gym.Env):
    """``obs = [x]``; variation ``v`` starts at ``x = v / 4 - 0.5``; ``terminate_at`` ends
    episodes early (a protective stop)."""

    def __init__(self, terminate_at: int | None = None):
        self.observation_space = gym.spaces.Box(-5, 5, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.next_variation, self.terminate_at = None, terminate_at
        self.x, self.t = 0.0, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        variation = (options or {}).get("variation", self.next_variation)
        self.next_variation = None
        self.x, self.t = float(variation) / 4 - 0.5, 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += STEP * float(np.clip(action[0], -1, 1))
        self.t += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        # The env's reward prefers the opposite direction: PPO must ignore it.
        return np.array([self.x], np.float32), abs(self.x - TARGET), terminated, False, {}


class PointTask(Task):
    name, episode_steps, fps, obs_dim, act_dim = "point", T, 10, 1, 1
    action_low, action_high = np.array([-1.0], np.float32), np.array([1.0], np.float32)
    action_units, reward_scale, state_dim = "normalised", 1.0, None

    def __init__(self, terminate_at: int | None = None):
        self.terminate_at = terminate_at

    def variations(self, split):
        return {"train": [0, 1, 2, 3], "validation": [4], "test": [5]}[split]

    def make_env(self, seed=0):
        return PointEnv(self.terminate_at)

    def make_expert(self, options, num_envs, seed=0):
        raise NotImplementedError


class DistanceReward(FakeRewardBase):
    """Learned reward: minus the distance to the target after the move, ``(1, B, T)``."""

    obs_dim, act_dim = 1, 1

    def member_rewards(self, obs, act):
        moved = np.asarray(obs)[..., 0] + STEP * np.clip(np.asarray(act)[..., 0], -1, 1)
        return -np.abs(moved - TARGET)[None]

    def fit(self, preferences, episodes):
        return {}


def base_policy() -> BCPolicy:
    torch.manual_seed(0)
    return BCPolicy(1, 1, BCConfig(hidden_sizes=[16]))


def mean_policy_return(policy) -> float:
    """Learned return of the deterministic mean policy, averaged over the four starts."""
    x = np.array([[v / 4 - 0.5] for v in range(4)], np.float32)
    total = np.zeros(4)
    for _ in range(T):
        action = policy.act(x)
        total += DistanceReward().member_rewards(x[:, None], action[:, None])[0, :, 0]
        x = (x + STEP * np.clip(action, -1, 1)).astype(np.float32)
    return float(total.mean())


@pytest.fixture(scope="module")
def task_env():
    task = PointTask()
    env = task.make_vector_env(8)
    yield task, env
    env.close()


def ppo(task_env, **kwargs) -> PPORefiner:
    values = dict(iterations=12, episodes_per_iteration=16, minibatch_size=64, lr=3e-3,
                  policy_lr=3e-3, residual_lr=3e-3, init_std=0.3, anchor_weight=0.0)
    values.update(kwargs)
    trainer = Trainer(TrainerConfig(device="cpu", progress=False))
    return PPORefiner(PPOConfig(**values), trainer, *task_env)


@pytest.mark.parametrize("residual", [False, True], ids=["whole", "residual"])
def test_ppo_improves_the_learned_return(task_env, residual):
    base = base_policy()
    before = mean_policy_return(base)
    refiner = ppo(task_env, residual=residual, residual_policy={"max_residual": 1.0})
    torch.manual_seed(1)
    refined, metrics = refiner.refine(base, base, [], [], DistanceReward())
    after = mean_policy_return(refined)
    assert isinstance(refined, ResidualPolicy) == residual
    assert after > before + 3.0, (before, after)
    # The sampled (noisy) on-policy returns rise too.
    assert metrics["learned_return_last"] > metrics["learned_return_first"]
    assert metrics["env_steps"] == 12 * 16 * T
    assert {"approx_kl", "clip_fraction", "residual_norm", "std"} <= set(metrics)
    assert len(refiner.history) == 12
    assert metrics["residual_norm"] > 0.1


def test_residual_ppo_trains_only_the_residual(task_env):
    base = base_policy()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    refined, _ = ppo(task_env, iterations=2, residual=True).refine(
        base, base, [], [], DistanceReward()
    )
    assert all(p.requires_grad for p in base.parameters())  # the input is untouched
    for key, value in base.state_dict().items():
        assert torch.equal(value, state[key]), key
    for key, value in refined.base.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert float(refined.net[-1].weight.detach().abs().max()) > 0
    # An existing residual is trained as it is (not wrapped again) and not modified.
    weight = refined.net[-1].weight.detach().clone()
    again, _ = ppo(task_env, iterations=1, residual=True).refine(
        refined, base, [], [], DistanceReward()
    )
    assert isinstance(again.base, BCPolicy) and again is not refined
    assert torch.equal(refined.net[-1].weight, weight)


def test_a_large_anchor_keeps_the_policy_at_the_base(task_env):
    base = base_policy()
    obs = np.linspace(-1, 1, 41, dtype=np.float32)[:, None]
    shifts, norms = {}, {}
    for anchor in (0.0, 100.0):
        torch.manual_seed(1)
        refined, metrics = ppo(task_env, iterations=6, anchor_weight=anchor).refine(
            base, base, [], [], DistanceReward()
        )
        shifts[anchor] = float(np.abs(refined.act(obs) - base.act(obs)).mean())
        norms[anchor] = metrics["residual_norm"]
    # Measured: mean |shift| 0.019 (anchor 100) vs 0.23 (anchor 0) over x in [-1, 1].
    assert shifts[100.0] < 0.2 * shifts[0.0] and shifts[0.0] > 0.1, shifts
    assert norms[100.0] < 0.1 * norms[0.0], norms


def test_the_value_network_trains_every_epoch_after_the_kl_stop(task_env):
    """A KL target so small that the policy stops after its first minibatch step each
    iteration: the value network still takes all its minibatch steps and fits the returns."""
    base = base_policy()
    torch.manual_seed(1)
    refiner = ppo(task_env, iterations=6, target_kl=1e-9, epochs=10)
    refiner.refine(base, base, [], [], DistanceReward())
    assert [h["updates"] for h in refiner.history] == [1.0] * 6
    losses = [h["value_loss"] for h in refiner.history]
    # Value targets have a spread of about 1 (rewards in units of the returns' std). Measured:
    # 0.08-0.21 per iteration; 0.43-0.83 when the KL stop ended the value's updates too (one
    # value step per iteration).
    assert max(losses) < 0.3, losses


def test_terminated_episodes_keep_only_their_steps():
    task = PointTask(terminate_at=5)
    env = task.make_vector_env(3)
    try:
        base = base_policy()
        refiner = ppo((task, env), iterations=2, episodes_per_iteration=4)
        _, metrics = refiner.refine(base, base, [], [], DistanceReward())
    finally:
        env.close()
    assert metrics["env_steps"] == 2 * 4 * 5  # 4 episodes on 3 envs: the idle one discarded


def test_gae_bootstraps_after_a_time_limit_and_not_after_a_termination():
    rewards, values = np.array([1.0, 2.0]), np.array([0.5, 0.25])
    adv, ret = gae(rewards, values, last_value=4.0, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(ret, [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4])
    np.testing.assert_allclose(adv, ret - values)
    _, ret = gae(rewards, values, last_value=0.0, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(ret, [2.0, 2.0])
    adv, _ = gae(rewards, values, last_value=4.0, gamma=0.5, lam=0.0)  # one-step TD errors
    np.testing.assert_allclose(adv, [1 + 0.5 * 0.25 - 0.5, 2 + 0.5 * 4 - 0.25])


def test_ensemble_rewards_can_be_refined_on_pessimistically():
    class TwoMembers(DistanceReward):
        def member_rewards(self, obs, act):
            shape = np.asarray(act).shape[:-1]
            return np.stack([np.full(shape, 1.0), np.full(shape, 3.0)])

    obs, act = np.zeros((2, 4, 1)), np.zeros((2, 4, 1))
    np.testing.assert_allclose(learned_rewards(TwoMembers(), obs, act, 0.0), 2.0)
    np.testing.assert_allclose(learned_rewards(TwoMembers(), obs, act, 0.5), 1.5)


def test_without_a_task_it_says_how_to_build_it():
    base = base_policy()
    refiner = PPORefiner(PPOConfig(), Trainer(TrainerConfig(device="cpu", progress=False)))
    with pytest.raises(ConfigError, match="task and its vector env"):
        refiner.refine(base, base, [], [], DistanceReward())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iterations": 0}, "iterations"),
        ({"minibatch_size": 0}, "minibatch_size"),
        ({"lr": 0.0}, "lr"),
        ({"policy_lr": -1.0}, "policy_lr"),
        ({"residual_lr": 0.0}, "residual_lr"),
        ({"gamma": 0.0}, "gamma"),
        ({"gae_lambda": 1.5}, "gae_lambda"),
        ({"clip_ratio": 1.0}, "clip_ratio"),
        ({"anchor_weight": -1.0}, "anchor_weight"),
        ({"init_std": 0.0}, "init_std"),
        ({"target_kl": 0.0}, "target_kl"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"value_hidden_sizes": []}, "value_hidden_sizes"),
        ({"reward_pessimism_k": -1.0}, "reward_pessimism_k"),
        ({"residual_policy": {"max_residual": -1.0}}, "max_residual"),
        ({"residual_policy": {"width": 3}}, "refine.residual_policy.width"),
    ],
)
def test_config_validation_is_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        PPOConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_registered_and_target_kl_may_be_off():
    assert REFINERS["ppo"] == (PPOConfig, PPORefiner)
    PPOConfig(target_kl=None, entropy_coef=0.0, gae_lambda=0.0)


def test_the_demo_builds_ppo_on_a_residual_with_the_task_and_its_vector_env(tmp_path, capsys):
    """`robopref demo refine=ppo refine.residual=true` wires the task and vec env into PPO; the
    rounds' residuals are saved on the BC checkpoint and averaged at the end."""
    import json

    from conftest import robopref_in_process

    robopref_in_process(
        "demo", "env.task=reach-v3", "env.max_episode_steps=10", "progress=false",
        "tensorboard=false", "loop.rounds=2", "loop.num_demos=2", "loop.rollouts_per_round=2",
        "loop.queries_per_round=4", "loop.eval_episodes=1", "loop.test_episodes=1",
        "loop.heldout_pairs=10", "loop.segment_length=5", "loop.average_last=2",
        "loop.refine_from=base", "train.bc.steps=10", "train.reward.steps=5",
        "refine=ppo", "refine.residual=true", "refine.iterations=1",
        "refine.episodes_per_iteration=2", f"hydra.run.dir={tmp_path}/run", capsys=capsys,
    )
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    refine = metrics["rounds"][-1]["extra"]["refine"]
    assert refine["env_steps"] == 2 * 10 and refine["iterations"] == 1
    # Every env step of the run, by use (10-step episodes): 2 demos; 2 rounds x 2 rollouts;
    # PPO's own 2 x 2 episodes; evaluation: 3 rounds x 1, the averaged policy's 1, test 2 x 1.
    assert metrics["env_steps"] == {
        "demos": 20, "exploration": 40, "refiner": 40, "evaluation": 60,
        "learning": 100, "total": 160,
    }
    for name in ("policy_round1", "policy_round2", "policy_selected"):
        meta = json.loads((run / "checkpoints" / name / "config.json").read_text())
        assert meta["kind"] == "residual" and meta["base"] == "policy_bc", name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("residual", [False, True], ids=["whole", "residual"])
def test_ppo_runs_on_cuda(residual):
    """Rollouts step the CPU env while the policy, its std, the value net and the anchor live
    on the GPU; the refined policy acts on NumPy observations from there."""
    task = PointTask()
    env = task.make_vector_env(4)
    try:
        base = base_policy()
        trainer = Trainer(TrainerConfig(device="cuda", progress=False))
        config = PPOConfig(iterations=2, episodes_per_iteration=4, residual=residual)
        refined, metrics = PPORefiner(config, trainer, task, env).refine(
            base, base, [], [], DistanceReward()
        )
    finally:
        env.close()
    assert next(refined.parameters()).device.type == "cuda"
    assert next(base.parameters()).device.type == "cpu"  # the input stays where it was
    assert refined.act(np.zeros((3, 1), np.float32)).shape == (3, 1)
    assert np.isfinite(metrics["learned_return_last"])
