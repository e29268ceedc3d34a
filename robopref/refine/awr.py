"""Advantage-weighted regression (Peng et al. 2019) with the learned per-step reward.

Per-step credit instead of per-episode: for every step of every episode (rollouts and
demos), the learned reward-to-go ``G_t = sum_k gamma^k r_hat_{t+k}`` (truncated at the
episode end) is compared with a value baseline ``V(o_t)`` fitted to it, and the step is
weighted ``w_t = exp(z_t / temperature)`` with ``z`` the standardised advantage
``A_t = G_t - V(o_t)`` (capped at ``max_weight``, normalised to mean 1). The policy then minimises::

    sum_t w_t * ||pi(o_t) - a_t||^2  +  anchor_weight * ||pi(o_t) - pi_base(o_t)||^2
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from robopref.data import Episode, stack_transitions
from robopref.errors import ConfigError
from robopref.policies.bc import mlp
from robopref.refine.base import Refiner, residual_config, trainable_start
from robopref.refine.rwr import exp_weights, fit_anchored
from robopref.rewards import RewardModel
from robopref.training import Trainer


@dataclass
class AWRConfig:
    """Attributes:
    gamma: discount of the learned reward-to-go.
    temperature: softness of step weights, in units of the advantage std.
    max_weight: cap on a step's weight before normalisation.
    anchor_weight: weight of the L2 anchor to the base policy's mean action.
    value_hidden_sizes: widths of the value baseline MLP.
    value_steps: gradient steps fitting the value baseline.
    residual: train only a residual on the frozen given policy (``ResidualPolicy``; a policy
        that already is one is trained as it is), instead of the whole policy.
    residual_policy: ``ResidualConfig`` options of that residual.
    """

    gamma: float = 0.95
    temperature: float = 0.25
    max_weight: float = 20.0
    anchor_weight: float = 0.1
    value_hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    value_steps: int = 500
    residual: bool = False
    residual_policy: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"awr gamma must lie in (0, 1], got {self.gamma}")
        if not self.temperature > 0 or not self.max_weight >= 1:
            raise ConfigError("awr temperature must be > 0 and max_weight >= 1")
        if self.anchor_weight < 0 or self.value_steps < 1:
            raise ConfigError("awr anchor_weight must be >= 0 and value_steps >= 1")
        residual_config(self.residual_policy, "refine")


def reward_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted sums ``G_t = sum_k gamma^k r_{t+k}`` of one episode's ``(T,)`` rewards."""
    out = np.empty(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


class ValueBaseline(nn.Module):
    def __init__(self, obs: np.ndarray, hidden: list[int]):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(obs.mean(0)))
        self.register_buffer("std", torch.as_tensor(obs.std(0)).clamp_min(1e-3))
        self.net = mlp(obs.shape[1], hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net((obs - self.mean) / self.std).squeeze(-1)


def _value_loss(model: nn.Module, batch: dict[str, torch.Tensor]):
    return ((model(batch["obs"]) - batch["target"]) ** 2).mean(), {}


class AdvantageWeightedRegression(Refiner):
    def __init__(self, config: AWRConfig, trainer: Trainer, task=None, vec_env=None):
        # ``task`` and ``vec_env`` are accepted like every refiner's and unused: this one
        # learns from the loop's rollouts.
        self.config, self.trainer = config, trainer

    def refine(self, policy, base_policy, rollouts, demos, reward_model: RewardModel):
        cfg = self.config
        policy = trainable_start(policy, cfg.residual, cfg.residual_policy, "refine")
        episodes: list[Episode] = list(demos) + list(rollouts)
        obs, act = stack_transitions(episodes)
        returns = np.concatenate(
            [reward_to_go(reward_model.episode_rewards(e), cfg.gamma) for e in episodes]
        ).astype(np.float32)
        scale = float(returns.std()) or 1.0
        value = ValueBaseline(obs, list(cfg.value_hidden_sizes))
        self.trainer.fit(
            value, _value_loss,
            {"obs": torch.as_tensor(obs), "target": torch.as_tensor(returns / scale)},
            steps=cfg.value_steps,
        )
        with torch.no_grad():
            device = next(value.parameters()).device
            baseline = value(torch.as_tensor(obs, device=device)).cpu().numpy() * scale
        weights = exp_weights(returns - baseline, cfg.temperature, cfg.max_weight)
        refined, metrics = fit_anchored(
            self.trainer, policy, base_policy, obs, act, weights, cfg.anchor_weight
        )
        ess = float(weights.sum() ** 2 / (weights**2).sum() / len(weights))
        return refined, {**metrics, "effective_step_fraction": ess}
