"""The base of the torch reward models: their checkpoints and their inputs, written once.

A model is one checkpoint folder (safetensors weights, JSON config with ``obs_dim``,
``act_dim`` and the model's config dataclass, format version), checked on load against the
kind that wrote it. Its input is the observation, with the action when its config's
``use_actions`` is set, normalised by statistics frozen at its first fit (the buffers
``in_mean``, ``in_std`` and ``normalizer_set``, saved with the weights).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from robopref.rewards.base import RewardModel
from robopref.training import Trainer, load_model, load_state_dict_checked, save_model


class CheckpointedReward(nn.Module, RewardModel):
    """A torch ``RewardModel`` built as ``cls(obs_dim, act_dim, config, trainer)``; subclasses
    name their ``checkpoint_kind`` and ``config_class``."""

    checkpoint_kind: ClassVar[str]
    config_class: ClassVar[type]

    def _init_inputs(self, obs_dim: int, act_dim: int, config, trainer: Trainer) -> int:
        """Keep the constructor's arguments and register the input normaliser (identity until
        the first fit); returns the input width."""
        self.obs_dim, self.act_dim, self.config, self.trainer = obs_dim, act_dim, config, trainer
        in_dim = obs_dim + (act_dim if config.use_actions else 0)
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("normalizer_set", torch.tensor(False))
        return in_dim

    def _inputs(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Normalised ``(..., in_dim)`` from ``obs (..., obs_dim)`` and ``act (..., act_dim)``."""
        x = torch.cat([obs, act], -1) if self.config.use_actions else obs
        return (x - self.in_mean) / self.in_std

    def set_input_normalizer(self, obs: np.ndarray, act: np.ndarray) -> None:
        """Freeze the normaliser on ``obs (..., obs_dim)`` and ``act (..., act_dim)``, the
        first fit's data; later calls leave it as it is."""
        if bool(self.normalizer_set):
            return
        parts = [obs.reshape(-1, obs.shape[-1])]
        if self.config.use_actions:
            parts.append(act.reshape(-1, act.shape[-1]))
        flat = np.concatenate(parts, -1)
        self.in_mean.copy_(torch.as_tensor(flat.mean(0)))
        self.in_std.copy_(torch.as_tensor(flat.std(0)).clamp_min(1e-3))
        self.normalizer_set.fill_(True)

    def save(self, path) -> Path:
        """A checkpoint folder (safetensors weights + JSON config + format version)."""
        config = {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "config": asdict(self.config)}
        return save_model(path, self.checkpoint_kind, config, self.state_dict())

    @classmethod
    def load(cls, path, trainer: Trainer):
        meta, state = load_model(path, cls.checkpoint_kind)
        model = cls(meta["obs_dim"], meta["act_dim"], cls.config_class(**meta["config"]), trainer)
        load_state_dict_checked(model, state, path)
        return model


@contextlib.contextmanager
def seeded_init(seed: int):
    """Draw a model's initial weights from ``seed``, leaving torch's global generator as it
    was (so building a model never shifts what the caller draws next)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
