"""Show a recorded Peel-v0 episode again: replay its actions from its scene and render.

Peel-v0 is deterministic given its settings, its scene seed (the episode's variation) and
its actions, and the skin removed so far lives in the task's own bookkeeping, not in MuJoCo's
state; so a frame is re-created by replaying the episode up to it rather than by setting a
stored simulator state. The episode's own observations check the replay at every frame: a
run made with other settings (or another robopref) stops with one line instead of showing
someone a different episode.

``replay_spec(task)`` is what an episode must carry for this (its ``meta["replay"]``: the
env and safety settings); ``PeelReplayer.render`` gives the frames.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from robopref.envs.peel.config import PeelConfig
from robopref.envs.peel.env import PeelEnv
from robopref.errors import DatasetError

REPLAY_KIND = "peel-v0"
# Observations are stored as float32: a faithful replay matches them to float32 rounding.
OBS_TOLERANCE = 1e-4


def replay_spec(peel_config: PeelConfig, safety_config) -> dict:
    """The JSON-ready settings a replay needs (``episode.meta["replay"]``)."""
    safety = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in dataclasses.asdict(safety_config).items()
        if k != "event_log_path"  # a replay must not append to the run's safety log
    }
    peel = {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(peel_config).items()}
    return {"kind": REPLAY_KIND, "peel": peel, "safety": safety}


def _as_tuples(options: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


class PeelReplayer:
    """Renders frames of recorded Peel-v0 episodes by replaying them (build, use and close in
    one thread: the simulator's renderer owns a GL context)."""

    def __init__(self, camera: str = "front", width: int = 320, height: int = 240):
        self.camera, self.width, self.height = camera, int(width), int(height)
        self._env: PeelEnv | None = None
        self._spec: dict | None = None

    def _env_for(self, spec: dict) -> PeelEnv:
        if self._env is not None and self._spec == spec:
            return self._env
        from robopref.hardware.safety import SafetyConfig

        self.close()
        try:
            peel = PeelConfig(**_as_tuples(spec["peel"]))
            safety = SafetyConfig(**_as_tuples(spec["safety"])) if spec.get("safety") else None
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"the episode's replay settings cannot be read ({exc}): it was "
                               "recorded by another robopref; re-run the rollout") from None
        self._env, self._spec = PeelEnv(peel, safety=safety), spec
        return self._env

    def render(self, spec: dict, variation: int, actions: np.ndarray, start: int, end: int,
               observations: np.ndarray | None = None) -> np.ndarray:
        """``(end - start, H, W, 3)`` uint8 frames of steps ``[start, end)``.

        ``actions`` ``(T, 6)`` (m, rad per tick) and ``observations`` ``(T, obs_dim)`` are the
        episode's; frame ``t`` shows the scene before action ``t``, as observation ``t``.
        """
        if spec.get("kind") != REPLAY_KIND:
            raise DatasetError(f"replay settings of kind {spec.get('kind')!r} are not Peel-v0's")
        if not 0 <= start < end <= len(actions):
            raise DatasetError(f"frames [{start}, {end}) are outside the episode's "
                               f"{len(actions)} steps: the dataset changed")
        env = self._env_for(spec)
        obs, _ = env.reset(seed=int(variation))
        frames = []
        for t in range(end):
            if observations is not None:
                gap = float(np.max(np.abs(obs - observations[t])))
                if not gap <= OBS_TOLERANCE:
                    raise DatasetError(
                        f"the replay left the recorded episode at step {t} (observation off by "
                        f"{gap:.3g}): it was recorded with other settings or another robopref, "
                        "so it cannot be shown; record it with cameras")
            if t >= start:
                frames.append(env.sim.render(self.camera, self.width, self.height))
            if t + 1 < end:
                obs, *_ = env.step(actions[t])
        return np.stack(frames).astype(np.uint8)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()  # disconnects the arm, which closes its renderers
        self._env, self._spec = None, None
