"""The refinement contract: improve a policy with a learned reward, staying near the base."""

from __future__ import annotations

from abc import ABC, abstractmethod

from robopref.data import Episode
from robopref.policies import TrainablePolicy
from robopref.rewards import RewardModel


class Refiner(ABC):
    """Returns an improved copy of ``policy``; never modifies ``policy`` or ``base_policy``.

    ``policy`` is any ``TrainablePolicy``: a whole policy, or one that sits on a frozen base
    (a residual), in which case only its own trainable parameters change.

    ``rollouts`` are the policy's own episodes (with exploration), ``demos`` the imitation
    data, ``base_policy`` the frozen imitation policy the result must stay close to.
    """

    @abstractmethod
    def refine(
        self,
        policy: TrainablePolicy,
        base_policy: TrainablePolicy,
        rollouts: list[Episode],
        demos: list[Episode],
        reward_model: RewardModel,
    ) -> tuple[TrainablePolicy, dict[str, float]]: ...
