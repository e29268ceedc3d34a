"""Simulation environments (installed as ``robopref.envs``). They know nothing of learning."""

from robopref.envs.experts import ExpertConfig, NoisyExpert
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
from robopref.envs.vector import make_vector_env

# The one registry of environment families: name -> (config class, factory).
ENVS = {
    "metaworld": (MetaWorldConfig, make_metaworld_env),
    "peel": (PeelConfig, make_peel_env),
}

__all__ = [
    "ENVS",
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
    "make_vector_env",
    "metaworld_task_names",
    "register_gym_envs",
]
