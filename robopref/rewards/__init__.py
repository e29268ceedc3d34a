"""Reward models learned from preferences."""

from robopref.rewards.base import RewardModel
from robopref.rewards.ensemble import BTEnsemble, EnsembleConfig, StackedMLP
from robopref.rewards.metrics import preference_accuracy

# The one registry of reward models: name -> (config class, model class).
REWARD_MODELS = {"bt_ensemble": (EnsembleConfig, BTEnsemble)}

__all__ = [
    "REWARD_MODELS",
    "BTEnsemble",
    "EnsembleConfig",
    "RewardModel",
    "StackedMLP",
    "preference_accuracy",
]
