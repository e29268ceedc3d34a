"""Episodes: one rollout or demonstration, stored time-major as NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robopref.errors import NonFiniteError


@dataclass
class Episode:
    """A trajectory of ``T`` steps.

    Row ``t`` holds the observation the agent saw, the action it took, and what followed.

    Attributes:
        observations: ``(T, obs_dim)`` float32, observation before each action.
        actions: ``(T, act_dim)`` float32, the action applied (environment units).
        rewards: ``(T,)`` float32, ground-truth reward after each action (NaN when unknown,
            e.g. on a real robot).
        successes: ``(T,)`` bool, the task's success flag after each action.
        task: task name, e.g. ``"push-v3"``.
        wrenches: optional ``(T, 6)`` float32 force/torque in the tool frame (N, N·m).
        images: optional camera name -> ``(T, H, W, 3)`` uint8 frames.
        meta: free-form episode metadata (source, seed, goal index, policy name, ...).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    successes: np.ndarray
    task: str = ""
    wrenches: np.ndarray | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.successes = np.asarray(self.successes, dtype=bool).reshape(-1)
        if self.observations.ndim != 2 or self.actions.ndim != 2:
            raise ValueError(
                f"episode observations and actions must be (T, dim); got "
                f"{self.observations.shape} and {self.actions.shape}"
            )
        length = len(self.observations)
        lengths = {
            "observations": length,
            "actions": len(self.actions),
            "rewards": len(self.rewards),
            "successes": len(self.successes),
        }
        if self.wrenches is not None:
            self.wrenches = np.asarray(self.wrenches, dtype=np.float32)
            lengths["wrenches"] = len(self.wrenches)
        for name, frames in self.images.items():
            lengths[f"images[{name}]"] = len(frames)
        if len(set(lengths.values())) != 1:
            raise ValueError(f"episode arrays disagree on length T: {lengths}")
        if length == 0:
            raise ValueError("an episode needs at least one step")
        if not np.isfinite(self.observations).all():
            raise NonFiniteError(
                "episode observations contain NaN/inf: check the environment or sensor "
                "that produced them"
            )
        if not np.isfinite(self.actions).all():
            raise NonFiniteError("episode actions contain NaN/inf: check the policy that made them")

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def success(self) -> bool:
        """True when the task was solved at any step (Meta-World convention)."""
        return bool(self.successes.any())

    @property
    def true_return(self) -> float:
        """Sum of ground-truth rewards (NaN when rewards are unknown)."""
        return float(self.rewards.sum())


def stack_transitions(episodes: list[Episode]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate all steps: returns observations ``(N, obs_dim)`` and actions ``(N, act_dim)``."""
    if not episodes:
        raise ValueError("no episodes given")
    return (
        np.concatenate([e.observations for e in episodes]),
        np.concatenate([e.actions for e in episodes]),
    )
