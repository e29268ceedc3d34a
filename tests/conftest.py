"""Shared test helpers: synthetic episodes built from seeded NumPy generators.

Helpers are plain functions (importable as ``from conftest import make_episode``) with thin
fixtures on top; nothing here runs automatically beyond limiting torch to one thread.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

# The PostgreSQL fixtures (postgres_server, pg_url, database_url) live in their own module.
from pgserver import database_url, pg_url, postgres_server  # noqa: F401  (fixtures)

from robopref.data import Episode, assign_ids
from robopref.rewards import RewardModel

torch.set_num_threads(1)

class FakeRewardBase(RewardModel):
    """Save/load for test fakes of ``RewardModel``: a pickle (the real models write
    checkpoint folders)."""

    def save(self, path):
        Path(path).write_bytes(pickle.dumps(self))
        return Path(path)

    @classmethod
    def load(cls, path, trainer=None):
        return pickle.loads(Path(path).read_bytes())


RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def make_episode(
    T: int,
    obs_dim: int = 5,
    act_dim: int = 2,
    seed: int = 0,
    reward_fn: RewardFn | None = None,
    **kwargs,
) -> Episode:
    """A synthetic episode of ``T`` steps with standard-normal observations and actions.

    ``reward_fn(obs (T, obs_dim), act (T, act_dim)) -> (T,)`` gives the rewards (default:
    seeded standard-normal noise). Extra keyword arguments go to ``Episode`` (task, meta,
    wrenches, images, ...).
    """
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(T, obs_dim)).astype(np.float32)
    act = rng.normal(size=(T, act_dim)).astype(np.float32)
    rewards = rng.normal(size=T) if reward_fn is None else reward_fn(obs, act)
    successes = rng.random(T) < 0.2
    return Episode(obs, act, np.asarray(rewards, dtype=np.float32), successes, **kwargs)


def make_episodes(
    n: int,
    T: int = 20,
    obs_dim: int = 5,
    act_dim: int = 2,
    seed: int = 0,
    reward_fn: RewardFn | None = None,
    dataset_id: str = "test",
) -> list[Episode]:
    """``n`` episodes of ``T`` steps, episode ``i`` seeded with ``seed + i`` and named
    ``eid(i)`` (episode ``i`` of dataset ``dataset_id``)."""
    episodes = [make_episode(T, obs_dim, act_dim, seed + i, reward_fn) for i in range(n)]
    return assign_ids(episodes, dataset_id)


def eid(i: int, dataset_id: str = "test") -> str:
    """The stable id of episode ``i`` of a test dataset."""
    return f"{dataset_id}:{i}"


def named(*episodes: Episode, dataset_id: str = "test") -> list[Episode]:
    """Give hand-made episodes the ids ``eid(0)``, ``eid(1)``, ... (in place)."""
    return assign_ids(list(episodes), dataset_id)


def linear_reward(weights: np.ndarray) -> RewardFn:
    """``r_t = obs_t @ weights`` (a reward a small network can learn)."""
    weights = np.asarray(weights, dtype=np.float32)
    return lambda obs, act: obs @ weights


@pytest.fixture
def episodes() -> list[Episode]:
    """Eight 20-step episodes, obs_dim 5, act_dim 2, random rewards."""
    return make_episodes(8, T=20)


@pytest.fixture
def linear_reward_episodes() -> list[Episode]:
    """Sixteen 20-step episodes whose reward is a fixed linear function of the observation."""
    return make_episodes(16, T=20, seed=100, reward_fn=linear_reward([1.0, -0.5, 0.25, 0.0, 0.0]))


def robopref_in_process(*args: str, capsys) -> str:
    """Run the ``robopref`` CLI in this process (lerobot is imported once per test session, not
    per run); returns its stdout. Subprocess tests cover the real entry point."""
    import sys

    from robopref.cli import main

    argv = sys.argv
    try:
        main(list(args))
    finally:
        sys.argv = argv
    return capsys.readouterr().out


def without_wall_times(value):
    """``value`` (nested dicts and lists) without its ``wall_time_s`` entries: what two runs
    of the same seed must agree on."""
    if isinstance(value, dict):
        return {k: without_wall_times(v) for k, v in value.items() if k != "wall_time_s"}
    if isinstance(value, list):
        return [without_wall_times(v) for v in value]
    return value
