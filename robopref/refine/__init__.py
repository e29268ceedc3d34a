"""Refinement of imitation policies with learned rewards."""

from robopref.refine.awr import AdvantageWeightedRegression, AWRConfig, reward_to_go
from robopref.refine.base import Refiner
from robopref.refine.rwr import RewardWeightedRegression, RWRConfig, exp_weights, goal_baseline

# The one registry of refiners: name -> (config class, refiner class).
REFINERS = {
    "rwr": (RWRConfig, RewardWeightedRegression),
    "awr": (AWRConfig, AdvantageWeightedRegression),
}

__all__ = [
    "REFINERS",
    "AWRConfig",
    "AdvantageWeightedRegression",
    "RWRConfig",
    "Refiner",
    "RewardWeightedRegression",
    "exp_weights",
    "goal_baseline",
    "reward_to_go",
]
