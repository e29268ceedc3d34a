"""Refinement of imitation policies with learned rewards."""

from robopref.refine.awr import AdvantageWeightedRegression, AWRConfig, reward_to_go
from robopref.refine.base import Refiner
from robopref.refine.ppo import PPOConfig, PPORefiner
from robopref.refine.rwr import RewardWeightedRegression, RWRConfig, exp_weights, goal_baseline
from robopref.registry import Registry

# The one registry of refiners.
REFINERS = Registry(
    "refiner",
    {
        "rwr": ("robopref.refine.rwr:RWRConfig", "robopref.refine.rwr:RewardWeightedRegression"),
        "awr": ("robopref.refine.awr:AWRConfig", "robopref.refine.awr:AdvantageWeightedRegression"),
        "ppo": ("robopref.refine.ppo:PPOConfig", "robopref.refine.ppo:PPORefiner"),
    },
)

__all__ = [
    "REFINERS",
    "AWRConfig",
    "AdvantageWeightedRegression",
    "PPOConfig",
    "PPORefiner",
    "RWRConfig",
    "Refiner",
    "RewardWeightedRegression",
    "exp_weights",
    "goal_baseline",
    "reward_to_go",
]
