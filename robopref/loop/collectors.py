"""Where the loop's episodes come from: the rollout-collector contract, and its simulation
implementation over a task's vector env.

A ``RolloutCollector`` runs a policy for one episode per variation (a scene seed, a goal) and
returns the episodes. The loop does not care whether they ran in a gymnasium vector env
(``VecEnvCollector``) or on an arm through the safety layer
(``robopref.loop.arm_rollouts.ArmCollector``): the same loop runs Meta-World, Peel-v0 in
simulation, and rounds on a UR or Franka arm.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from robopref.data import Episode
from robopref.errors import RobopError
from robopref.rollout import collect_episodes


class RunStopped(RobopError):
    """The run stopped cleanly before its end (the operator quit from the teleop, or a
    protective stop needs a person): it resumes from its last completed step, and a collector
    that records keeps its durable episodes."""


class RolloutCollector(ABC):
    """Runs ``policy`` (``act(obs (B, obs_dim)) -> (B, act_dim)``, ``begin_episodes(n)``) for one
    episode per entry of ``variations``.

    ``records``: the collector writes the episodes of a named collection into a LeRobotDataset
    at ``folder`` itself, each one durable as soon as it ends (a killed collection keeps its
    finished episodes, and ``collect`` on the same folder continues after them); the returned
    episodes then carry that dataset's ids. Otherwise the loop saves the episodes it keeps.
    ``film(policy, variation, camera)``: the frames ``(T, H, W, 3)`` uint8 of one episode seen
    by ``camera``, or ``None`` when the collector has no camera.
    """

    records: ClassVar[bool] = False

    @abstractmethod
    def collect(
        self, policy, variations: list, name: str, folder: Path | None = None
    ) -> list[Episode]: ...

    def film(self, policy, variation, camera: str):  # noqa: ARG002  (no camera by default)
        return None

    def close(self) -> None:  # noqa: B027  (nothing to release by default)
        pass


class VecEnvCollector(RolloutCollector):
    """Episodes from ``task``'s vector env (``collect_episodes``), with the task's per-step
    metrics (``Episode.metrics``) and end-of-episode quality metrics (``meta["metrics"]``)."""

    def __init__(self, vec_env, task, progress: bool = True):
        self.vec_env, self.task, self.progress = vec_env, task, progress

    def collect(self, policy, variations, name, folder=None) -> list[Episode]:
        task = self.task
        return collect_episodes(
            self.vec_env,
            policy,
            variations,
            task.name,
            task.episode_steps,
            source=name.split()[0],
            progress=self.progress,
            meta=task.episode_meta(),
            metric_names=tuple(getattr(task, "step_metric_names", ())),
            quality_names=tuple(getattr(task, "quality_metric_names", ())),
        )
