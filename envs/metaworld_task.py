"""Meta-World v3 tasks behind the ``Task`` contract."""

from __future__ import annotations

import numpy as np

from robopref.envs.experts import BatchedExpert, ExpertConfig
from robopref.envs.metaworld import MetaWorldConfig, MetaWorldEnv
from robopref.envs.task import Task
from robopref.registry import build_config

# Meta-World's dense reward lies in [0, 10] per step; 10 is being at the goal.
METAWORLD_REWARD_SCALE = 10.0
# Observation: hand xyz and gripper opening are the robot's state; objects, the previous
# frame and the goal are the environment's.
METAWORLD_STATE_DIM = 4


class MetaWorldTask(Task):
    """A Meta-World v3 task. Variations are ``[goal_set_seed, goal_index]``; each split holds
    the 50 goals of each of its goal-set seeds."""

    action_units = "normalised"
    reward_scale = METAWORLD_REWARD_SCALE
    state_dim = METAWORLD_STATE_DIM
    obs_dim = 39
    act_dim = 4

    def __init__(self, config: MetaWorldConfig):
        self.config = config
        self.name = config.task
        self.episode_steps = config.max_episode_steps
        self.fps = config.fps
        self.action_low = -np.ones(self.act_dim, dtype=np.float32)
        self.action_high = np.ones(self.act_dim, dtype=np.float32)
        self.expert_config = build_config(ExpertConfig, dict(config.expert), "env.expert")
        seeds = {
            "train": config.train_goal_sets,
            "validation": config.validation_goal_sets,
            "test": config.test_goal_sets,
        }
        self._splits = {
            split: [[int(s), i] for s in goal_sets for i in range(50)]
            for split, goal_sets in seeds.items()
        }

    def variations(self, split: str) -> list:
        self.check_split(split)
        return self._splits[split]

    def make_env(self, seed: int = 0) -> MetaWorldEnv:
        return MetaWorldEnv(self.config, seed=seed)

    def make_expert(self, options: dict | None, num_envs: int, seed: int = 0) -> BatchedExpert:
        config = self.expert_config
        if options:
            config = build_config(ExpertConfig, {**vars(config), **options}, "env.expert")
        return BatchedExpert(self.name, config, num_envs, seed=seed)
