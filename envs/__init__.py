"""Simulation environments (installed as ``robopref.envs``). They know nothing of learning."""

from robopref.envs.experts import BatchedExpert, ExpertConfig, NoisyExpert
from robopref.envs.metaworld import (
    MetaWorldConfig,
    MetaWorldEnv,
    make_metaworld_env,
    metaworld_task_names,
)
from robopref.envs.peel import (
    PeelConfig,
    PeelEnv,
    PeelExpert,
    PeelExpertConfig,
    PeelTask,
    make_peel_env,
    register_gym_envs,
)
from robopref.envs.task import SPLITS, Task
from robopref.registry import Registry

# The one registry of task families: name -> (config class, Task implementation).
TASKS = Registry(
    "env",
    {
        "metaworld": (
            "robopref.envs.metaworld:MetaWorldConfig",
            "robopref.envs.metaworld_task:MetaWorldTask",
        ),
        "peel": ("robopref.envs.peel_task:PeelTaskConfig", "robopref.envs.peel_task:PeelV0Task"),
    },
)

__all__ = [
    "SPLITS",
    "TASKS",
    "BatchedExpert",
    "ExpertConfig",
    "MetaWorldConfig",
    "MetaWorldEnv",
    "NoisyExpert",
    "PeelConfig",
    "PeelEnv",
    "PeelExpert",
    "PeelExpertConfig",
    "PeelTask",
    "make_metaworld_env",
    "make_peel_env",
    "Task",
    "metaworld_task_names",
    "register_gym_envs",
]
