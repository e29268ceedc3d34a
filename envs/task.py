"""The task contract: what the preference loop needs to know about an environment family.

A ``Task`` builds single and vector envs, names its start states / goal variations by split,
and knows its episode length, control rate, action bounds and units, and the scale of its
reward, so that exploration noise, teacher thresholds and experts follow the task rather
than one benchmark's conventions.

Splits: ``train`` (demos, exploration rollouts, labels), ``validation`` (per-round
monitoring and any choice between policies), ``test`` (reported success only, never used
to choose anything). A variation is a JSON-serialisable key (a Meta-World
``[goal_set_seed, goal_index]``, a Peel-v0 scene seed); envs start from one with
``reset(options={"variation": v})`` or, in a vector env, ``set_attr("next_variation", [...])``
before ``reset()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from robopref.errors import ConfigError

SPLITS = ("train", "validation", "test")


class Task(ABC):
    """One task of an environment family (a Meta-World task, Peel-v0).

    Attributes:
        name: task name, e.g. ``"push-v3"``, ``"peel-v0"``.
        episode_steps: control steps per episode.
        fps: control rate (Hz).
        obs_dim, act_dim: observation and action sizes.
        action_low, action_high: ``(act_dim,)`` action bounds in ``action_units``.
        action_units: what one action unit is (``"normalised"`` or ``"m, rad per tick"``).
        reward_scale: per-step true reward of good behaviour, in the task's reward units;
            teacher thresholds are given in multiples of it.
        state_dim: the observation's first ``state_dim`` entries are the robot's own state
            (``observation.state`` in datasets), the rest the environment's
            (``observation.environment_state``).
        step_metric_names: per-step metrics the env reports in ``info`` after each action,
            recorded as ``Episode.metrics`` (what a composite reward maps to [0, 1]); none by
            default, so such tasks record nothing extra.
        quality_metric_names: end-of-episode quality metrics in ``info`` (scalars), kept in
            ``Episode.meta["metrics"]`` and summarised with 95% intervals per round.
        score_basis, score_range: how a simulated annotator turns a segment's true return into
            a 0-9 score: ``"episode"`` maps the whole return over ``score_range`` (units of
            ``reward_scale``), ``"step"`` the mean per-step reward (``None``: (0, 1)).
    """

    name: str
    episode_steps: int
    fps: int
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    action_units: str
    reward_scale: float
    state_dim: int | None
    step_metric_names: tuple[str, ...] = ()
    quality_metric_names: tuple[str, ...] = ()
    score_basis: str = "step"
    score_range: tuple[float, float] | None = None

    @abstractmethod
    def variations(self, split: str) -> Sequence[Any]:
        """Every variation of ``split`` (a list or a range), disjoint from the other splits."""

    @abstractmethod
    def make_env(self, seed: int = 0) -> gym.Env:
        """One env; ``seed`` drives only randomness not fixed by the variation."""

    @abstractmethod
    def make_expert(self, options: dict, num_envs: int, seed: int = 0):
        """A scripted expert for ``num_envs`` parallel envs: ``begin_episodes(n)`` and
        ``act(obs (num_envs, obs_dim)) -> (num_envs, act_dim)``; ``options`` are its quality
        knobs (noise in the task's action units)."""

    @property
    def action_half_range(self) -> np.ndarray:
        """``(act_dim,)`` half the action range: the unit of exploration noise."""
        return (np.asarray(self.action_high) - np.asarray(self.action_low)) / 2

    def check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}")

    def draw(
        self,
        split: str,
        count: int,
        rng: np.random.Generator,
        per_variation: int = 1,
        within: int | None = None,
    ) -> list:
        """``count`` variations of ``split`` drawn uniformly with replacement, each repeated
        ``per_variation`` times in a row (episodes that share a start); ``within``: from its
        first ``within`` variations only."""
        self.check_split(split)
        pool = self.variations(split)
        if within is not None:
            if not 0 < within <= len(pool):
                raise ConfigError(
                    f"{within} variations asked of the {len(pool)} in the {split} split: "
                    f"give a number from 1 to {len(pool)}"
                )
            pool = pool[:within]
        drawn = [pool[int(i)] for i in rng.integers(0, len(pool), size=-(-count // per_variation))]
        return [v for v in drawn for _ in range(per_variation)][:count]

    def first(self, split: str, count: int) -> list:
        """The first ``count`` variations of ``split``, in order (fixed evaluation sets);
        cycles when the split has fewer."""
        self.check_split(split)
        pool = self.variations(split)
        return [pool[i % len(pool)] for i in range(count)]

    def make_vector_env(
        self, num_envs: int, seed: int = 0, asynchronous: bool = False
    ) -> gym.vector.VectorEnv:
        """``num_envs`` copies of the task (worker ``i`` seeded ``seed + i``); asynchronous
        runs each in its own process."""
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        fns = [partial(self.make_env, seed + i) for i in range(num_envs)]
        parallel = asynchronous and num_envs > 1
        cls = gym.vector.AsyncVectorEnv if parallel else gym.vector.SyncVectorEnv
        # Episodes are collected in lockstep and reset explicitly, so autoreset never fires.
        return cls(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)

    def episode_meta(self) -> dict:
        """What every episode of this task carries in its ``meta`` beyond its variation, so
        that it can be shown again later (e.g. the settings a replay needs) and judged
        (``success_at_end``: ``Episode.success`` by the last step, not any); JSON-ready."""
        return {}

    def describe(self) -> dict:
        """What a run folder records about the task."""
        return {
            "name": self.name,
            "episode_steps": self.episode_steps,
            "fps": self.fps,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "action_units": self.action_units,
            "reward_scale": self.reward_scale,
            "state_dim": self.state_dim,
            "split_sizes": {s: len(self.variations(s)) for s in SPLITS},
        }


def check_disjoint(name: str, splits: dict[str, Sequence]) -> None:
    """Refuses split definitions that share a variation (test must stay unseen)."""
    seen: dict = {}
    for split, values in splits.items():
        for value in values:
            if value in seen and seen[value] != split:
                raise ConfigError(
                    f"{name}: {split} and {seen[value]} splits share {value!r}: give each split "
                    "its own seeds"
                )
            seen[value] = split
