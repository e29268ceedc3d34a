"""Saving and loading of the torch reward models, written once.

A model is one checkpoint folder (safetensors weights, JSON config with ``obs_dim``,
``act_dim`` and the model's config dataclass, format version), checked on load against the
kind that wrote it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

from torch import nn

from robopref.rewards.base import RewardModel
from robopref.training import Trainer, load_model, load_state_dict_checked, save_model


class CheckpointedReward(nn.Module, RewardModel):
    """A torch ``RewardModel`` built as ``cls(obs_dim, act_dim, config, trainer)``; subclasses
    name their ``checkpoint_kind`` and ``config_class``."""

    checkpoint_kind: ClassVar[str]
    config_class: ClassVar[type]

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
