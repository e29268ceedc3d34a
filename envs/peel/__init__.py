"""Peel-v0: the simulated stand-in for knife peeling, on the MuJoCo force-sensing arm.

``PeelTask`` does the peel-layer bookkeeping for any ``SimForceArm`` (the recorder uses it
directly); ``PeelEnv`` is the gymnasium env around it; ``PeelExpert`` is a scripted
demonstrator with quality knobs. Control runs at ``control_hz`` (20 Hz), physics at 500 Hz.

- ``config``: ``PeelConfig`` and the layout constants (``N_LANES``, ``STATE_DIM``,
  ``ENV_STATE_DIM``, ``OBS_DIM``, ``GYM_ID``, colours);
- ``task``: ``PeelTask`` (the layer, the depth and force bookkeeping, success; the task's
  rules are in its module docstring);
- ``env``: ``PeelEnv``, ``make_peel_env``, ``register_gym_envs``;
- ``expert``: ``PeelExpertConfig``, ``PeelExpert``.
"""

from robopref.envs.peel.config import ENV_STATE_DIM, GYM_ID, N_LANES, OBS_DIM, PeelConfig
from robopref.envs.peel.env import PeelEnv, make_peel_env, register_gym_envs
from robopref.envs.peel.expert import PeelExpert, PeelExpertConfig
from robopref.envs.peel.task import STEP_METRIC_NAMES, PeelTask

__all__ = [
    "ENV_STATE_DIM",
    "GYM_ID",
    "N_LANES",
    "OBS_DIM",
    "PeelConfig",
    "PeelEnv",
    "PeelExpert",
    "PeelExpertConfig",
    "PeelTask",
    "STEP_METRIC_NAMES",
    "make_peel_env",
    "register_gym_envs",
]
