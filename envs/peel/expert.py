"""``PeelExpert``: a scripted Peel-v0 demonstrator with quality knobs (``PeelExpertConfig``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robopref.envs.peel.config import N_LANES, STATE_DIM, TOOL_DOWN, PeelConfig
from robopref.errors import ConfigError
from robopref.geometry import matrix_from_rotvec, rotvec_from_matrix

__all__ = ["PeelExpert", "PeelExpertConfig"]


@dataclass
class PeelExpertConfig:
    """Quality knobs of ``PeelExpert``.

    Attributes:
        action_noise: std of Gaussian noise added to every action component (m for
            translation, rad for rotation).
        depth_offset_m: bias on the depth the expert aims for (positive cuts deeper).
        pause_prob: per-step probability of starting a pause (zero actions).
        pause_steps: length of a pause in control steps.
        stroke_speed_m_s: speed of the target along the fruit during a stroke.
    """

    action_noise: float = 0.0
    depth_offset_m: float = 0.0
    pause_prob: float = 0.0
    pause_steps: int = 5
    stroke_speed_m_s: float = 0.08

    def __post_init__(self) -> None:
        if not (isinstance(self.action_noise, int | float) and 0 <= self.action_noise < 1):
            raise ConfigError(f"peel expert action_noise={self.action_noise!r} must be in [0, 1)")
        if not (isinstance(self.depth_offset_m, int | float) and abs(self.depth_offset_m) < 0.02):
            raise ConfigError(
                f"peel expert depth_offset_m={self.depth_offset_m!r} must be within +-0.02 m"
            )
        if not 0 <= self.pause_prob <= 1:
            raise ConfigError(f"peel expert pause_prob={self.pause_prob} must lie in [0, 1]")
        if isinstance(self.pause_steps, bool) or not isinstance(self.pause_steps, int):
            raise ConfigError(f"peel expert pause_steps={self.pause_steps!r} must be an integer")
        if self.pause_steps < 0:
            raise ConfigError(f"peel expert pause_steps={self.pause_steps} must be >= 0")
        if not 0 < self.stroke_speed_m_s <= 0.3:
            raise ConfigError(
                f"peel expert stroke_speed_m_s={self.stroke_speed_m_s} must be in (0, 0.3]"
            )


def _clip_norm(vector: np.ndarray, limit: float) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector * (limit / norm) if norm > limit else vector


class PeelExpert:
    """A scripted peeler whose every action is a function of the current Peel-v0 observation
    (``robopref.policies.Policy`` interface: ``begin_episodes(n)``, then
    ``act(obs (B, 35)) -> (B, 6)`` float32). The only state it keeps is the pause knob's
    countdown, so behaviour cloning can learn it: a cloned policy sees everything the expert
    decides from.

    From the TCP pose (the blade tip) and the fruit's centre and radius it computes the tip's
    axial position ``x``, angle ``theta`` around the axis (0 at the top) and depth below the
    skin. Every lane (``N_LANES`` sectors of the arc, their removed fractions observed) is cut
    in one stroke toward +x, from ``-stroke_end_x`` to ``+stroke_end_x``. Then, in order:

    - every lane peeled (removed fraction >= ``LANE_DONE``): rise ``RETREAT_CLEARANCE_M`` above
      the skin and hold;
    - in the cutting zone (less than ``CONTACT_M`` above the skin, along the layer) before the
      stroke's end: cut the lane nearest ``theta``. The depth follows a proportional law on the
      measured depth (the env integrates the deltas, so the commanded target settles where
      the depth is right); the blade advances at the stroke speed, slowed while the depth is
      off by more than ``SETTLE_M - 1 mm`` (a cut starts only once the depth has settled), and
      is steered to the lane's centre angle. A blade that lost contact mid-stroke by a few
      millimetres is pressed back here, not sent around again;
    - in the zone past the stroke's end: lift straight off;
    - in the air: approach the first unpeeled lane's start down a funnel, the clearance
      allowed above the skin growing with the distance from the start (``FUNNEL_*``), and
      rise straight up first when far below the funnel.

    One stroke direction and one continuous approach rule keep the expert free of the
    discontinuities a cloned policy blends into stalls: with alternating directions, a policy
    between two lanes averaged +x and -x into standing still.

    Free-space moves correct a fraction ``MOVE_GAIN`` of the pose error per step with a floor
    of ``MIN_STEP_M``: the arm's pose lags its commanded target, so correcting all of it would
    overshoot, and a slow approach is a weak attractor that a cloned policy's small errors can
    cancel.
    """

    TRAVEL_CLEARANCE_M = 0.012
    RETREAT_CLEARANCE_M = 0.03
    # Closer than this to the skin counts as the cutting zone (m): a blade that lost contact
    # mid-stroke by a few millimetres is pressed back by the depth law, not sent around again.
    CONTACT_M = 0.005
    ZONE_OVERRUN_M = 0.015  # the zone reaches this far past a stroke's end along x (m)
    MAX_DEPTH_STEP_M = 0.004  # the depth law moves the target at most this far in per step (m)
    SETTLE_M = 0.0015  # the blade stands still along x while the depth is off by this (m)
    DEPTH_GAIN = 1.0  # fraction of the measured depth error corrected per step
    ANGLE_GAIN = 0.5  # fraction of the lane-angle error corrected per step
    STROKE_MARGIN_M = 0.008  # strokes run this far beyond the layer along x (m)
    LANE_DONE = 0.95
    FUNNEL_MOUTH_M = 0.004  # within this distance of a stroke's start the blade goes down (m)
    FUNNEL_LENGTH_M = 0.012  # ... and the allowed clearance reaches travel height this far on
    FUNNEL_SLACK_M = 0.003  # lower than the funnel by this: rise straight up first (m)
    MOVE_GAIN = 0.5
    MIN_STEP_M = 0.002

    def __init__(
        self, config: PeelExpertConfig | None = None, task: PeelConfig | None = None, seed=0
    ):
        self.config = config if config is not None else PeelExpertConfig()
        self.task = task if task is not None else PeelConfig()
        self.rng = np.random.default_rng(seed)
        self._high = np.array(
            [self.task.max_translation_step_m] * 3 + [self.task.max_rotation_step_rad] * 3
        )
        t = self.task
        self.lane_angles = t.layer_half_angle_rad * (-1 + (2 * np.arange(N_LANES) + 1) / N_LANES)
        self.stroke_end_x = t.layer_half_length_m + self.STROKE_MARGIN_M
        self.tip_radius = 0.004
        self.mode = "travel"
        self.begin_episodes(1)

    def begin_episodes(self, n: int) -> None:
        self._n = n
        self._pause = np.zeros(n, dtype=int)

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim == 1:
            return self.act(obs[None])[0]
        if len(obs) != self._n:
            self.begin_episodes(len(obs))
        return np.stack([self._act_one(i, row) for i, row in enumerate(obs)]).astype(np.float32)

    def _act_one(self, i: int, obs: np.ndarray) -> np.ndarray:
        if self._pause[i] > 0:
            self._pause[i] -= 1
            return np.zeros(6)
        if self.config.pause_prob and self.rng.random() < self.config.pause_prob:
            self._pause[i] = self.config.pause_steps
        action = self.clean_action(obs)
        if self.config.action_noise:
            action = action + self.rng.normal(0.0, self.config.action_noise, 6)
        return np.clip(action, -self._high, self._high)

    def clean_action(self, obs: np.ndarray) -> np.ndarray:
        """The noise- and pause-free action ``(6,)`` for one observation ``(35,)``; sets
        ``self.mode`` to the rule that chose it (done, cut, lift, descend, travel)."""
        t = self.task
        obs = np.asarray(obs, dtype=np.float64)
        env = obs[STATE_DIM:]
        center, radius, lanes = env[:3], float(env[3]), env[5 : 5 + N_LANES]
        tcp = obs[12:18]
        rel = tcp[:3] - center
        x = float(rel[0])
        rho = math.hypot(rel[1], rel[2])
        theta = math.atan2(rel[1], rel[2])
        surface = radius + self.tip_radius  # tip-centre distance from the axis at zero depth
        depth = surface - rho
        error = t.target_depth_m + self.config.depth_offset_m - depth
        travel_rho = surface + self.TRAVEL_CLEARANCE_M
        end = self.stroke_end_x
        todo = np.flatnonzero(lanes < self.LANE_DONE)
        if len(todo) == 0:
            self.mode = "done"
            goal = (x, theta, surface + self.RETREAT_CLEARANCE_M)
        elif depth > -self.CONTACT_M and abs(x) < end + self.ZONE_OVERRUN_M:
            if x < end:
                self.mode = "cut"
                return self._cut(center, tcp, x, theta, rho, error)
            self.mode = "lift"
            goal = (x, theta, travel_rho)
        else:
            start, lane = -end, self.lane_angles[todo[0]]
            distance = math.hypot(start - x, (lane - theta) * rho)
            # The clearance allowed above the skin grows with the distance from the start, so
            # the way down is one continuous rule.
            clearance = self.TRAVEL_CLEARANCE_M * float(
                np.clip((distance - self.FUNNEL_MOUTH_M) / self.FUNNEL_LENGTH_M, 0.0, 1.0)
            )
            if -depth < clearance - self.FUNNEL_SLACK_M:
                self.mode = "lift"  # below the funnel: rise straight up to it
                goal = (x, theta, surface + clearance)
            else:
                self.mode = "descend" if clearance < self.TRAVEL_CLEARANCE_M else "travel"
                goal = (start, lane, max(surface + clearance, rho - self.MAX_DEPTH_STEP_M))
        offset = self._toward(center, goal) - tcp[:3]
        gain = 1.0 if self.mode == "lift" else self.MOVE_GAIN
        step = _clip_norm(gain * offset, t.max_translation_step_m)
        if np.linalg.norm(offset) > 2 * self.MIN_STEP_M > 2 * np.linalg.norm(step):
            step = _clip_norm(offset, self.MIN_STEP_M)
        return self._with_tool_down(step, tcp)

    def _cut(self, center, tcp, x, theta, rho, error) -> np.ndarray:
        """The cutting action: advance along +x, steer to the nearest lane, hold the depth."""
        t = self.task
        advance = self.config.stroke_speed_m_s / t.control_hz
        advance *= float(np.clip((self.SETTLE_M - abs(error)) / 0.001, 0.0, 1.0))
        # Slow down over the stroke's last centimetre: the arm overshoots a sudden stop.
        advance *= float(np.clip((self.stroke_end_x - x) / 0.01, 0.3, 1.0))
        near = int(np.argmin(np.abs(self.lane_angles - theta)))
        turn = self.ANGLE_GAIN * (self.lane_angles[near] - theta)
        plunge = min(self.DEPTH_GAIN * error, self.MAX_DEPTH_STEP_M)
        step = self._toward(center, (x + advance, theta + turn, rho - plunge)) - tcp[:3]
        return self._with_tool_down(step, tcp)

    def _with_tool_down(self, step: np.ndarray, tcp: np.ndarray) -> np.ndarray:
        """``step (3,)`` (m) clipped, plus the rotation that turns the tool straight down."""
        t = self.task
        turn = TOOL_DOWN @ matrix_from_rotvec(tcp[3:]).T
        return np.concatenate(
            [
                _clip_norm(step, t.max_translation_step_m),
                _clip_norm(rotvec_from_matrix(turn), t.max_rotation_step_rad),
            ]
        )

    @staticmethod
    def _toward(center: np.ndarray, goal: tuple[float, float, float]) -> np.ndarray:
        """The base-frame point ``(3,)`` at axial ``x``, angle ``theta`` and distance ``rho``
        (m, rad, m) from the fruit's axis."""
        x, theta, rho = goal
        return center + np.array([x, rho * math.sin(theta), rho * math.cos(theta)])
