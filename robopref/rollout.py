"""Collect episodes from a (vector) environment with any ``Policy``."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from robopref.data import Episode
from robopref.policies import Policy


class GaussianExploration(Policy):
    """Adds Gaussian noise of std ``std`` (a number or one per action dimension, action units)
    to another policy's actions and clips to ``[low, high]`` (numbers or ``(act_dim,)``).
    ``for_task`` states the std in units of the task's half action range instead.

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

    @classmethod
    def for_task(
        cls, policy: Policy, task, relative_std: float, seed: int = 0, correlation: float = 0.0
    ) -> GaussianExploration:
        """Noise of std ``relative_std`` times the task's half action range per dimension,
        clipped to the task's bounds: 0.3 is 0.3 on Meta-World's [-1, 1] and 0.3 of the step
        limit on Peel-v0's metres and radians per tick."""
        return cls(
            policy,
            relative_std * task.action_half_range,
            seed=seed,
            low=task.action_low,
            high=task.action_high,
            correlation=correlation,
        )

    def begin_episodes(self, n: int) -> None:
        self.policy.begin_episodes(n)
        self._noise = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = self.policy.act(obs)
        fresh = self.rng.normal(0.0, 1.0, size=action.shape) * self.std
        c = self.correlation
        if c and self._noise is not None and self._noise.shape == fresh.shape:
            fresh = c * self._noise + np.sqrt(1.0 - c * c) * fresh
        self._noise = fresh
        return np.clip(action + fresh, self.low, self.high).astype(np.float32)


def collect_episodes(
    vec_env,
    policy,
    variations: list,
    task: str,
    max_steps: int,
    source: str = "rollout",
    progress: bool = True,
    meta: dict | None = None,
) -> list[Episode]:
    """Run one episode per entry of ``variations`` (the task's start-state / goal keys).

    ``meta``: added to every episode's ``meta`` (the task's ``episode_meta()``).

    ``policy`` acts on a batch: ``act(obs (num_envs, obs_dim)) -> (num_envs, act_dim)``.
    Episodes run in lockstep batches of ``vec_env.num_envs`` and last ``max_steps`` steps
    unless every env of the batch terminates earlier; an env that terminates early (a
    protective stop) keeps only the steps up to its end. When the env reports
    ``info["sim_state"]`` on reset and every step (Meta-World does), each episode keeps the
    state before each action as ``sim_states`` ``(T, S)``, so its frames can be re-rendered.
    """
    n_envs = vec_env.num_envs
    episodes: list[Episode] = []
    bar = tqdm(total=len(variations), desc=source, disable=not progress, leave=False)
    for begin in range(0, len(variations), n_envs):
        goals = list(variations[begin : begin + n_envs])
        used = len(goals)
        goals += [goals[-1]] * (n_envs - used)  # idle workers repeat a start; discarded below
        vec_env.set_attr("next_variation", goals)
        obs, info = vec_env.reset()
        state = _sim_states(info)
        policy.begin_episodes(n_envs)
        o_buf, a_buf, r_buf, s_buf = [], [], [], []
        x_buf: list | None = [] if state is not None else None
        done = np.zeros(n_envs, dtype=bool)
        ends = np.full(n_envs, max_steps)
        for t in range(max_steps):
            action = policy.act(obs)
            next_obs, reward, terminated, truncated, info = vec_env.step(action)
            o_buf.append(obs)
            a_buf.append(action)
            r_buf.append(reward)
            s_buf.append(np.asarray(info["success"], dtype=bool))
            if x_buf is not None:
                # Row t holds the state the action was taken in, like the observation.
                x_buf.append(state)
                state = _sim_states(info)
                if state is None:
                    x_buf = None
            obs = next_obs
            ended = (terminated | truncated) & ~done
            ends[ended] = t + 1
            done |= ended
            if done.all():
                break
        stacked = [np.stack(b, axis=1) for b in (o_buf, a_buf, r_buf, s_buf)]
        sims = None if x_buf is None else np.stack(x_buf, axis=1)
        for i in range(used):
            end = int(ends[i])
            episodes.append(
                Episode(
                    observations=stacked[0][i, :end],
                    actions=stacked[1][i, :end],
                    rewards=stacked[2][i, :end],
                    successes=stacked[3][i, :end],
                    task=task,
                    meta={**(meta or {}), "variation": _plain(goals[i]), "source": source},
                    sim_states=None if sims is None else sims[i, :end],
                )
            )
        bar.update(used)
    bar.close()
    return episodes


def _sim_states(info: dict) -> np.ndarray | None:
    """``(num_envs, S)`` float64 simulator states from a vector env's info, or ``None`` when
    any env reported none."""
    if "sim_state" not in info or not np.all(info.get("_sim_state", True)):
        return None
    return np.array(info["sim_state"], dtype=np.float64)


def _plain(variation):
    if isinstance(variation, np.ndarray | list | tuple):
        return [int(v) for v in variation]
    return int(variation)


def success_rate(episodes: list[Episode]) -> float:
    return float(np.mean([e.success for e in episodes])) if episodes else float("nan")
