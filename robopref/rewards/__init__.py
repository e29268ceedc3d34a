"""Reward models learned from preferences."""

from robopref.registry import Registry
from robopref.rewards.base import RewardModel
from robopref.rewards.composite import CompositeReward, CompositeRewardConfig
from robopref.rewards.ensemble import BTEnsemble, EnsembleConfig, StackedMLP
from robopref.rewards.gaussian import GaussianReward, GaussianRewardConfig
from robopref.rewards.metrics import preference_accuracy

# The one registry of reward models.
REWARD_MODELS = Registry(
    "reward model",
    {
        "bt_ensemble": (
            "robopref.rewards.ensemble:EnsembleConfig",
            "robopref.rewards.ensemble:BTEnsemble",
        ),
        "gaussian": (
            "robopref.rewards.gaussian:GaussianRewardConfig",
            "robopref.rewards.gaussian:GaussianReward",
        ),
        "composite": (
            "robopref.rewards.composite:CompositeRewardConfig",
            "robopref.rewards.composite:CompositeReward",
        ),
    },
)

__all__ = [
    "REWARD_MODELS",
    "BTEnsemble",
    "CompositeReward",
    "CompositeRewardConfig",
    "EnsembleConfig",
    "GaussianReward",
    "GaussianRewardConfig",
    "RewardModel",
    "StackedMLP",
    "preference_accuracy",
]
