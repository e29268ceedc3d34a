"""Re-render Meta-World frames offscreen from recorded simulator states.

Rollouts store the MuJoCo state before each action (``Episode.sim_states``, laid out by
:data:`robopref.envs.metaworld.SIM_STATE_SPEC`) and the variation (``[goal_set_seed,
goal_index]``); no images. :class:`MetaWorldRenderer` rebuilds the scene of that variation
(goal sites and object placements live partly in the *model*, so the env is reset to the
variation first), then sets each state, runs ``mj_forward`` and draws it with
``mujoco.Renderer``. Rendering is deterministic: the same states give the same pixels, in
this process or another (checked with OSMesa).

The GL backend comes from ``MUJOCO_GL``, read by MuJoCo when first imported: ``osmesa``
(software, any machine) or ``egl`` (GPU). A renderer's GL context belongs to the thread
that created it: create, use and close it in one thread.

Defaults, measured on a 2-core machine with OSMesa: shadows, reflections and multisampling
cost 5-10x the rest of a frame (a 4096 px shadow map is drawn per light) and add little at
this size, so they are off; a 360x480 frame then takes ~30 ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

from robopref.envs.metaworld import SIM_STATE_SPEC, MetaWorldConfig, MetaWorldEnv
from robopref.errors import ConfigError, DatasetError, RobopError

# Meta-World's corner cameras were placed for mujoco-py, whose images came out bottom-up:
# rendered by mujoco.Renderer they are upside down, so their frames are turned 180 degrees.
UPSIDE_DOWN_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})
# Cameras of our own (free cameras: point looked at (m), distance (m), azimuth and
# elevation (degrees)). "workspace" looks over the robot's shoulder at the middle of the table
# where every task's objects and goals lie, at about twice the size Meta-World's corner
# cameras show them, and the arm seldom hides the gripper.
FREE_CAMERAS = {
    "workspace": {"lookat": (0.0, 0.7, 0.1), "distance": 1.25, "azimuth": 140.0,
                  "elevation": -30.0},
}
DEFAULT_CAMERA = "workspace"
DEFAULT_HEIGHT, DEFAULT_WIDTH = 360, 480


class RenderError(RobopError):
    """Offscreen rendering is unavailable (no GL backend) or was misconfigured."""


class MetaWorldRenderer:
    """Frames of one Meta-World task from its simulator states.

    ``camera``: one of :data:`FREE_CAMERAS` or a camera of the Meta-World scene (``topview``,
    ``corner``, ``corner2``, ``corner3``, ``corner4``, ``behindGripper``). ``height`` x ``width``:
    frame size in pixels. Builds its own env (~0.6 s); reuse one renderer per task.
    """

    def __init__(self, task: str, camera: str = DEFAULT_CAMERA, height: int = DEFAULT_HEIGHT,
                 width: int = DEFAULT_WIDTH):
        if height < 16 or width < 16:
            raise ConfigError(f"render size {height}x{width} is too small: use 16 px or more")
        self.task, self.camera, self.height, self.width = task, camera, int(height), int(width)
        self.env = MetaWorldEnv(MetaWorldConfig(task=task))
        model = self.env.unwrapped.model
        cameras = [*FREE_CAMERAS, *(model.camera(i).name for i in range(model.ncam))]
        if camera not in cameras:
            self.env.close()
            raise ConfigError(f"Meta-World has no camera '{camera}': choose one of "
                              f"{', '.join(cameras)}")
        self._camera: str | mujoco.MjvCamera = camera
        if camera in FREE_CAMERAS:
            view = FREE_CAMERAS[camera]
            self._camera = mujoco.MjvCamera()
            self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
            self._camera.lookat[:] = view["lookat"]
            self._camera.distance = view["distance"]
            self._camera.azimuth, self._camera.elevation = view["azimuth"], view["elevation"]
        # This env only draws: its model's render settings are ours to change.
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        self.state_size = mujoco.mj_stateSize(model, SIM_STATE_SPEC)
        try:
            self.renderer = mujoco.Renderer(model, self.height, self.width)
        except Exception as exc:  # no display, no EGL device, no libOSMesa
            self.env.close()
            line = " ".join(str(exc).split())[:160]
            raise RenderError(f"offscreen rendering is unavailable ({type(exc).__name__}: "
                              f"{line}): set MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (CPU, "
                              "needs libosmesa) before starting") from exc
        self._options = mujoco.MjvOption()
        self._variation: list[int] | None = None

    def render(self, variation: Sequence[int], states: np.ndarray) -> np.ndarray:
        """``(n, height, width, 3)`` uint8 frames of ``states`` ``(n, S)`` float64 recorded
        in variation ``[goal_set_seed, goal_index]``."""
        states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2 or states.shape[1] != self.state_size:
            raise DatasetError(
                f"simulator states of shape {states.shape} do not fit {self.task}'s model "
                f"(n, {self.state_size}): they were recorded with another Meta-World or MuJoCo "
                "version; re-run the rollout with this one"
            )
        self._reset_to(variation)
        model, data = self.env.unwrapped.model, self.env.unwrapped.data
        frames = np.empty((len(states), self.height, self.width, 3), dtype=np.uint8)
        for i, state in enumerate(states):
            mujoco.mj_setState(model, data, state, SIM_STATE_SPEC)
            mujoco.mj_forward(model, data)  # positions of bodies, geoms and sites from qpos
            frames[i] = self.draw()
        return frames

    def draw(self) -> np.ndarray:
        """``(height, width, 3)`` uint8: the frame of ``self.env`` as it is now (a rollout
        stepping ``self.env`` sees these pixels; :meth:`render` reproduces them)."""
        data = self.env.unwrapped.data
        self.renderer.update_scene(data, camera=self._camera, scene_option=self._options)
        flags = self.renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        frame = self.renderer.render()
        return frame[::-1, ::-1] if self.camera in UPSIDE_DOWN_CAMERAS else frame

    def _reset_to(self, variation: Sequence[int]) -> None:
        try:
            key = [int(v) for v in variation]
        except (TypeError, ValueError):
            key = None
        if key is None or len(key) != 2:
            raise DatasetError(f"variation {variation!r} is not [goal_set_seed, goal_index]: "
                               "the episode's meta was not written by a Meta-World rollout")
        if key != self._variation:
            # Goal sites and some object placements are model fields set by the reset.
            self.env.reset(options={"variation": key})
            self._variation = key

    def close(self) -> None:
        self.renderer.close()
        self.env.close()


def render_states(task: str, variation: Sequence[int], states: np.ndarray,
                  camera: str = DEFAULT_CAMERA, height: int = DEFAULT_HEIGHT,
                  width: int = DEFAULT_WIDTH) -> np.ndarray:
    """``(n, height, width, 3)`` uint8 frames of Meta-World ``task`` from ``states`` ``(n, S)``
    recorded in ``variation``; builds and closes a renderer (use :class:`MetaWorldRenderer`
    to render many segments)."""
    renderer = MetaWorldRenderer(task, camera, height, width)
    try:
        return renderer.render(variation, states)
    finally:
        renderer.close()
