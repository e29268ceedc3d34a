"""The refinement contract: improve a policy with a learned reward, staying near the base."""

from __future__ import annotations

from abc import ABC, abstractmethod

from robopref.data import Episode
from robopref.policies import ResidualConfig, TrainablePolicy, as_residual
from robopref.registry import build_config
from robopref.rewards import RewardModel


class Refiner(ABC):
    """Returns an improved copy of ``policy``; never modifies ``policy`` or ``base_policy``.

    ``policy`` is any ``TrainablePolicy``: a whole policy, or one that sits on a frozen base
    (a residual), in which case only its own trainable parameters change.

    ``rollouts`` are the policy's own episodes (with exploration), ``demos`` the imitation
    data, ``base_policy`` the frozen imitation policy the result must stay close to.

    Implementations are built as ``Refiner(config, trainer, task=None, vec_env=None)``: the
    task (``robopref.envs.Task``) and its vector env serve refiners that collect their own
    on-policy data (PPO); the others ignore them.
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


def residual_config(options: dict, where: str) -> ResidualConfig:
    """The ``residual_policy`` options of refiner config ``where`` as a ``ResidualConfig``
    (one-line errors naming ``where.residual_policy.<key>``)."""
    return build_config(ResidualConfig, dict(options), f"{where}.residual_policy")


def trainable_start(
    policy: TrainablePolicy, residual: bool, options: dict, where: str
) -> TrainablePolicy:
    """What a refiner trains: ``policy`` itself (a whole policy, or a residual already), or with
    ``residual=True`` a fresh residual (zero at init) on a frozen copy of ``policy``."""
    return as_residual(policy, residual_config(options, where)) if residual else policy
