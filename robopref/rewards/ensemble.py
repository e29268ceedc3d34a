"""Bradley–Terry reward ensemble with members evaluated in one vectorised pass.

Members are independent MLPs (different initialisations) whose parameters are stacked
with ``torch.func.stack_module_state`` and evaluated as batched matmuls: one kernel per
layer for the whole ensemble (``StackedMLP``).

Loss over pairs (a_i, b_i) with soft target y_i = P(a_i preferred) in [0, 1] (1, 0, 0.5 for
first/second/equal) and weight w_i::

    logit_i = sum_t r(a_t) - sum_t r(b_t);   loss = sum_i w_i BCE(sigmoid(logit_i), y_i) / sum_i w_i
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import stack_module_state

from robopref.data import (
    Preference,
    as_pool,
    preference_targets,
    preference_weights,
    segment_pair_arrays,
)
from robopref.errors import ConfigError
from robopref.rewards.checkpointed import CheckpointedReward, seeded_init
from robopref.training import Trainer


@dataclass
class EnsembleConfig:
    """Bradley–Terry MLP ensemble.

    Attributes:
        members: ensemble size M (3-5 is common).
        hidden_sizes: hidden layer widths of each member.
        use_actions: feed ``(o_t, a_t)``; otherwise ``o_t`` only.
        output_bound: rewards squashed to ``[-bound, bound]`` with tanh (``0`` disables).
        seed: initialisation seed.
    """

    members: int = 3
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    use_actions: bool = True
    output_bound: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ConfigError(f"reward ensemble needs members >= 1, got {self.members}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError("reward hidden_sizes must be a non-empty list of positive widths")
        if self.output_bound < 0:
            raise ConfigError("reward output_bound must be >= 0")


def _member(in_dim: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.LeakyReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, 1))
    return nn.Sequential(*layers)


def members(in_dim: int, config) -> list[nn.Sequential]:
    """``config.members`` MLPs of ``config.hidden_sizes``, their weights drawn from
    ``config.seed``."""
    with seeded_init(config.seed):
        return [_member(in_dim, list(config.hidden_sizes)) for _ in range(config.members)]


class StackedMLP(nn.Module):
    """M MLPs of one architecture, evaluated together in one pass.

    Parameters are stacked along a leading member dimension (``torch.func.stack_module_state``,
    so each member keeps its own default initialisation) and every ``nn.Linear`` becomes one
    batched matmul (``torch.baddbmm``) over all members; other layers of the member
    architecture (element-wise activations) are applied as they are: one kernel per layer
    for the whole ensemble, which is what pays on a GPU. On a 2-core CPU a Python loop over
    members measured faster (see ``benchmarks/reward_ensemble_throughput.py``).
    """

    def __init__(self, members: list[nn.Sequential]):
        super().__init__()
        params, _ = stack_module_state(members)
        self.layers = [
            str(i) if isinstance(layer, nn.Linear) else copy.deepcopy(layer)
            for i, layer in enumerate(members[0])
        ]
        linear = [name for name in self.layers if isinstance(name, str)]
        # Stored as (M, in, out) and (M, 1, out): the layout baddbmm consumes directly.
        self.weight = nn.ParameterDict(
            {i: nn.Parameter(params[f"{i}.weight"].transpose(1, 2).contiguous()) for i in linear}
        )
        self.bias = nn.ParameterDict(
            {i: nn.Parameter(params[f"{i}.bias"].unsqueeze(1).contiguous()) for i in linear}
        )
        self.num_members = len(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (M, N, in)`` (one input per member) or ``(N, in)`` (shared) -> ``(M, N)``."""
        return self._through(x, self.layers).squeeze(-1)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's last hidden layer ``(M, N, H)`` (everything but the output layer)."""
        return self._through(x, self.layers[:-1])

    def _through(self, x: torch.Tensor, layers: list) -> torch.Tensor:
        h = x if x.dim() == 3 else x.expand(self.num_members, *x.shape)
        for layer in layers:
            if isinstance(layer, str):
                h = torch.baddbmm(self.bias[layer], h, self.weight[layer])
            else:
                h = layer(h)
        return h


def preference_data(
    model: nn.Module, preferences: list[Preference], episodes
) -> dict[str, torch.Tensor]:
    """Trainer data for ``preferences``: ``obs (N, 2, L, obs_dim)``, ``act (N, 2, L, act_dim)``,
    ``target (N,)``, ``weight (N,)``.

    At ``model``'s first fit, sets its input normaliser (buffers ``in_mean``, ``in_std``,
    ``normalizer_set``) from these pairs; it stays frozen afterwards.
    """
    if not preferences:
        raise ValueError("reward model fit needs at least one labelled preference")
    if not any(p.weight > 0 for p in preferences):
        raise ValueError("every preference has weight 0: nothing to fit")
    pairs = [(p.first, p.second) for p in preferences]
    obs, act = segment_pair_arrays(pairs, as_pool(episodes))
    model.set_input_normalizer(obs, act)
    return {
        "obs": torch.as_tensor(obs),
        "act": torch.as_tensor(act),
        "target": torch.as_tensor(preference_targets(preferences)),
        "weight": torch.as_tensor(preference_weights(preferences)),
    }


class BTEnsemble(CheckpointedReward):
    """An ensemble of per-step reward MLPs trained with the Bradley–Terry loss.

    Inputs are normalised with statistics frozen at the first ``fit``.
    """

    checkpoint_kind = "bt_ensemble"
    config_class = EnsembleConfig

    def __init__(self, obs_dim: int, act_dim: int, config: EnsembleConfig, trainer: Trainer):
        super().__init__()
        in_dim = self._init_inputs(obs_dim, act_dim, config, trainer)
        self.stack = StackedMLP(members(in_dim, config))

    @property
    def num_members(self) -> int:
        return self.config.members

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``obs (..., obs_dim)``, ``act (..., act_dim)`` -> member rewards ``(M, ...)``."""
        x = self._inputs(obs, act)
        lead = x.shape[:-1]
        r = self.stack(x.reshape(-1, x.shape[-1])).reshape(self.num_members, *lead)
        bound = self.config.output_bound
        return bound * torch.tanh(r / bound) if bound > 0 else r

    @torch.no_grad()
    def member_rewards(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        device = self.in_mean.device
        self.eval()
        with self.trainer.autocast():
            out = self(
                torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device),
                torch.as_tensor(np.asarray(act), dtype=torch.float32, device=device),
            )
        return out.float().cpu().numpy()

    @torch.no_grad()
    def hidden_features(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """Every member's last hidden layer, side by side: ``(B, T, M * H)`` for
        ``obs (B, T, obs_dim)`` (the ``learned`` transfer representation)."""
        device = self.in_mean.device
        self.eval()
        x = self._inputs(
            torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device),
            torch.as_tensor(np.asarray(act), dtype=torch.float32, device=device),
        )
        lead = x.shape[:-1]
        h = self.stack.hidden(x.reshape(-1, x.shape[-1]))  # (M, N, H)
        return h.permute(1, 0, 2).reshape(*lead, -1).float().cpu().numpy()

    def bt_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        """Trainer loss over a batch of pairs: ``obs (B, 2, L, obs_dim)``, ``target (B,)``."""
        returns = model(batch["obs"], batch["act"]).sum(-1)  # (M, B, 2)
        logits = (returns[..., 0] - returns[..., 1]).float()
        target = batch["target"].expand_as(logits)
        weight = batch["weight"].expand_as(logits)
        per_pair = nn.functional.binary_cross_entropy_with_logits(
            logits, target, reduction="none"
        )
        loss = (weight * per_pair).sum() / weight.sum().clamp_min(1e-12)
        decided = batch["target"] != 0.5
        hits = ((logits > 0) == (target > 0.5)).float()[:, decided]
        return loss, {"train_accuracy": float(hits.mean()) if hits.numel() else float("nan")}

    def fit(self, preferences: list[Preference], episodes) -> dict[str, float]:
        return self.trainer.fit(self, self.bt_loss, preference_data(self, preferences, episodes))
