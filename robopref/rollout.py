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
        self.seed = seed
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

    def reseed_episode(self, index: int) -> None:
        """Draw the noise of the next episode from ``(seed, index)`` alone, so a collection
        killed after ``index`` episodes continues with the noise the uninterrupted one had
        (the arm collector calls it; vector-env collections keep one stream)."""
        self.rng = np.random.default_rng([self.seed, int(index)])

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
    metric_names: tuple[str, ...] = (),
    quality_names: tuple[str, ...] = (),
) -> list[Episode]:
    """Run one episode per entry of ``variations`` (the task's start-state / goal keys).

    ``meta``: added to every episode's ``meta`` (the task's ``episode_meta()``).
    ``metric_names``: per-step ``info`` entries kept as ``Episode.metrics`` ``(T, K)`` (the
    task's ``step_metric_names``); ``quality_names``: ``info`` entries at each episode's last
    step kept in ``meta["metrics"]`` (its ``quality_metric_names``, plus ``success``).

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
        o_buf, a_buf, r_buf, s_buf, m_buf = [], [], [], [], []
        final: list[dict] = [{} for _ in range(n_envs)]
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
            if metric_names:
                m_buf.append(np.stack([_info_column(info, k) for k in metric_names], -1))
            for i in np.flatnonzero(~done) if quality_names else ():
                final[i] = {k: float(_info_column(info, k)[i]) for k in quality_names}
                final[i]["success"] = bool(info["success"][i])
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
        metrics = np.stack(m_buf, axis=1) if metric_names else None
        for i in range(used):
            end = int(ends[i])
            extra = {"metrics": final[i]} if quality_names else {}
            episodes.append(
                Episode(
                    observations=stacked[0][i, :end],
                    actions=stacked[1][i, :end],
                    rewards=stacked[2][i, :end],
                    successes=stacked[3][i, :end],
                    task=task,
                    meta={
                        **(meta or {}), "variation": _plain(goals[i]), "source": source, **extra
                    },
                    sim_states=None if sims is None else sims[i, :end],
                    metrics=None if metrics is None else metrics[i, :end],
                    metric_names=tuple(metric_names) if metrics is not None else (),
                )
            )
        bar.update(used)
    bar.close()
    return episodes


def _info_column(info: dict, key: str) -> np.ndarray:
    """``(num_envs,)`` float32 of a vector env's ``info[key]``, with one line naming the key
    when the env does not report it."""
    if key not in info:
        raise KeyError(
            f"the env reports no info['{key}'] that the task names among its metrics: fix the "
            "task's step_metric_names / quality_metric_names"
        )
    return np.asarray(info[key], dtype=np.float32)


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
