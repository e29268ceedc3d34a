"""The Peel-v0 task's bookkeeping (``PeelTask``): the skin layer, cut depth, force, success.

The "fruit" is a horizontal capsule along the world x axis (``force_arm.xml``). A thin skin
layer covers the top of its cylindrical part: ``|x - cx| <= layer_half_length_m`` along the
axis and ``|theta| <= layer_half_angle_rad`` around it (theta = 0 at the top, positive toward
+y). The layer is a grid of patches kept in NumPy (``n_segments * patches_per_segment`` rows
along x by ``n_arc`` columns around the arc), not MuJoCo bodies.

Every physics tick (500 Hz) the blade tip's depth below the *original* skin surface is
computed analytically from the tip sphere's centre: ``depth = radius - (rho - tip_radius)``
with ``rho`` the distance of the centre from the axis segment (this is MuJoCo's penetration of
the tip into the soft fruit contact, about 5 kN/m). Then:

- ``min_depth_m <= depth <= max_depth_m`` (the peel band, default 0.5-2.5 mm around a 1.5 mm
  target): patches under the blade (a square footprint of half-width ``blade_half_width_m``
  along x and along the arc) are removed;
- ``depth > max_depth_m``: the patches under the blade are gouged (an error);
- a tool contact force above ``force_limit_n`` counts against success.

``success`` = removed fraction >= ``success_removed_fraction`` and gouged fraction <=
``success_max_gouged_fraction`` and peak contact force <= ``force_limit_n``.

The arc is also split into ``N_LANES`` (3) equal lanes, one blade stroke wide each; their
removed fractions are part of the observation, so what is left to peel is visible to a policy
(a scripted schedule would otherwise be hidden state that behaviour cloning cannot follow).
So is the blade tip's position in the fruit's own coordinates (axial offset, angle around the
axis, depth below the skin): the quantities a peeler acts on, which a policy would otherwise
have to compute from the TCP pose and the fruit's pose to sub-millimetre precision.
"""

from __future__ import annotations

import math

import numpy as np

from robopref.envs.peel.config import FLESH, N_LANES, SKIN, PeelConfig
from robopref.errors import ConfigError
from robopref.hardware.sim import SimForceArm

__all__ = ["STEP_METRIC_NAMES", "PeelTask"]

# Per control step (``PeelTask.step_metrics``), what happened during the step's physics ticks:
# removed and gouged fraction of the layer gained, the fraction of ticks touching the fruit
# and of ticks cutting inside the peel band, the peak contact force (N), and the fraction of
# ticks over the force limit.
STEP_METRIC_NAMES = (
    "removed_gain",
    "gouged_gain",
    "contact_fraction",
    "in_band_fraction",
    "peak_force_n",
    "over_force_fraction",
)
# The per-step true reward: removed gain minus twice the gouged gain, minus this per tick over
# the force limit (PeelEnv's reward, the scripted teacher's ground truth).
GOUGE_PENALTY = 2.0
OVER_FORCE_PENALTY_PER_TICK = 0.01


def _sim_arm(arm) -> SimForceArm:
    """The ``SimForceArm`` inside ``arm`` (a ``SafeArm`` keeps the wrapped arm in ``.arm``)."""
    inner = arm
    for _ in range(8):
        if isinstance(inner, SimForceArm):
            return inner
        inner = getattr(inner, "arm", None)
    raise ConfigError(
        f"the peel task needs a SimForceArm (or a SafeArm around one), got {type(arm).__name__}"
    )


class PeelTask:
    """Peel-layer bookkeeping for a ``SimForceArm`` (see the module docstring).

    Call ``reset(arm, rng)`` at the start of an episode and ``update(arm)`` after every
    ``send_action`` (it consumes the arm's per-tick trace, so no physics tick is missed even
    if calls are skipped). ``arm`` may be a ``SafeArm`` wrapping the sim arm.
    """

    def __init__(self, config: PeelConfig | None = None):
        self.config = config if config is not None else PeelConfig()
        c = self.config
        self.n_rows = c.n_segments * c.patches_per_segment
        self._row_centres = -c.layer_half_length_m + (np.arange(self.n_rows) + 0.5) * (
            2 * c.layer_half_length_m / self.n_rows
        )
        self._col_angles = -c.layer_half_angle_rad + (np.arange(c.n_arc) + 0.5) * (
            2 * c.layer_half_angle_rad / c.n_arc
        )
        self._lane = np.minimum((np.arange(c.n_arc) + 0.5) / c.n_arc * N_LANES, N_LANES - 1).astype(
            int
        )
        self.center = np.array(c.object_center_m)
        self.radius = float(np.mean(c.radius_range_m))
        self.half_length = 0.08
        self.tip_radius = 0.004
        self.tip = self.center + np.array([0.0, 0.0, 0.1])  # blade tip centre (m, base frame)
        self._clear()

    def _clear(self) -> None:
        c = self.config
        self.removed = np.zeros((self.n_rows, c.n_arc), dtype=bool)
        self.gouged = np.zeros((self.n_rows, c.n_arc), dtype=bool)
        self._segment_error_sum = np.zeros(c.n_segments)
        self._segment_count = np.zeros(c.n_segments)
        self._peak_force = 0.0
        self._force_sum = 0.0
        self._contact_ticks = 0
        self._over_force_ticks = 0
        self._step = {"removed": 0.0, "gouged": 0.0, "ticks": 0, "contact": 0, "in_band": 0,
                      "peak": 0.0, "over": 0}

    # ----------------------------------------------------------------- episode
    def reset(self, arm, rng: np.random.Generator) -> None:
        """Draws the fruit's centre (``object_center_m +- object_jitter_m``) and radius
        (``radius_range_m``), writes them into the model, and puts the arm at rest at its
        home joint angles plus uniform noise of ``initial_joint_noise_rad``."""
        sim = _sim_arm(arm)
        c = self.config
        m = sim.model
        self.center = np.array(c.object_center_m) + rng.uniform(-1, 1, 3) * np.array(
            c.object_jitter_m
        )
        self.radius = float(rng.uniform(*c.radius_range_m))
        body, geom = m.body("fruit").id, m.geom("fruit").id
        self.half_length = float(m.geom_size[geom][1])
        self.tip_radius = float(m.geom_size[m.geom("blade_tip").id][0])
        m.body_pos[body] = self.center
        m.geom_size[geom][0] = self.radius
        # Collision culling reads these bounds; keep them in step with the new radius.
        m.geom_rbound[geom] = self.radius + self.half_length
        m.geom_aabb[geom][3:] = [self.radius, self.radius, self.radius + self.half_length]
        try:
            holder = m.geom("holder").id
            m.geom_pos[holder][2] = -(self.radius + m.geom_size[holder][2])
        except KeyError:
            pass
        noise = rng.uniform(-1, 1, 6) * c.initial_joint_noise_rad
        m.geom_rgba[geom] = SKIN
        sim.reset(np.array(sim.config.initial_joint_positions) + noise)
        sim.pop_trace()
        self.tip = np.array(sim.data.site_xpos[m.site("tcp").id], dtype=np.float64)
        self._clear()

    def update(self, arm) -> None:
        """Processes every physics tick run since the last call."""
        sim = _sim_arm(arm)
        trace = sim.pop_trace()
        self.process_trace(trace["tcp_position"], trace["contact_force"])
        # Cameras see progress too: the skin's green fades toward flesh as it comes off.
        removed = float(self.removed.mean())
        sim.model.geom_rgba[sim.model.geom("fruit").id] = (1 - removed) * SKIN + removed * FLESH

    def process_trace(self, tip: np.ndarray, force: np.ndarray) -> None:
        """Books physics ticks: ``tip (N, 3)`` blade tip centres (m, base frame) and
        ``force (N,)`` tool contact normal forces (N), as ``SimForceArm.pop_trace`` gives."""
        tip = np.asarray(tip, dtype=np.float64).reshape(-1, 3)
        force = np.asarray(force, dtype=np.float64).reshape(-1)
        c = self.config
        # One call per control step: what this call books is that step's own metrics.
        self._step = {"removed": float(self.removed.mean()), "gouged": float(self.gouged.mean()),
                      "ticks": len(tip), "contact": 0, "in_band": 0,
                      "peak": float(force.max()) if len(force) else 0.0,
                      "over": int(np.count_nonzero(force > c.force_limit_n))}
        if len(tip) == 0:
            return
        self.tip = tip[-1].copy()
        rel = tip - self.center
        axial = np.clip(rel[:, 0], -self.half_length, self.half_length)
        rho = np.sqrt((rel[:, 0] - axial) ** 2 + rel[:, 1] ** 2 + rel[:, 2] ** 2)
        depth = self.radius - (rho - self.tip_radius)
        touching = depth > 0
        self._peak_force = max(self._peak_force, float(force.max()))
        self._over_force_ticks += int(np.count_nonzero(force > c.force_limit_n))
        if not touching.any():
            return
        self._contact_ticks += int(np.count_nonzero(touching))
        self._force_sum += float(force[touching].sum())
        x = rel[touching, 0]
        d = depth[touching]
        self._step["contact"] = int(np.count_nonzero(touching))
        self._step["in_band"] = int(np.count_nonzero((d >= c.min_depth_m) & (d <= c.max_depth_m)))
        theta = np.arctan2(rel[touching, 1], rel[touching, 2])
        segment = np.floor(
            (x + c.layer_half_length_m) / (2 * c.layer_half_length_m) * c.n_segments
        ).astype(int)
        inside = (segment >= 0) & (segment < c.n_segments)
        np.add.at(self._segment_error_sum, segment[inside], np.abs(d[inside] - c.target_depth_m))
        np.add.at(self._segment_count, segment[inside], 1)
        w = c.blade_half_width_m
        cutting = d >= c.min_depth_m
        if not cutting.any():
            return
        # (ticks, rows, cols): which patches lie under the blade's footprint at each tick.
        rows = np.abs(self._row_centres[None, :] - x[cutting, None]) <= w
        cols = np.abs(self._col_angles[None, :] - theta[cutting, None]) * self.radius <= w
        under = rows[:, :, None] & cols[:, None, :]
        deep = d[cutting] > c.max_depth_m
        # Gouging takes the skin off too, badly: removed and gouged.
        self.removed |= under.any(axis=0)
        if deep.any():
            self.gouged |= under[deep].any(axis=0)

    # ----------------------------------------------------------------- readouts
    def lane_removed_fractions(self) -> np.ndarray:
        """``(N_LANES,)``: removed fraction of each lane, the arc's equal sectors from -theta
        to +theta (a patch column belongs to the sector holding its centre angle)."""
        return np.array([self.removed[:, self._lane == k].mean() for k in range(N_LANES)])

    def tip_in_fruit_frame(self) -> np.ndarray:
        """``(3,)``: the blade tip's axial offset from the fruit's centre (m, along +x), its
        angle around the axis (rad, 0 at the top, positive toward +y) and its depth below the
        original skin (m, negative above it), from the last physics tick booked."""
        rel = self.tip - self.center
        rho = math.hypot(rel[1], rel[2])
        depth = self.radius - (rho - self.tip_radius)
        return np.array([rel[0], math.atan2(rel[1], rel[2]), depth])

    def environment_state(self) -> np.ndarray:
        """``(11,)`` float32: fruit centre x, y, z (m), radius (m), removed fraction, the
        removed fraction of each of the ``N_LANES`` lanes (see ``lane_removed_fractions``),
        then the blade tip's axial offset (m), angle (rad) and depth below the skin (m) (see
        ``tip_in_fruit_frame``)."""
        return np.array(
            [
                *self.center,
                self.radius,
                self.removed.mean(),
                *self.lane_removed_fractions(),
                *self.tip_in_fruit_frame(),
            ],
            dtype=np.float32,
        )

    def step_metrics(self) -> dict[str, float]:
        """What the last ``update`` (one control step) booked: the ``STEP_METRIC_NAMES``
        (fractions in [0, 1], ``peak_force_n`` in N) and ``reward``, the step's true reward
        (removed gain - 2 gouged gain - 0.01 per tick over the force limit)."""
        step = self._step
        ticks = max(step["ticks"], 1)
        removed = float(self.removed.mean()) - step["removed"]
        gouged = float(self.gouged.mean()) - step["gouged"]
        return {
            "removed_gain": removed,
            "gouged_gain": gouged,
            "contact_fraction": step["contact"] / ticks,
            "in_band_fraction": step["in_band"] / ticks,
            "peak_force_n": step["peak"],
            "over_force_fraction": step["over"] / ticks,
            "reward": removed - GOUGE_PENALTY * gouged
            - OVER_FORCE_PENALTY_PER_TICK * step["over"],
        }

    def metrics(self) -> dict:
        """Episode metrics so far.

        ``removed_fraction``, ``gouged_fraction`` in [0, 1]; ``depth_error_per_segment``: one
        float per segment along the axis, the mean |depth - target_depth_m| (m) over ticks the
        blade touched the fruit there, or ``target_depth_m`` for a segment never touched (as if
        cut at zero depth); ``peak_contact_force_n`` over all ticks and ``mean_contact_force_n``
        over ticks touching the fruit (N); ``over_force_ticks``; ``success`` (bool).
        """
        c = self.config
        errors = np.where(
            self._segment_count > 0,
            self._segment_error_sum / np.maximum(self._segment_count, 1),
            c.target_depth_m,
        )
        removed = float(self.removed.mean())
        gouged = float(self.gouged.mean())
        peak = float(self._peak_force)
        return {
            "removed_fraction": removed,
            "gouged_fraction": gouged,
            "depth_error_per_segment": [float(e) for e in errors],
            "peak_contact_force_n": peak,
            "mean_contact_force_n": self._force_sum / max(self._contact_ticks, 1),
            "over_force_ticks": int(self._over_force_ticks),
            "success": bool(
                removed >= c.success_removed_fraction
                and gouged <= c.success_max_gouged_fraction
                and peak <= c.force_limit_n
            ),
        }
