"""The policy contract shared by learned policies and scripted experts."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Policy(ABC):
    """Maps a batch of observations to actions.

    ``act(obs)``: ``obs (B, obs_dim)`` -> ``actions (B, act_dim)`` float32, environment units.
    ``begin_episodes(n)`` is called when ``n`` parallel episodes start (stateful policies
    reset there).
    """

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def begin_episodes(self, n: int) -> None:  # noqa: B027  (stateless policies need nothing)
        pass
