"""Collect episodes from a (vector) environment with any ``Policy``."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from robopref.data import Episode
from robopref.envs import ExpertConfig, NoisyExpert
from robopref.policies import Policy


class ExpertPolicy(Policy):
    """One ``NoisyExpert`` per parallel environment, seen as one batched policy."""

    def __init__(self, task: str, config: ExpertConfig, num_envs: int, seed: int = 0):
        self.experts = [NoisyExpert(task, config, seed=seed * 1000 + i) for i in range(num_envs)]

    def begin_episodes(self, n: int) -> None:
        for expert in self.experts[:n]:
            expert.begin_episode()

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([e.act(o) for e, o in zip(self.experts, obs, strict=False)])


class GaussianExploration(Policy):
    """Adds Gaussian noise of std ``std`` to another policy's actions and clips to
    ``[low, high]``.

    ``correlation`` in ``[0, 1)`` makes the noise an AR(1) process per episode,
    ``n_t = c * n_{t-1} + sqrt(1 - c^2) * N(0, std^2)``, with the same std at every step but a
    correlation time of about ``1 / (1 - c)`` steps. White noise (``c = 0``) is mostly averaged
    away by the arm's dynamics, so rollouts differ little in outcome; correlated noise makes
    episodes that deviate consistently (push a little more to one side for a second), which is
    what reward-weighted regression can select and imitate.
    """

    def __init__(
        self, policy: Policy, std: float, seed: int = 0, low=-1.0, high=1.0,
        correlation: float = 0.0,
    ):
        if not 0 <= correlation < 1:
            raise ValueError(f"exploration correlation must lie in [0, 1), got {correlation}")
        self.policy, self.std, self.low, self.high = policy, std, low, high
        self.correlation = correlation
        self.rng = np.random.default_rng(seed)
        self._noise: np.ndarray | None = None

    def begin_episodes(self, n: int) -> None:
        self.policy.begin_episodes(n)
        self._noise = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = self.policy.act(obs)
        fresh = self.rng.normal(0.0, self.std, size=action.shape)
        c = self.correlation
        if c and self._noise is not None and self._noise.shape == fresh.shape:
            fresh = c * self._noise + np.sqrt(1.0 - c * c) * fresh
        self._noise = fresh
        return np.clip(action + fresh, self.low, self.high).astype(np.float32)


def collect_episodes(
    vec_env,
    policy: Policy,
    goal_indices: list[int],
    task: str,
    max_steps: int,
    source: str = "rollout",
    progress: bool = True,
) -> list[Episode]:
    """Run one episode per entry of ``goal_indices`` (Meta-World goal variation index).

    Episodes run in lockstep batches of ``vec_env.num_envs`` and last ``max_steps`` steps
    unless every env of the batch terminates earlier.
    """
    n_envs = vec_env.num_envs
    episodes: list[Episode] = []
    bar = tqdm(total=len(goal_indices), desc=source, disable=not progress, leave=False)
    for begin in range(0, len(goal_indices), n_envs):
        goals = list(goal_indices[begin : begin + n_envs])
        used = len(goals)
        goals += [goals[-1]] * (n_envs - used)  # idle workers repeat a goal; discarded below
        vec_env.set_attr("next_goal_index", goals)
        obs, _ = vec_env.reset()
        policy.begin_episodes(n_envs)
        o_buf, a_buf, r_buf, s_buf = [], [], [], []
        done = np.zeros(n_envs, dtype=bool)
        for _ in range(max_steps):
            action = policy.act(obs)
            next_obs, reward, terminated, truncated, info = vec_env.step(action)
            o_buf.append(obs)
            a_buf.append(action)
            r_buf.append(reward)
            s_buf.append(np.asarray(info["success"], dtype=bool))
            obs = next_obs
            done |= terminated | truncated
            if done.all():
                break
        stacked = [np.stack(b, axis=1) for b in (o_buf, a_buf, r_buf, s_buf)]
        for i in range(used):
            episodes.append(
                Episode(
                    observations=stacked[0][i],
                    actions=stacked[1][i],
                    rewards=stacked[2][i],
                    successes=stacked[3][i],
                    task=task,
                    meta={"goal_index": int(goals[i]), "source": source},
                )
            )
        bar.update(used)
    bar.close()
    return episodes


def success_rate(episodes: list[Episode]) -> float:
    return float(np.mean([e.success for e in episodes])) if episodes else float("nan")
