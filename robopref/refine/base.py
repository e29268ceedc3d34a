"""The refinement contract: improve a policy with a learned reward, staying near the base."""

from __future__ import annotations

from abc import ABC, abstractmethod

from robopref.data import Episode
from robopref.policies import BCPolicy
from robopref.rewards import RewardModel


class Refiner(ABC):
    """Returns an improved copy of ``policy``; never modifies ``policy`` or ``base_policy``.

    ``rollouts`` are the policy's own episodes (with exploration), ``demos`` the imitation
    data, ``base_policy`` the frozen imitation policy the result must stay close to.
    """

    @abstractmethod
    def refine(
        self,
        policy: BCPolicy,
        base_policy: BCPolicy,
        rollouts: list[Episode],
        demos: list[Episode],
        reward_model: RewardModel,
    ) -> tuple[BCPolicy, dict[str, float]]: ...
