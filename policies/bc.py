"""Behaviour cloning: an MLP policy with observation normalisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robopref.data import Episode, stack_transitions
from robopref.errors import CheckpointError, ConfigError
from robopref.policies.base import TrainablePolicy
from robopref.training import Trainer, load_checkpoint, load_state_dict_checked

HEADS = ("deterministic", "gaussian")


@dataclass
class BCConfig:
    """Architecture of a BC policy.

    Attributes:
        hidden_sizes: widths of the hidden layers.
        head: ``"deterministic"`` (MSE on actions) or ``"gaussian"`` (NLL with a learned,
            state-independent std).
        action_low, action_high: action bounds (environment units), one number or one per
            action dimension; the mean is squashed into them with tanh. The CLI fills them
            from the task when the config leaves them ``null``.
        normalize_actions: measure the deterministic head's squared error in units of each
            action dimension's standard deviation in the demonstrations. Needed when action
            dimensions differ in scale (e.g. metres and radians): otherwise the loss is
            dominated by the largest and the small ones are fitted coarsely.
    """

    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    head: str = "deterministic"
    action_low: float | list[float] | None = -1.0
    action_high: float | list[float] | None = 1.0
    normalize_actions: bool = False

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"unknown BC head '{self.head}': choose one of {', '.join(HEADS)}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError("BC hidden_sizes must be a non-empty list of positive widths")
        if self.action_low is None or self.action_high is None:
            return  # filled in from the task before a policy is built
        low, high = np.asarray(self.action_low, float), np.asarray(self.action_high, float)
        if low.shape != high.shape and low.ndim and high.ndim:
            raise ConfigError("BC action_low and action_high must have the same length")
        if not np.all(low < high):
            raise ConfigError("BC action_low must be below action_high in every dimension")


def mlp(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class BCPolicy(TrainablePolicy):
    """``forward(obs (B, obs_dim)) -> mean action (B, act_dim)``.

    Observation statistics live in buffers, so they travel with ``state_dict``.
    """

    kind = "bc"

    def __init__(self, obs_dim: int, act_dim: int, config: BCConfig):
        super().__init__()
        if config.action_low is None or config.action_high is None:
            raise ConfigError("BC action bounds are unset: take them from the task")
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        # Per-dimension unit of the deterministic loss ``(act_dim,)``; ones unless
        # ``config.normalize_actions`` (set from the demonstrations by ``set_action_scale``).
        self.register_buffer("action_scale", torch.ones(act_dim))
        self.net = mlp(obs_dim, list(config.hidden_sizes), act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), -1.0))
        low = torch.as_tensor(np.broadcast_to(config.action_low, (act_dim,)).copy()).float()
        high = torch.as_tensor(np.broadcast_to(config.action_high, (act_dim,)).copy()).float()
        self.register_buffer("_half_range", (high - low) / 2, persistent=False)
        self.register_buffer("_center", (high + low) / 2, persistent=False)

    def set_normalizer(self, observations: np.ndarray) -> None:
        """Set observation mean/std from ``(N, obs_dim)`` samples."""
        obs = torch.as_tensor(observations, dtype=torch.float32)
        self.obs_mean.copy_(obs.mean(0))
        # Constant dimensions (Meta-World pads with zeros) must not blow up to inf.
        self.obs_std.copy_(obs.std(0).clamp_min(1e-3))

    def set_action_scale(self, actions: np.ndarray) -> None:
        """Set the loss unit of each action dimension from ``(N, act_dim)`` samples: their
        std, floored at 0.1% of the largest so a constant dimension cannot dominate."""
        std = torch.as_tensor(actions, dtype=torch.float32).std(0)
        self.action_scale.copy_(std.clamp_min(max(float(std.max()) * 1e-3, 1e-8)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = (obs - self.obs_mean) / self.obs_std
        return self._center + self._half_range * torch.tanh(self.net(z))

    def imitation_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ``(B,)``: squared error (deterministic) or Gaussian NLL."""
        mean = self(obs)
        if self.config.head == "deterministic":
            return (((mean - actions) / self.action_scale) ** 2).sum(-1)
        std = self.log_std.clamp(-5, 2).exp()
        return (0.5 * ((actions - mean) / std) ** 2 + std.log()).sum(-1)

    def bc_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        """Trainer loss: mean (optionally weighted by ``batch["weight"]``) action loss."""
        return model.weighted_imitation_loss(batch["obs"], batch["act"], batch.get("weight")), {}

    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: dict, obs_dim: int, act_dim: int, base=None) -> BCPolicy:
        return cls(obs_dim, act_dim, BCConfig(**config))

    @classmethod
    def load(cls, path) -> BCPolicy:
        if Path(path).is_dir():
            return super().load(path)
        return cls._load_torch_file(path)

    @classmethod
    def _load_torch_file(cls, path) -> BCPolicy:
        """A checkpoint file of release 0.1 (``torch.save`` payload)."""
        payload = load_checkpoint(path)
        if payload.get("kind") != "bc_policy":
            raise CheckpointError(
                f"{path} holds a '{payload.get('kind')}', not a BC policy: pass a policy checkpoint"
            )
        policy = cls(payload["obs_dim"], payload["act_dim"], BCConfig(**payload["config"]))
        state = dict(payload["model"])
        # Checkpoints written before action normalisation existed trained with unit scales.
        state.setdefault("action_scale", torch.ones(payload["act_dim"]))
        load_state_dict_checked(policy, state, path)
        policy.checkpoint_path = None  # a legacy file cannot be named as a base
        return policy


def train_bc(policy: BCPolicy, demos: list[Episode], trainer: Trainer) -> dict[str, float]:
    """Fit ``policy`` to the demonstrations' (observation, action) pairs."""
    obs, act = stack_transitions(demos)
    if obs.shape[1] != policy.obs_dim or act.shape[1] != policy.act_dim:
        raise ConfigError(
            f"demos have obs/act dims {obs.shape[1]}/{act.shape[1]} but the policy expects "
            f"{policy.obs_dim}/{policy.act_dim}: rebuild the policy for this task"
        )
    policy.set_normalizer(obs)
    if policy.config.normalize_actions:
        policy.set_action_scale(act)
    data = {"obs": torch.as_tensor(obs), "act": torch.as_tensor(act)}
    return trainer.fit(policy, policy.bc_loss, data)


def average_policies(policies: list[TrainablePolicy]) -> TrainablePolicy:
    """A policy whose trainable parameters are the mean of ``policies``' (a weight average, or
    "model soup"). Meaningful for policies fine-tuned from one base, as each refinement round's
    are: they lie in one basin, and averaging cancels the round-to-round jitter of single fits.
    Buffers (normalisation statistics) and frozen parameters (a base policy's) must agree."""
    if not policies:
        raise ValueError("average_policies needs at least one policy")
    first = policies[0]
    shapes = {
        (type(p).__name__, tuple((k, tuple(v.shape)) for k, v in p.state_dict().items()))
        for p in policies
    }
    if len(shapes) > 1:
        raise ConfigError("cannot average policies of different types or shapes")
    trainable = {name for name, param in first.named_parameters() if param.requires_grad}
    states = [p.state_dict() for p in policies]
    averaged = first.clone()
    state = averaged.state_dict()
    for key, value in state.items():
        if key not in trainable:
            if any(not torch.equal(s[key], value) for s in states):
                raise ConfigError(
                    f"policies to average have different {key}: they were not refined from "
                    "one base policy"
                )
            continue
        state[key] = torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
    averaged.load_state_dict(state)
    averaged.checkpoint_path = None
    return averaged
