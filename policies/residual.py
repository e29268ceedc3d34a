"""A residual policy on a frozen base (Peel-style finetuning):
``action = base(obs) + residual(obs, base(obs))``.

Only the residual trains; the base is frozen (``requires_grad=False``, kept in eval mode, never
handed to an optimiser) and saved in its own checkpoint, which the residual's names by relative
path. The residual's last layer starts at exactly zero and its output is squashed smoothly into
``[-max_residual, max_residual]`` per dimension (``max_residual * tanh(raw)``), so at
initialisation the policy *is* the base, and no refinement can move it further from the base
than the bound, whatever the learned reward says.

The MLP's output ``raw`` is in units of the bound, not of the action: a gradient step then moves
the residual by the same fraction of its bound on Meta-World's [-1, 1] as on the arm's
metres per tick. (With ``raw`` in action units, one Adam step at PPO's ``residual_lr`` of 3e-4
moved the residual on the Peel-v0 base, bound 2 mm and 10 mrad per tick, by 0.22 of its bound
and 1.5 of PPO's exploration std at ``init_std=0.03``, so PPO's KL stop ended each iteration
after a step or two; in units of the bound the same step moves it by 0.001 of the bound.)
Checkpoints written before this carry no ``output_units`` and are converted on load, exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from robopref.errors import ConfigError
from robopref.policies.base import TrainablePolicy
from robopref.policies.bc import mlp
from robopref.training import read_model_config

# What the residual MLP's output is measured in (stored in each checkpoint's config).
OUTPUT_UNITS = "bound"


@dataclass
class ResidualConfig:
    """Attributes:
    hidden_sizes: widths of the residual MLP's hidden layers.
    max_residual: hard bound on each action dimension's residual, in the task's action units
        (normalised units on Meta-World, m and rad per tick on the arm); one number or one per
        action dimension. ``null``: ``max_residual_fraction`` of the base's half action range
        (the bounds a BC policy declares), so one setting fits every task.
    max_residual_fraction: the bound as a fraction of the base's half action range, used when
        ``max_residual`` is ``null``.
    l2_penalty: weight of the residual's mean squared size (in units of the bound) that
        refiners add to their loss (``residual_penalty``), the Peel paper's L2 on the residual.
    see_base_action: the residual also gets the base's action as input (it can then correct
        what the base does rather than only where it is).
    """

    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    max_residual: float | list[float] | None = None
    max_residual_fraction: float = 0.2
    l2_penalty: float = 0.0
    see_base_action: bool = True

    def __post_init__(self) -> None:
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError("residual hidden_sizes must be a non-empty list of positive widths")
        if self.max_residual is not None and not np.all(np.asarray(self.max_residual) > 0):
            raise ConfigError(
                f"residual max_residual must be > 0 (action units) or null, got {self.max_residual}"
            )
        if not self.max_residual_fraction > 0:
            raise ConfigError(
                f"residual max_residual_fraction must be > 0, got {self.max_residual_fraction}"
            )
        if self.l2_penalty < 0:
            raise ConfigError(f"residual l2_penalty must be >= 0, got {self.l2_penalty}")


def declared_half_range(policy: TrainablePolicy) -> np.ndarray | None:
    """``(act_dim,)`` half action range a policy declares through ``config.action_low/high``
    (BC does), or ``None``."""
    cfg = getattr(policy, "config", None)
    low, high = getattr(cfg, "action_low", None), getattr(cfg, "action_high", None)
    if low is None or high is None:
        return None
    shape = (policy.act_dim,)
    return (np.broadcast_to(high, shape) - np.broadcast_to(low, shape)).astype(np.float32) / 2


class ResidualPolicy(TrainablePolicy):
    """``forward(obs (B, obs_dim)) -> base(obs) + residual (B, act_dim)``, action units.

    ``residual(obs)`` is the bounded correction ``(B, act_dim)``; ``residual_penalty(obs)`` its
    per-sample L2 penalty ``(B,)``. Inputs are normalised with statistics fixed at construction
    (the base's observation normaliser when it has one, its half action range for the base
    action), so residuals built on one base agree in every buffer and can be weight-averaged.
    """

    kind = "residual"

    def __init__(self, base: TrainablePolicy, config: ResidualConfig):
        super().__init__()
        if not isinstance(base, TrainablePolicy):
            raise ConfigError(
                "a residual policy sits on a trained base policy: use policy=bc with "
                "refine.residual=true, or ResidualPolicy(base, config)"
            )
        self.obs_dim, self.act_dim, self.config = base.obs_dim, base.act_dim, config
        self.base = base
        for param in self.base.parameters():
            param.requires_grad_(False)
        self.base.eval()
        half = declared_half_range(base)
        if config.max_residual is not None:
            bound = np.asarray(config.max_residual, np.float32)
            if bound.ndim and bound.shape != (self.act_dim,):
                raise ConfigError(
                    f"residual max_residual has {bound.size} entries, the actions {self.act_dim}: "
                    "give one number or one per action dimension"
                )
            bound = np.broadcast_to(bound, (self.act_dim,))
        elif half is not None:
            bound = config.max_residual_fraction * half
        else:
            raise ConfigError(
                f"base policy '{base.kind}' declares no action bounds: set the residual's "
                "max_residual in action units"
            )
        # Derived from the config and the base, so not stored: a reload recomputes them.
        bound = torch.as_tensor(np.array(bound, np.float32))
        self.register_buffer("bound", bound, persistent=False)
        base_scale = torch.ones(self.act_dim) if half is None else torch.as_tensor(half)
        self.register_buffer("base_action_scale", base_scale.float(), persistent=False)
        obs_mean = getattr(base, "obs_mean", None)
        obs_std = getattr(base, "obs_std", None)
        self.register_buffer(
            "obs_mean", torch.zeros(self.obs_dim) if obs_mean is None else obs_mean.clone()
        )
        self.register_buffer(
            "obs_std", torch.ones(self.obs_dim) if obs_std is None else obs_std.clone()
        )
        in_dim = self.obs_dim + (self.act_dim if config.see_base_action else 0)
        self.net = mlp(in_dim, list(config.hidden_sizes), self.act_dim)
        # Exactly zero output at init: the refined policy starts as the base, bit for bit.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def train(self, mode: bool = True) -> ResidualPolicy:
        """Train mode for the residual only: the frozen base stays in eval mode (no dropout,
        no normaliser updates) whatever the trainer does."""
        super().train(mode)
        self.base.eval()
        return self

    def base_policy(self) -> TrainablePolicy:
        return self.base

    def set_normalizer(self, observations: np.ndarray) -> None:
        """Set the residual's observation mean/std from ``(N, obs_dim)`` samples (only for a
        base without its own normaliser; residuals to be averaged must share them)."""
        obs = torch.as_tensor(observations, dtype=torch.float32)
        self.obs_mean.copy_(obs.mean(0))
        self.obs_std.copy_(obs.std(0).clamp_min(1e-3))

    def base_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The frozen base's action ``(B, act_dim)`` (no gradient)."""
        with torch.no_grad():
            return self.base(obs)

    def residual(self, obs: torch.Tensor, base_action: torch.Tensor | None = None) -> torch.Tensor:
        """The bounded correction ``(B, act_dim)`` in action units, ``|r_i| < bound_i``."""
        z = (obs - self.obs_mean) / self.obs_std
        if self.config.see_base_action:
            if base_action is None:
                base_action = self.base_action(obs)
            z = torch.cat([z, base_action / self.base_action_scale], -1)
        return self.bound * torch.tanh(self.net(z))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        base_action = self.base_action(obs)
        return base_action + self.residual(obs, base_action)

    def imitation_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Per-sample squared error ``(B,)`` of the summed action, in units of the base's half
        action range (dimensionless, like ``residual_penalty``, so their weights mean the same
        on Meta-World's [-1, 1] and on the arm's millimetres per tick); gradients reach only
        the residual."""
        return (((self(obs) - actions) / self.base_action_scale) ** 2).sum(-1)

    def residual_penalty(self, obs: torch.Tensor) -> torch.Tensor:
        """``l2_penalty * sum_i (r_i / bound_i)^2`` per sample ``(B,)``: dimensionless, so one
        weight fits tasks whose action units differ."""
        if self.config.l2_penalty == 0:
            return torch.zeros(obs.shape[0], device=obs.device)
        return self.config.l2_penalty * ((self.residual(obs) / self.bound) ** 2).sum(-1)

    def config_dict(self) -> dict:
        return {**asdict(self.config), "output_units": OUTPUT_UNITS}

    @classmethod
    def from_config(
        cls, config: dict, obs_dim: int, act_dim: int, base: TrainablePolicy | None
    ) -> ResidualPolicy:
        if base is None:
            raise ConfigError("a residual policy checkpoint must name its base policy")
        config = dict(config)
        units = config.pop("output_units", "action")
        if units not in (OUTPUT_UNITS, "action"):
            raise ConfigError(
                f"residual checkpoint's output_units is '{units}', this robopref knows "
                f"'{OUTPUT_UNITS}' and 'action': use the release that wrote it"
            )
        return cls(base, ResidualConfig(**config))

    @classmethod
    def load(cls, path) -> ResidualPolicy:
        """A residual checkpoint; one whose net output was in action units (no
        ``output_units`` in its config) has its last layer divided by the bound, which
        gives the same actions under ``bound * tanh(raw)``."""
        policy = super().load(path)
        if read_model_config(path)["config"].get("output_units", "action") == "action":
            with torch.no_grad():
                policy.net[-1].weight.div_(policy.bound[:, None])
                policy.net[-1].bias.div_(policy.bound)
        return policy


def as_residual(policy: TrainablePolicy, config: ResidualConfig) -> TrainablePolicy:
    """``policy`` itself when it already is a residual, else a fresh residual (zero at init) on a
    frozen copy of it (the caller's policy is never modified)."""
    if isinstance(policy, ResidualPolicy):
        return policy
    return ResidualPolicy(policy.clone(), config)


def residual_penalty(policy: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The policy's per-sample residual penalty ``(B,)``, or zeros for a policy without one."""
    penalty = getattr(policy, "residual_penalty", None)
    if penalty is None:
        return torch.zeros(obs.shape[0], device=obs.device)
    return penalty(obs)
