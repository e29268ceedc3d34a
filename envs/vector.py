"""Parallel rollouts through gymnasium's vector envs (one Meta-World env per worker)."""

from __future__ import annotations

from functools import partial

import gymnasium as gym

from robopref.envs.metaworld import MetaWorldConfig, MetaWorldEnv


def make_vector_env(
    config: MetaWorldConfig, num_envs: int, seed: int = 0, asynchronous: bool = True
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of the task; async runs each in its own process.

    Workers are seeded ``seed + i``. Select per-worker goals before a reset with
    ``vec.set_attr("next_goal_index", [g0, g1, ...])``.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    fns = [partial(MetaWorldEnv, config, seed + i) for i in range(num_envs)]
    cls = gym.vector.AsyncVectorEnv if asynchronous and num_envs > 1 else gym.vector.SyncVectorEnv
    # Episodes are collected in lockstep and reset explicitly, so autoreset never fires.
    return cls(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
