"""Episodes: one rollout or demonstration, stored time-major as NumPy arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
        meta: free-form episode metadata (source, seed, variation, policy name, ...).
        dataset_id: id of the dataset the episode belongs to (the ``robopref.json`` sidecar's
            ``dataset_id``); with ``episode_index`` it names the episode stably across
            processes and folder moves. ``None`` until the episode is given one.
        episode_index: the episode's index inside that dataset.
        frame_indices: optional ``(T,)`` int64, lerobot's global frame ``index`` of each step.
        sim_states: optional ``(T, S)`` float64, the simulator's state before each action
            (row ``t`` pairs with ``observations[t]``), enough to re-render the frame later;
            for MuJoCo tasks ``S = mj_stateSize(model, robopref.envs.metaworld.SIM_STATE_SPEC)``.
            ``None`` for real robots and for datasets recorded without it.
        metrics: optional ``(T, K)`` float32 per-step task metrics after each action (the
            task's ``step_metric_names``, e.g. Peel-v0's removed fraction gained this step or
            its peak contact force in N), read from the env's ``info``; what a composite
            reward maps to [0, 1]. ``None`` when the task names none (Meta-World).
        metric_names: the ``K`` names of those columns, in order.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    successes: np.ndarray
    task: str = ""
    wrenches: np.ndarray | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    dataset_id: str | None = None
    episode_index: int | None = None
    frame_indices: np.ndarray | None = None
    sim_states: np.ndarray | None = None
    metrics: np.ndarray | None = None
    metric_names: tuple[str, ...] = ()

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
        if self.frame_indices is not None:
            self.frame_indices = np.asarray(self.frame_indices, dtype=np.int64).reshape(-1)
            lengths["frame_indices"] = len(self.frame_indices)
        if self.sim_states is not None:
            # float64: a float32 copy of MuJoCo's state shifts pixels in the re-rendered frame.
            self.sim_states = np.asarray(self.sim_states, dtype=np.float64)
            if self.sim_states.ndim != 2:
                raise ValueError(f"episode sim_states must be (T, S); got {self.sim_states.shape}")
            lengths["sim_states"] = len(self.sim_states)
        self.metric_names = tuple(str(n) for n in self.metric_names)
        if self.metrics is not None:
            self.metrics = np.asarray(self.metrics, dtype=np.float32)
            if self.metrics.ndim != 2 or self.metrics.shape[1] != len(self.metric_names):
                raise ValueError(
                    f"episode metrics must be (T, {len(self.metric_names)}) for metric_names "
                    f"{list(self.metric_names)}; got {self.metrics.shape}"
                )
            lengths["metrics"] = len(self.metrics)
        elif self.metric_names:
            raise ValueError("episode metric_names given without metrics: pass both or neither")
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
    def id(self) -> str:
        """Stable episode id ``"<dataset_id>:<episode_index>"``."""
        if self.dataset_id is None or self.episode_index is None:
            raise ValueError(
                "this episode has no stable id yet: save it into a dataset (save_episodes) or "
                "give it one with assign_ids"
            )
        return episode_id(self.dataset_id, self.episode_index)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def success(self) -> bool:
        """Whether the episode succeeded: by its last step's flag when its task judges the
        state at the end (``meta["success_at_end"]``, Peel-v0, whose flag says "success so
        far" and is lost again by a later gouge or force peak), else at any step (the
        Meta-World convention)."""
        if self.meta.get("success_at_end"):
            return bool(len(self.successes) and self.successes[-1])
        return bool(self.successes.any())

    def metric_columns(self, names) -> np.ndarray:
        """``(T, len(names))`` float32: the per-step metrics ``names``, in that order."""
        names = tuple(names)
        missing = [n for n in names if n not in self.metric_names]
        if self.metrics is None or missing:
            raise ValueError(
                f"episode {self.meta.get('source', '')} has no per-step metric(s) "
                f"{', '.join(missing or names)} (it has {list(self.metric_names)}): collect "
                "rollouts of a task that names them (Task.step_metric_names), or use a reward "
                "that reads none"
            )
        index = [self.metric_names.index(n) for n in names]
        return self.metrics[:, index]

    @property
    def true_return(self) -> float:
        """Sum of ground-truth rewards (NaN when rewards are unknown)."""
        return float(self.rewards.sum())


def episode_id(dataset_id: str, episode_index: int) -> str:
    return f"{dataset_id}:{int(episode_index)}"


def assign_ids(episodes: list[Episode], dataset_id: str, first_frame: int = 0) -> list[Episode]:
    """Name ``episodes`` as episodes ``0..n-1`` of dataset ``dataset_id`` (in place), with
    global frame indices counted from ``first_frame`` as lerobot numbers them; returns them."""
    frame = first_frame
    for i, episode in enumerate(episodes):
        episode.dataset_id, episode.episode_index = dataset_id, i
        episode.frame_indices = np.arange(frame, frame + len(episode), dtype=np.int64)
        frame += len(episode)
    return episodes


def as_pool(episodes: Mapping[str, Episode] | Sequence[Episode]) -> Mapping[str, Episode]:
    """Episodes by stable id. A sequence is indexed by each episode's ``id``."""
    if isinstance(episodes, Mapping):
        return episodes
    pool = {e.id: e for e in episodes}
    if len(pool) != len(episodes):
        raise ValueError("two episodes share one id: give each dataset its own dataset_id")
    return pool


def stack_transitions(episodes: list[Episode]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate all steps: returns observations ``(N, obs_dim)`` and actions ``(N, act_dim)``."""
    if not episodes:
        raise ValueError("no episodes given")
    return (
        np.concatenate([e.observations for e in episodes]),
        np.concatenate([e.actions for e in episodes]),
    )
