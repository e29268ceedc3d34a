"""A simulated force-sensing arm in MuJoCo (settings in ``sim_config``, its wrist F/T sensor
in ``sim_sensor``).

``SimForceArm`` runs the packaged ``force_arm.xml`` model: a UR-like 6-DoF arm with a wrist
force/torque sensor, a blade tool and a fixed "fruit" for the Peel-v0 task. It is
synchronous: each ``send_action`` advances the simulation by one control period, so nothing
ever sleeps. Two rates are involved:

- physics and the torque controller run every physics tick, ``model.opt.timestep`` (0.002 s,
  500 Hz in the packaged model; models slower than 500 Hz are refused);
- commands arrive at ``control_hz`` (default 20 Hz, meant for 10-30 Hz), each one held for
  ``round(1 / (control_hz * timestep))`` physics ticks (25 at the defaults).

The torque controller is a Cartesian impedance law on the ``tcp`` site,
``tau = J^T (K e - D v) + qfrc_bias + N^T tau_posture``: ``K`` is the configured stiffness
(N/m, N*m/rad), ``D = 2 * zeta * sqrt(K * diag(Lambda))`` with ``Lambda`` the operational-space
inertia from ``mj_fullM`` and ``mj_jacSite``, ``qfrc_bias`` compensates gravity and Coriolis
forces, and a joint-space posture spring acts in the dynamically consistent null space.
Torques are clipped to the actuators' ``ctrlrange`` (150 N*m big joints, 28 N*m wrist).

Clocks: every ``timestamp`` here is *simulated* seconds (``data.time``), not
``time.monotonic()``; it never goes backwards, also across ``reset()``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import mujoco
import numpy as np

from robopref.errors import ConfigError, NonFiniteError
from robopref.geometry import matrix_from_rotvec, rotvec_from_matrix, unwrap_rotvec
from robopref.hardware.base import ArmObservation, ForceArm, NotConnectedError, ProtectiveStop

# Re-exported: callers build the arm and its config from this module.
from robopref.hardware.sim_config import HOME_JOINT_POSITIONS, SimArmConfig, default_model_path

__all__ = ["HOME_JOINT_POSITIONS", "SimArmConfig", "SimForceArm", "default_model_path"]

# Lowest physics rate accepted: contact and the light wrist need >= 500 Hz to stay stable.
MIN_PHYSICS_HZ = 500.0
# Commands are clipped to this distance (m) from the shoulder axis origin: the arm's reach.
REACH_M = 0.85
# ... and to this height (m) above the table, so the TCP is never commanded into it.
MIN_TCP_HEIGHT_M = 0.005


class SimForceArm(ForceArm):
    """The MuJoCo arm behind the ``ForceArm`` contract (see the module docstring).

    Beyond the contract, tasks and tests use: ``model`` / ``data`` (the live MuJoCo
    structures), ``reset(joint_positions)``, ``advance(n_ticks)`` (physics ticks toward the
    current target, e.g. to let the arm settle), ``physics_steps`` (ticks run so far),
    ``pop_trace()`` (per-tick TCP positions and tool contact forces since the last call) and
    ``render(camera)``.

    Observations: ``tcp_pose`` is the ``tcp`` site, its rotation vector kept continuous with
    the previous observation (see ``unwrap_rotvec``); ``wrench`` is the load the tool applies
    to the wrist sensor (force N, torque N*m about ``ft_site``) in the tool frame: at rest it
    is the tool's weight, and pressing the blade on a surface adds the surface's push.
    ``timestamp`` is simulated seconds.
    """

    # Ticks of trace kept when nobody calls pop_trace(): a minute at 500 Hz.
    TRACE_LIMIT = 30_000

    def __init__(self, config: SimArmConfig | None = None) -> None:
        self.config = config if config is not None else SimArmConfig()
        self.model = mujoco.MjModel.from_xml_path(self.config.model_path)
        self.data = mujoco.MjData(self.model)
        m = self.model
        timestep = float(m.opt.timestep)
        if 1.0 / timestep < MIN_PHYSICS_HZ - 1e-6:
            raise ConfigError(
                f"model timestep {timestep} s runs physics below {MIN_PHYSICS_HZ:.0f} Hz: set "
                '<option timestep="0.002"/> or smaller in the MJCF'
            )
        if m.nv != 6 or m.nu != 6:
            raise ConfigError(
                f"model {self.config.model_path} has {m.nv} dofs and {m.nu} actuators: the sim "
                "arm needs exactly 6 of each"
            )
        try:
            self._tcp = m.site("tcp").id
            self._ft_site = m.site("ft_site").id
            force, torque = m.sensor("ft_force"), m.sensor("ft_torque")
        except KeyError as exc:
            raise ConfigError(
                f"model {self.config.model_path} lacks {exc}: it needs sites tcp and ft_site "
                "and sensors ft_force and ft_torque"
            ) from exc
        self._force_adr = int(force.adr[0])
        self._torque_adr = int(torque.adr[0])
        self._n_sub = max(1, round(1.0 / (self.config.control_hz * timestep)))
        self._period = self._n_sub * timestep
        self._tool_geoms = self._subtree_geoms(m.site_bodyid[self._ft_site])
        self._ctrl_low = m.actuator_ctrlrange[:, 0].copy()
        self._ctrl_high = m.actuator_ctrlrange[:, 1].copy()
        self._stiffness = np.asarray(self.config.stiffness)
        self._posture = np.asarray(self.config.initial_joint_positions)
        self._posture_damping = 2.0 * math.sqrt(self.config.posture_stiffness)
        self._jac = np.zeros((6, m.nv))
        self._mass = np.zeros((m.nv, m.nv))
        self._minv_jt = np.zeros((6, m.nv))
        self._quat = np.zeros(4)
        self._error = np.zeros(6)
        self._regulariser = 1e-6 * np.eye(6)
        self._posture_gain = self.config.posture_stiffness
        self._damping = np.zeros(6)
        self._jbar_t = np.zeros((6, m.nv))
        self._contact_force = np.zeros(6)
        self._shoulder = np.array(m.body("shoulder").pos) if _has_body(m, "shoulder") else None
        self._connected = False
        self._stopped = False
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._trace: deque[np.ndarray] = deque()
        self._trace_ticks = 0
        self._last_rotvec: np.ndarray | None = None
        self.physics_steps = 0
        self.reset()

    # ----------------------------------------------------------------- contract state
    @property
    def n_joints(self) -> int:
        return 6

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def control_period_s(self) -> float:
        """Seconds of simulated time per command: a whole number of physics ticks."""
        return self._period

    @property
    def physics_hz(self) -> float:
        return 1.0 / float(self.model.opt.timestep)

    @property
    def ticks_per_command(self) -> int:
        return self._n_sub

    @property
    def is_stopped(self) -> bool:
        return self._stopped

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # ----------------------------------------------------------------- sim-only control
    def reset(self, joint_positions: Sequence[float] | None = None) -> None:
        """Puts the arm at rest at ``joint_positions`` ``(6,)`` rad (default: the config's),
        holding its TCP there. Keeps the simulated clock running and any latched stop; model
        edits (a task moving the fruit) persist."""
        q = (
            np.asarray(self.config.initial_joint_positions)
            if joint_positions is None
            else np.asarray(joint_positions, dtype=np.float64)
        )
        if q.shape != (6,) or not np.all(np.isfinite(q)):
            raise NonFiniteError(f"reset joint_positions {q} must be 6 finite angles (rad)")
        now = float(self.data.time)
        mujoco.mj_resetData(self.model, self.data)
        self.data.time = now
        self.data.qpos[:] = q
        mujoco.mj_forward(self.model, self.data)
        self._last_rotvec = None
        self._hold_here()
        # Forward again with the holding torque so the first reading shows the arm at rest,
        # not falling under gravity with zero torque.
        self._refresh_dynamics()
        self.data.ctrl[:] = self._torque()
        mujoco.mj_forward(self.model, self.data)
        self._trace.clear()
        self._trace_ticks = 0

    def advance(self, n_ticks: int = 1) -> None:
        """Runs ``n_ticks`` physics ticks toward the current target (also while stopped, when
        the target is the pose where the stop happened)."""
        block = np.empty((n_ticks, 4))
        for i in range(n_ticks):
            block[i] = self._tick(refresh=i == 0)
        mujoco.mj_forward(self.model, self.data)  # derived quantities match the new state
        self._record(block)

    def pop_trace(self) -> dict[str, np.ndarray]:
        """Per physics tick since the last call: ``tcp_position (N, 3)`` m (base frame) and
        ``contact_force (N,)`` N, the summed normal force of every contact on the tool."""
        rows = np.concatenate(list(self._trace)) if self._trace else np.zeros((0, 4))
        self._trace.clear()
        self._trace_ticks = 0
        return {"tcp_position": rows[:, :3].copy(), "contact_force": rows[:, 3].copy()}

    # ----------------------------------------------------------------- contract I/O
    def get_observation(self) -> ArmObservation:
        self._require_connection()
        d = self.data
        position = d.site_xpos[self._tcp].copy()
        rotvec = rotvec_from_matrix(d.site_xmat[self._tcp].reshape(3, 3))
        if self._last_rotvec is not None:
            rotvec = unwrap_rotvec(rotvec, self._last_rotvec)
        self._last_rotvec = rotvec
        return ArmObservation(
            joint_positions=d.qpos.copy(),
            joint_velocities=d.qvel.copy(),
            tcp_pose=np.concatenate([position, rotvec]),
            wrench=self.tool_wrench(),
            timestamp=float(d.time),
            protective_stop=self._stopped,
        )

    def tool_wrench(self) -> np.ndarray:
        """``(6,)`` load of the tool on the wrist sensor (N, N*m), tool frame, noise-free.

        MuJoCo's force/torque sensors report what the wrist exerts on the tool subtree; the
        load on the sensor is its negation (the convention of a physical F/T sensor)."""
        s = self.data.sensordata
        return -np.concatenate(
            [s[self._force_adr : self._force_adr + 3], s[self._torque_adr : self._torque_adr + 3]]
        )

    def send_action(self, target_pose: np.ndarray) -> np.ndarray:
        """Holds TCP target ``(6,)`` ``[x, y, z, rx, ry, rz]`` (m, rad, base frame) for one
        control period. The position is clipped to the arm's reach (0.85 m from the shoulder)
        and to 5 mm above the table; the returned ``(6,)`` is the target used."""
        self._require_connection()
        if self._stopped:
            raise ProtectiveStop(
                "sim arm: protective stop latched; call recover() before sending commands"
            )
        target = np.array(target_pose, dtype=np.float64)
        if target.shape != (6,):
            raise ValueError(f"sim arm target_pose has shape {target.shape}; expected (6,)")
        if not np.all(np.isfinite(target)):
            raise NonFiniteError(
                f"sim arm target_pose {target} has NaN/inf: check the policy or teleop"
            )
        target[:3] = self._clip_position(target[:3])
        self._target_pos = target[:3].copy()
        self._target_rot = matrix_from_rotvec(target[3:])
        self.advance(self._n_sub)
        return target

    def stop(self) -> None:
        """Latches a protective stop: joint velocities are zeroed at once (the simulation's
        instant brake) and the arm holds the pose where it stopped."""
        self._stopped = True
        self.data.qvel[:] = 0.0
        mujoco.mj_forward(self.model, self.data)
        self._hold_here()

    def recover(self) -> None:
        self._stopped = False
        self._hold_here()

    # ----------------------------------------------------------------- rendering
    def render(
        self, camera: str, width: int | None = None, height: int | None = None
    ) -> np.ndarray:
        """``(H, W, 3)`` uint8 image from the model camera ``camera`` (``front`` or ``wrist``
        in the packaged model); size defaults to the config's camera width and height."""
        width = self.config.camera_width if width is None else int(width)
        height = self.config.camera_height if height is None else int(height)
        try:
            self.model.camera(camera)
        except KeyError:
            names = [self.model.camera(i).name for i in range(self.model.ncam)]
            raise ConfigError(
                f"sim arm has no camera {camera!r}: choose one of {', '.join(names)}"
            ) from None
        key = (width, height)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self.model, height=height, width=width)
        renderer = self._renderers[key]
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    # ----------------------------------------------------------------- internals
    def _require_connection(self) -> None:
        if not self._connected:
            raise NotConnectedError("sim arm is not connected: call connect() first")

    def _subtree_geoms(self, root: int) -> frozenset[int]:
        m = self.model
        bodies = {root}
        for body in range(root + 1, m.nbody):  # MuJoCo orders bodies depth-first
            if m.body_parentid[body] in bodies:
                bodies.add(body)
        return frozenset(g for g in range(m.ngeom) if m.geom_bodyid[g] in bodies)

    def _hold_here(self) -> None:
        self._target_pos = self.data.site_xpos[self._tcp].copy()
        self._target_rot = self.data.site_xmat[self._tcp].reshape(3, 3).copy()

    def _clip_position(self, position: np.ndarray) -> np.ndarray:
        position = position.copy()
        position[2] = max(position[2], MIN_TCP_HEIGHT_M)
        if self._shoulder is not None:
            offset = position - self._shoulder
            distance = float(np.linalg.norm(offset))
            if distance > REACH_M:
                position = self._shoulder + offset * (REACH_M / distance)
        return position

    def _tick(self, refresh: bool) -> np.ndarray:
        """One physics tick: kinematics, the impedance torque, integration. Returns the tick's
        ``[tcp x, y, z, tool contact normal force]`` for the trace."""
        m, d = self.model, self.data
        mujoco.mj_step1(m, d)
        if refresh:
            self._refresh_dynamics()
        d.ctrl[:] = self._torque()
        mujoco.mj_step2(m, d)
        self.physics_steps += 1
        return np.array([*d.site_xpos[self._tcp], self._tool_contact_force()])

    def _refresh_dynamics(self) -> None:
        """Operational-space inertia terms. They change slowly with the configuration, so they
        are refreshed once per command (and each ``advance``); the Jacobian, errors and
        gravity compensation are recomputed every tick."""
        m, d = self.model, self.data
        jac = self._jac
        mujoco.mj_jacSite(m, d, jac[:3], jac[3:], self._tcp)
        # M^-1 J^T from the factorisation mj_step1 just computed, rows = task directions.
        mujoco.mj_solveM(m, d, self._minv_jt, jac)
        lam = np.linalg.inv(jac @ self._minv_jt.T + self._regulariser)
        self._damping = 2.0 * self.config.damping_ratio * np.sqrt(self._stiffness * np.diag(lam))
        self._jbar_t = lam @ self._minv_jt  # (6, nv): Jbar^T with Jbar = M^-1 J^T Lambda

    def _torque(self) -> np.ndarray:
        m, d = self.model, self.data
        jac = self._jac
        mujoco.mj_jacSite(m, d, jac[:3], jac[3:], self._tcp)
        error = self._error
        error[:3] = self._target_pos - d.site_xpos[self._tcp]
        current = d.site_xmat[self._tcp].reshape(3, 3)
        mujoco.mju_mat2Quat(self._quat, (self._target_rot @ current.T).ravel())
        mujoco.mju_quat2Vel(error[3:], self._quat, 1.0)
        wrench = self._stiffness * error - self._damping * (jac @ d.qvel)
        torque = jac.T @ wrench + d.qfrc_bias
        # Posture spring, projected so it cannot move the TCP: N^T = I - J^T Jbar^T.
        posture = self._posture_gain * (self._posture - d.qpos) - self._posture_damping * d.qvel
        torque += posture - jac.T @ (self._jbar_t @ posture)
        return np.minimum(np.maximum(torque, self._ctrl_low), self._ctrl_high)

    def _tool_contact_force(self) -> float:
        d = self.data
        total = 0.0
        for i in range(d.ncon):
            contact = d.contact[i]
            if contact.geom1 in self._tool_geoms or contact.geom2 in self._tool_geoms:
                mujoco.mj_contactForce(self.model, d, i, self._contact_force)
                total += abs(float(self._contact_force[0]))
        return total

    def _record(self, block: np.ndarray) -> None:
        self._trace.append(block)
        self._trace_ticks += len(block)
        while self._trace_ticks > self.TRACE_LIMIT and len(self._trace) > 1:
            self._trace_ticks -= len(self._trace.popleft())


def _has_body(model: mujoco.MjModel, name: str) -> bool:
    try:
        model.body(name)
    except KeyError:
        return False
    return True
