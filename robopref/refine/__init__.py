"""Refinement of imitation policies with learned rewards."""

from robopref.refine.base import Refiner
from robopref.refine.rwr import RewardWeightedRegression, RWRConfig, episode_weights

# The one registry of refiners: name -> (config class, refiner class).
REFINERS = {"rwr": (RWRConfig, RewardWeightedRegression)}

__all__ = ["REFINERS", "RWRConfig", "Refiner", "RewardWeightedRegression", "episode_weights"]
