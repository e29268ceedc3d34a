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
# The one registry of arm-side tasks (what a Recorder or an arm round drives on a ForceArm):
# name -> (config class, task class built from it). Peel needs the simulated arm.
ARM_TASKS = Registry(
    "arm task",
    {
        "peel": ("robopref.envs.peel.config:PeelConfig", "robopref.envs.peel.task:PeelTask"),
        "reach": ("robopref.envs.arm_task:ReachConfig", "robopref.envs.arm_task:ReachTask"),
    },
)

__all__ = [
    "ARM_TASKS",
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
