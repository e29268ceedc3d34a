"""Meta-World v3 tasks behind one gymnasium wrapper.

``MetaWorldEnv`` builds ``gym.make("Meta-World/MT1", env_name=task)`` once and picks goals
explicitly: Meta-World's own wrapper samples a goal with replacement on every reset, which
makes evaluation sets irreproducible. Meta-World draws 50 goal variations per seed (a "goal
set"); a variation is named ``[goal_set_seed, goal_index]`` and chosen with
``reset(options={"variation": [s, i]})`` (or ``next_variation``, which a vector env sets per
worker with ``set_attr``). Goal sets other than the env's own are built once per process
and cached (~0.9 s each). ``MetaWorldTask`` draws its train / validation / test splits
from disjoint goal-set seeds, so a test split of 100 distinct variations is two seeds.

Episodes do not end on success (Meta-World convention); they are truncated after
``max_episode_steps``. ``info["success"]`` is the task's success flag after each step and
``info["true_reward"]`` the dense ground-truth reward, both used only for evaluation and by
the scripted teacher. ``info["sim_state"]`` (from ``reset`` and ``step``) is the MuJoCo state
after that call, i.e. before the next action: ``(S,)`` float64 laid out by
:data:`SIM_STATE_SPEC`; with the variation it re-renders the frame
(``robopref.envs.metaworld_render``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import gymnasium as gym
import mujoco
import numpy as np

from robopref.envs.task import check_disjoint
from robopref.errors import ConfigError, NonFiniteError

NUM_GOALS = 50

# Time, joint positions and velocities (FULLPHYSICS) and the mocap hand target: enough to
# redraw the frame (qpos, mocap) and to continue the physics (qvel); 39 numbers for push-v3.
# Checked: a state set back + mj_forward renders pixel-identically; a float32 copy does not.
SIM_STATE_SPEC = int(
    mujoco.mjtState.mjSTATE_FULLPHYSICS
    | mujoco.mjtState.mjSTATE_MOCAP_POS
    | mujoco.mjtState.mjSTATE_MOCAP_QUAT
)


def metaworld_task_names() -> list[str]:
    """Names of every Meta-World v3 task, e.g. ``"push-v3"``."""
    import metaworld

    return sorted(metaworld.ALL_V3_ENVIRONMENTS)


def check_task_name(task: str) -> None:
    names = metaworld_task_names()
    if task not in names:
        close = difflib.get_close_matches(task, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(names)}"
        raise ConfigError(f"unknown Meta-World task '{task}': {hint}")


_GOAL_SETS: dict[tuple[str, int], list] = {}


def goal_set(task: str, seed: int) -> list:
    """The 50 goal variations Meta-World draws for ``task`` with ``seed`` (cached)."""
    key = (task, int(seed))
    if key not in _GOAL_SETS:
        import metaworld

        _GOAL_SETS[key] = list(metaworld.MT1(task, seed=int(seed)).train_tasks)
    return _GOAL_SETS[key]


@dataclass
class MetaWorldConfig:
    """One Meta-World v3 task.

    Attributes:
        task: task name, e.g. ``"push-v3"``.
        max_episode_steps: episode length in control steps (Meta-World runs 80 Hz control,
            so 150 steps = 1.875 s of simulated time). Meta-World's own limit is 500.
        fps: control rate in Hz, recorded in datasets.
        goal_set_seed: the goal set the env is built with and ``goal_index`` refers to.
        train_goal_sets, validation_goal_sets, test_goal_sets: goal-set seeds of each split
            (50 variations each), pairwise disjoint. Defaults: 50 train, 50 validation and
            100 test variations.
        expert: quality knobs of the scripted expert (``robopref.envs.ExpertConfig``).
    """

    task: str = "push-v3"
    max_episode_steps: int = 150
    fps: int = 80
    goal_set_seed: int = 0
    train_goal_sets: list[int] = field(default_factory=lambda: [0])
    validation_goal_sets: list[int] = field(default_factory=lambda: [1])
    test_goal_sets: list[int] = field(default_factory=lambda: [2, 3])
    expert: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_task_name(self.task)
        sets = {
            "train": self.train_goal_sets,
            "validation": self.validation_goal_sets,
            "test": self.test_goal_sets,
        }
        for split, seeds in sets.items():
            if not seeds:
                raise ConfigError(f"env.{split}_goal_sets is empty: give it one seed or more")
        check_disjoint(f"Meta-World {self.task}", sets)
        if not 1 <= self.max_episode_steps <= 500:
            raise ConfigError(
                f"max_episode_steps={self.max_episode_steps} is outside [1, 500], "
                "Meta-World's limit: pick a value in range"
            )


class MetaWorldEnv(gym.Wrapper):
    """A Meta-World v3 task with explicit goal selection and NaN guards.

    Observation: ``(39,)`` float64 (hand, gripper, object poses, previous frame, goal).
    Action: ``(4,)`` in [-1, 1] (end-effector delta xyz scaled by Meta-World, gripper effort).
    """

    def __init__(self, config: MetaWorldConfig, seed: int = 0):
        """``seed`` drives only this wrapper's random goal choice when none is given."""
        import metaworld  # noqa: F401  (registers the Meta-World/* ids)

        inner = gym.make(
            "Meta-World/MT1",
            env_name=config.task,
            seed=config.goal_set_seed,
            max_episode_steps=config.max_episode_steps,
            disable_env_checker=True,
        )
        super().__init__(inner)
        self.config = config
        self._task_selector = self._find_task_selector(inner)
        self._task_selector.toggle_sample_tasks_on_reset(False)
        self.goals = list(self._task_selector.tasks)
        _GOAL_SETS.setdefault((config.task, int(config.goal_set_seed)), self.goals)
        self.next_goal_index: int | None = None
        self.next_variation: list | None = None
        self.goal_index = 0
        self.variation: list = [int(config.goal_set_seed), 0]
        self._goal_rng = np.random.default_rng(seed)

    @staticmethod
    def _find_task_selector(env: gym.Env):
        layer = env
        while not hasattr(layer, "toggle_sample_tasks_on_reset"):
            if not hasattr(layer, "env"):
                raise RuntimeError(
                    "Meta-World env has no task-selection wrapper; unsupported version"
                )
            layer = layer.env
        return layer

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._goal_rng = np.random.default_rng(seed)
        options = options or {}
        variation = options.get("variation", self.next_variation)
        goals, goal_set_seed = self.goals, int(self.config.goal_set_seed)
        if variation is not None:
            goal_set_seed, goal = (int(v) for v in variation)
            goals = goal_set(self.config.task, goal_set_seed)
        else:
            goal = options.get("goal_index", self.next_goal_index)
        if goal is None:
            goal = int(self._goal_rng.integers(len(goals)))
        if not 0 <= goal < len(goals):
            raise ConfigError(f"goal_index {goal} out of range [0, {len(goals)})")
        self.next_goal_index = self.next_variation = None
        self.goal_index = int(goal)
        self.variation = [goal_set_seed, self.goal_index]
        self.unwrapped.set_task(goals[self.goal_index])
        obs, info = self.env.reset(seed=seed)
        self._check_obs(obs)
        info["goal_index"] = self.goal_index
        info["variation"] = list(self.variation)
        info["sim_state"] = self.sim_state()
        return obs, info

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        if not np.isfinite(action).all():
            raise NonFiniteError(f"action {action} has NaN/inf: check the policy producing it")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._check_obs(obs)
        info["success"] = bool(info.get("success", 0.0))
        info["true_reward"] = float(reward)
        info["sim_state"] = self.sim_state()
        return obs, reward, terminated, truncated, info

    def sim_state(self) -> np.ndarray:
        """The MuJoCo state now, ``(S,)`` float64 in :data:`SIM_STATE_SPEC` layout (a copy)."""
        model, data = self.unwrapped.model, self.unwrapped.data
        state = np.empty(mujoco.mj_stateSize(model, SIM_STATE_SPEC), dtype=np.float64)
        mujoco.mj_getState(model, data, state, SIM_STATE_SPEC)
        return state

    @staticmethod
    def _check_obs(obs: np.ndarray) -> None:
        if not np.isfinite(obs).all():
            raise NonFiniteError(
                "Meta-World returned a NaN/inf observation (simulation diverged): reduce "
                "action magnitudes or reset the env"
            )


def make_metaworld_env(config: MetaWorldConfig, seed: int = 0) -> MetaWorldEnv:
    return MetaWorldEnv(config, seed=seed)
