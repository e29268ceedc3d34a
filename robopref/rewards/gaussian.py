"""Robust Gaussian reward model (PEARL-style): a per-step reward distribution, not a point.

Model, for observations ``(B, T, obs_dim)`` and actions ``(B, T, act_dim)``::

    r_t ~ N(mu(o_t, a_t), sigma(o_t, a_t)^2)     mu, log sigma: two heads on one MLP trunk

Loss over pairs (a_i, b_i) of length-L segments with soft target y_i in [0, 1] and weight
w_i, from S reparameterised samples ``r_t^s = mu_t + sigma_t eps_t^s``, ``eps ~ N(0, 1)``::

    logit_i^s = sum_t r^s(a_t) - sum_t r^s(b_t)
    p_i       = (1/S) sum_s sigmoid(logit_i^s)                  # predictive P(a_i preferred)
    BCE_i     = -y_i log p_i - (1 - y_i) log(1 - p_i)
    KL_t      = log(sigma_0 / sigma_t) + sigma_t^2 / (2 sigma_0^2) - 1/2
    loss      = sum_i w_i BCE_i / sum_i w_i + sigma_weight * mean_t KL_t

The BCE is of the sample-averaged probability (the marginal likelihood), not the average of
per-sample BCEs: BCE is convex in the logit, so by Jensen averaging it over samples is
always lowered by shrinking sigma and could never widen it. With the predictive probability,
pairs whose labels contradict each other are explained by a wide sigma on their steps (which
pulls p_i towards 1/2), not only by bending mu; the KL term holds sigma near sigma_0
elsewhere. In a Bradley–Terry likelihood sigma and the scale of mu are nearly
interchangeable, so the separation is relative and relies on the bounded mean: clean pairs,
which mu cannot make arbitrarily confident, narrow sigma below sigma_0; contradicted ones
leave it wider (with ``output_bound: 0`` mu grows instead and sigma did not separate them).
Refinement uses ``mu`` or the pessimistic ``mu - k sigma`` (``refine_with``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robopref.data import Preference
from robopref.errors import ConfigError
from robopref.rewards.checkpointed import CheckpointedReward, seeded_init
from robopref.rewards.ensemble import _member, preference_data
from robopref.training import Trainer


@dataclass
class GaussianRewardConfig:
    """Gaussian per-step reward trained with a sampled Bradley–Terry likelihood.

    Attributes:
        hidden_sizes: hidden layer widths of the shared trunk.
        use_actions: feed ``(o_t, a_t)``; otherwise ``o_t`` only.
        output_bound: the mean is squashed to ``[-bound, bound]`` with tanh (``0`` disables).
        samples: reward samples S per step in the loss; ``log p_i`` from S samples is biased
            low by about ``Var / (2 S p^2)``, a pull towards small sigma that few samples
            make strong.
        sigma_prior: sigma_0, the std the regulariser pulls sigma towards (reward units per
            step; a segment of L steps gets return noise ``sigma sqrt(L)``).
        sigma_weight: weight of the per-step KL (nats per step) against the BCE (nats per pair).
        min_log_std, max_log_std: soft bounds of ``log sigma`` (natural log, reward units).
        refine_with: ``"mean"`` (mu) or ``"pessimistic"`` (``mu - pessimism_k * sigma``).
        pessimism_k: how many stds the pessimistic reward subtracts.
        seed: initialisation and loss-sampling seed.
    """

    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    use_actions: bool = True
    output_bound: float = 1.0
    samples: int = 32
    sigma_prior: float = 0.3
    sigma_weight: float = 0.01
    min_log_std: float = -5.0
    max_log_std: float = 1.0
    refine_with: str = "mean"
    pessimism_k: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError("reward hidden_sizes must be a non-empty list of positive widths")
        if self.output_bound < 0:
            raise ConfigError("reward output_bound must be >= 0")
        if self.samples < 1:
            raise ConfigError(f"reward samples must be >= 1, got {self.samples}")
        if not self.sigma_prior > 0 or self.sigma_weight < 0:
            raise ConfigError("reward sigma_prior must be > 0 and sigma_weight >= 0")
        if not self.min_log_std < math.log(self.sigma_prior) < self.max_log_std:
            raise ConfigError(
                f"reward needs min_log_std < log(sigma_prior) = {math.log(self.sigma_prior):.3g}"
                f" < max_log_std, got {self.min_log_std} and {self.max_log_std}"
            )
        if self.refine_with not in ("mean", "pessimistic"):
            raise ConfigError(
                f"reward refine_with must be 'mean' or 'pessimistic', got '{self.refine_with}'"
            )
        if self.pessimism_k < 0:
            raise ConfigError(f"reward pessimism_k must be >= 0, got {self.pessimism_k}")


class GaussianReward(CheckpointedReward):
    """A per-step Gaussian reward ``N(mu, sigma^2)`` learned from (noisy) preferences.

    One member: ``member_rewards`` is the refinement reward (mean or pessimistic). Inputs are
    normalised with statistics frozen at the first ``fit``. Loss noise comes from a generator
    on the training device re-seeded each step from ``seed`` and the ``noise_step`` buffer
    (saved with the weights), so fits are reproducible and resume exactly from trainer
    checkpoints, without touching the global torch RNG.
    """

    checkpoint_kind = "gaussian_reward"
    config_class = GaussianRewardConfig

    def __init__(self, obs_dim: int, act_dim: int, config: GaussianRewardConfig, trainer: Trainer):
        super().__init__()
        in_dim = self._init_inputs(obs_dim, act_dim, config, trainer)
        hidden = list(config.hidden_sizes)
        with seeded_init(config.seed):
            self.trunk = _member(in_dim, hidden)[:-1]
            self.mean_head = nn.Linear(hidden[-1], 1)
            self.log_var_head = nn.Linear(hidden[-1], 1)
        with torch.no_grad():  # start at sigma = sigma_prior everywhere
            self.log_var_head.weight.zero_()
            self.log_var_head.bias.fill_(2 * math.log(config.sigma_prior))
        self.register_buffer("noise_step", torch.tensor(0, dtype=torch.int64))
        self._generators: dict[torch.device, torch.Generator] = {}

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs (..., obs_dim)``, ``act (..., act_dim)`` -> ``mu (...)``, ``log sigma (...)``."""
        cfg = self.config
        h = self.trunk(self._inputs(obs, act))
        mu = self.mean_head(h).squeeze(-1)
        if cfg.output_bound > 0:
            mu = cfg.output_bound * torch.tanh(mu / cfg.output_bound)
        log_std = 0.5 * self.log_var_head(h).squeeze(-1)
        log_std = cfg.max_log_std - F.softplus(cfg.max_log_std - log_std)
        return mu, cfg.min_log_std + F.softplus(log_std - cfg.min_log_std)

    @torch.no_grad()
    def reward_mean_std(self, obs: np.ndarray, act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-step ``mu (B, T)`` and ``sigma (B, T)`` for ``obs (B, T, obs_dim)``."""
        device = self.in_mean.device
        self.eval()
        with self.trainer.autocast():
            mu, log_std = self(
                torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device),
                torch.as_tensor(np.asarray(act), dtype=torch.float32, device=device),
            )
        return mu.float().cpu().numpy(), log_std.float().exp().cpu().numpy()

    @torch.no_grad()
    def hidden_features(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """The trunk's last hidden layer ``(B, T, H)``: the ``learned`` transfer
        representation."""
        device = self.in_mean.device
        self.eval()
        h = self.trunk(self._inputs(
            torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device),
            torch.as_tensor(np.asarray(act), dtype=torch.float32, device=device),
        ))
        return h.float().cpu().numpy()

    def member_rewards(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """The refinement reward ``(1, B, T)``: ``mu`` or ``mu - pessimism_k * sigma``."""
        mu, sigma = self.reward_mean_std(obs, act)
        if self.config.refine_with == "pessimistic":
            mu = mu - self.config.pessimism_k * sigma
        return mu[None]

    def _noise(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        seed = ((self.config.seed << 32) + int(self.noise_step)) % (1 << 63)
        self.noise_step += 1
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device)
        generator = self._generators[device].manual_seed(seed)
        return torch.randn(shape, generator=generator, device=device)

    def gaussian_bt_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        """Trainer loss over a batch of pairs: ``obs (B, 2, L, obs_dim)``, ``target (B,)``."""
        cfg = self.config
        mu, log_std = model(batch["obs"], batch["act"])  # (B, 2, L)
        mu, log_std = mu.float(), log_std.float()
        sigma = log_std.exp()
        eps = self._noise((cfg.samples, *mu.shape), mu.device)
        returns = (mu + sigma * eps).sum(-1)  # (S, B, 2)
        logits = returns[..., 0] - returns[..., 1]  # (S, B)
        log_s = math.log(cfg.samples)
        log_p = torch.logsumexp(F.logsigmoid(logits), 0) - log_s
        log_q = torch.logsumexp(F.logsigmoid(-logits), 0) - log_s
        target, weight = batch["target"].float(), batch["weight"].float()
        bce = -(target * log_p + (1 - target) * log_q)
        bt = (weight * bce).sum() / weight.sum().clamp_min(1e-12)
        prior = cfg.sigma_prior
        kl = (math.log(prior) - log_std + sigma.square() / (2 * prior**2) - 0.5).mean()
        mean_logits = mu.sum(-1)[:, 0] - mu.sum(-1)[:, 1]
        decided = target != 0.5
        hits = ((mean_logits > 0) == (target > 0.5)).float()[decided]
        metrics = {
            "bt_loss": float(bt.detach()),
            "sigma_kl": float(kl.detach()),
            "mean_sigma": float(sigma.detach().mean()),
            "train_accuracy": float(hits.mean()) if hits.numel() else float("nan"),
        }
        return bt + cfg.sigma_weight * kl, metrics

    def fit(self, preferences: list[Preference], episodes) -> dict[str, float]:
        data = preference_data(self, preferences, episodes)
        return self.trainer.fit(self, self.gaussian_bt_loss, data)
