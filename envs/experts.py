"""Scripted Meta-World experts with a quality knob.

The experts in ``metaworld.policies`` solve their task almost always. Demonstrations and
rollouts for preference learning need a spread of quality, so ``NoisyExpert`` degrades
them three ways: Gaussian action noise, random pauses (zero motion for a few steps), and
mis-targeting (the expert sees the goal shifted for the whole episode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robopref.errors import ConfigError


@dataclass
class ExpertConfig:
    """Quality knobs of a scripted expert.

    Attributes:
        action_noise: std of Gaussian noise added to each action (action units, [-1, 1]).
        pause_prob: per-step probability of starting a pause.
        pause_steps: length of a pause in control steps.
        mistarget_prob: per-episode probability that the expert aims at a shifted goal.
        mistarget_offset: size of that shift in metres (xy plane).
    """

    action_noise: float = 0.3
    pause_prob: float = 0.0
    pause_steps: int = 10
    mistarget_prob: float = 0.0
    mistarget_offset: float = 0.08

    def __post_init__(self) -> None:
        for name in ("pause_prob", "mistarget_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"expert {name}={getattr(self, name)} must lie in [0, 1]")
        if self.action_noise < 0 or self.mistarget_offset < 0 or self.pause_steps < 0:
            raise ConfigError("expert action_noise, pause_steps, mistarget_offset must be >= 0")


class NoisyExpert:
    """A Meta-World scripted policy for one environment, degraded by ``ExpertConfig``.

    Call ``begin_episode()`` at every reset, then ``act(obs)`` each step.
    """

    def __init__(self, task: str, config: ExpertConfig, seed: int = 0):
        from metaworld.policies import ENV_POLICY_MAP

        if task not in ENV_POLICY_MAP:
            raise ConfigError(f"Meta-World ships no scripted expert for '{task}'")
        self.policy = ENV_POLICY_MAP[task]()
        self.config = config
        self.rng = np.random.default_rng(seed)
        self._goal_shift = np.zeros(3)
        self._pause_left = 0

    def begin_episode(self) -> None:
        self._pause_left = 0
        self._goal_shift = np.zeros(3)
        if self.rng.random() < self.config.mistarget_prob:
            angle = self.rng.uniform(0, 2 * np.pi)
            self._goal_shift[:2] = self.config.mistarget_offset * np.array(
                [np.cos(angle), np.sin(angle)]
            )

    def act(self, obs: np.ndarray) -> np.ndarray:
        """``obs (obs_dim,)`` -> action ``(4,)`` float32 in [-1, 1]."""
        if self._pause_left == 0 and self.rng.random() < self.config.pause_prob:
            self._pause_left = self.config.pause_steps
        if self._pause_left > 0:
            self._pause_left -= 1
            return np.zeros(4, dtype=np.float32)
        seen = np.array(obs, dtype=np.float64)
        seen[-3:] += self._goal_shift  # Meta-World v3 keeps the goal in the last 3 entries
        action = self.policy.get_action(seen)
        action = action + self.rng.normal(0.0, self.config.action_noise, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


class BatchedExpert:
    """One ``NoisyExpert`` per parallel environment, seen as one batched policy:
    ``act(obs (num_envs, obs_dim)) -> (num_envs, 4)``."""

    def __init__(self, task: str, config: ExpertConfig, num_envs: int, seed: int = 0):
        self.experts = [NoisyExpert(task, config, seed=seed * 1000 + i) for i in range(num_envs)]

    def begin_episodes(self, n: int) -> None:
        for expert in self.experts[:n]:
            expert.begin_episode()

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([e.act(o) for e, o in zip(self.experts, obs, strict=False)])
