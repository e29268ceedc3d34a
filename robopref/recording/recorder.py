"""Teleoperated recording into a LeRobotDataset, one durable episode at a time.

``Recorder`` runs a fixed-rate control loop over objects built at the edge (an arm wrapped in
the safety layer, a teleop device, an optional wrist sensor, task and camera) and appends each
saved episode to a LeRobotDataset (v3.0) through ``DurableEpisodeWriter``
(``robopref.data.durable_writer``: each save is atomic and durable, a killed recorder keeps
every saved episode), running in a process of its own (``robopref.data.background_writer``)
while the operator resets the scene (``robopref.recording.session``).

Frame features (``N`` = the arm's joint count, 6 for UR, 7 for Franka):

- ``observation.state`` ``(2N + 12,)``: joint positions (rad), joint velocities (rad/s), TCP
  pose ``[x, y, z, rx, ry, rz]`` (m, rad) and the arm's wrench ``[fx, fy, fz, tx, ty, tz]``
  (N, N*m), in that order (the layout ``PeelEnv`` observations start with);
- ``observation.wrench`` ``(6,)`` (N, N*m) from the wrist sensor (the arm's own reading when
  there is no sensor);
- ``observation.environment_state`` ``(k,)`` when a task gives one;
- ``observation.images.<camera>`` ``(H, W, 3)`` uint8, stored as one AV1 video per episode
  (``record.video``, the default) or as PNG frames;
- ``action`` ``(6,)``: the TCP motion actually commanded this tick after the safety layer's
  clipping, ``[dx, dy, dz, drx, dry, drz]`` (m, rad) with the rotation part a rotation vector
  in the base frame (replaying ``compose_delta(previous_sent, action)`` gives back what was
  sent);
- ``next.success`` ``(1,)`` the task's success flag after the action.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from robopref.data.background_writer import BackgroundEpisodeWriter
from robopref.errors import ConfigError
from robopref.geometry import compose_delta, pose_delta
from robopref.hardware.base import ProtectiveStop
from robopref.hardware.safety import SafeArm
from robopref.recording.config import BUTTONS, RecorderConfig
from robopref.recording.session import run_session
from robopref.recording.summary import _plain
from robopref.recording.timing import LoopTimer

__all__ = ["Recorder"]


@dataclass
class _Attempt:
    outcome: str  # save | timeout | success | discard | rerecord | quit | protective_stop
    frames: dict[str, list] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def keep(self) -> bool:
        return self.outcome in ("save", "timeout", "success") and bool(self.frames.get("action"))


class Recorder:
    """Records teleoperated episodes into a LeRobotDataset (see the module docstring).

    Args:
        config: the session.
        arm: the arm; wrapped in ``SafeArm(arm, config.safety, wrist_sensor=sensor)`` unless
            it is one already (a ``SafeArm`` without a wrist sensor is given ``sensor``).
        teleop: the operator's device (or a scripted one). ``observe(observation)`` gets the
            arm state each tick before ``read()``; devices with a
            ``set_environment_state(state (k,))`` method get the task's state first, and a
            ``begin_episode()`` method is called at each episode start.
        sensor: wrist force/torque sensor for ``observation.wrench``; ``None`` uses the arm's.
        task: optional object with ``reset(arm, rng)``, ``update(arm)``,
            ``environment_state() -> (k,)`` and ``metrics() -> dict`` (with ``success``).
        camera: ``camera(name, width, height) -> (H, W, 3) uint8`` image source.
        policy: optional ``robopref.policies.Policy`` that drives the arm: ``act(obs (1,
            obs_dim)) -> (1, 6)`` TCP delta (m, rad) on ``observation.state`` followed by the
            task's environment state (the layout ``robopref.data.load_episodes`` returns). While the
            teleop's ``intervention`` flag is set the person's command is applied instead;
            each frame's ``intervention`` feature records who acted.
        progress: show a progress bar over durable episodes.
        log: where operator messages go (``print`` by default).
        stream: where the reset countdown is drawn (``sys.stdout`` by default; rewritten in
            place when it is a terminal).

    Components are connected (and disconnected at the end) when they are not connected yet.
    """

    def __init__(
        self,
        config: RecorderConfig,
        arm,
        teleop,
        sensor=None,
        task=None,
        camera: Callable[[str, int, int], np.ndarray] | None = None,
        policy=None,
        progress: bool = False,
        log: Callable[[str], None] = print,
        stream: TextIO | None = None,
    ):
        if config.cameras and camera is None:
            raise ConfigError(
                f"record cameras={config.cameras} need a camera source: use hardware=sim "
                "(it renders) or set record.cameras=[]"
            )
        self.config = config
        if not isinstance(arm, SafeArm):
            arm = SafeArm(arm, config.safety, wrist_sensor=sensor)
        elif sensor is not None and arm.wrist_sensor is None:
            # The knife's force is what matters: the limit reads the wrist sensor.
            arm.wrist_sensor = sensor
        self.arm = arm
        self.teleop, self.sensor, self.task, self.camera = teleop, sensor, task, camera
        self.policy = policy
        self.progress, self.log, self.stream = progress, log, stream
        self._say = log
        # The session's dataset writer (a DurableEpisodeWriter in a child process).
        self.writer: BackgroundEpisodeWriter | None = None
        self.summary: dict = {}

    # ---------------------------------------------------------------- features
    def features(self) -> dict:
        """The lerobot feature spec of this session's frames (needs a connected arm)."""
        n = self.arm.n_joints
        axes = ["x", "y", "z", "rx", "ry", "rz"]
        wrench_names = ["fx", "fy", "fz", "tx", "ty", "tz"]
        state_names = (
            [f"q{i}" for i in range(n)]
            + [f"dq{i}" for i in range(n)]
            + [f"tcp_{a}" for a in axes]
            + wrench_names
        )
        feats = {
            "observation.state": {
                "dtype": "float32",
                "shape": (2 * n + 12,),
                "names": state_names,
            },
            "observation.wrench": {"dtype": "float32", "shape": (6,), "names": wrench_names},
            "action": {"dtype": "float32", "shape": (6,), "names": [f"d{a}" for a in axes]},
            "next.success": {"dtype": "bool", "shape": (1,), "names": None},
            # True where the person (teleop intervention) acted rather than the policy.
            "intervention": {"dtype": "bool", "shape": (1,), "names": None},
        }
        if getattr(self.teleop, "reports_intended_action", False):
            # What the operator meant each tick, also while a policy drove (DAgger labels).
            feats["action.intended"] = {
                "dtype": "float32",
                "shape": (6,),
                "names": [f"d{a}" for a in axes],
            }
        if self.task is not None:
            k = len(np.asarray(self.task.environment_state()).reshape(-1))
            feats["observation.environment_state"] = {
                "dtype": "float32",
                "shape": (k,),
                "names": None,
            }
        for cam in self.config.cameras:
            feats[f"observation.images.{cam}"] = {
                # An AV1 video per episode (several times smaller than PNG frames).
                "dtype": "video" if self.config.video else "image",
                "shape": (self.config.image_height, self.config.image_width, 3),
                "names": ["height", "width", "channels"],
            }
        return feats

    def help_text(self) -> str:
        lines = ["teleop buttons:"]
        lines += [f"  {name:<9} {text}" for name, text in BUTTONS.items()]
        keys = getattr(self.teleop, "help_text", None)
        if callable(keys):
            lines.append(keys())
        return "\n".join(lines)

    # ---------------------------------------------------------------- one episode
    def _reset_task(self, seed: int) -> None:
        self.task.reset(self.arm, np.random.default_rng(seed))
        # A simulated reset teleports the arm; the safety layer's step limits count from the
        # last command, which must become the new pose or the first command is clipped toward
        # the old one. recover() re-reads it (and is a no-op otherwise while not stopped).
        sync = getattr(self.arm, "sync_reference", None)
        if callable(sync):
            sync()
        elif not self.arm.is_stopped:
            self.arm.recover()

    def _wrench(self, observation) -> tuple[np.ndarray, bool]:
        if self.sensor is None:
            return np.asarray(observation.wrench, dtype=np.float32), True
        reading = self.sensor.read()
        return np.asarray(reading.wrench, dtype=np.float32), reading.ok

    def record_episode(self, seed: int) -> _Attempt:
        """Run one episode from a fresh scene drawn with ``seed`` until a button, success,
        the time limit or a protective stop ends it."""
        cfg = self.config
        if self.task is not None:
            self._reset_task(seed)
        if self.sensor is not None and cfg.bias_sensor:
            self.sensor.bias()
        observe_env = getattr(self.teleop, "set_environment_state", None)
        begin = getattr(self.teleop, "begin_episode", None)
        if callable(begin):
            begin()
        if self.policy is not None:
            self.policy.begin_episodes(1)
        events_before = len(getattr(self.arm, "events", []))
        keys = ["observation.state", "observation.wrench", "action", "next.success", "intervention"]
        records_intended = getattr(self.teleop, "reports_intended_action", False)
        if records_intended:
            keys.append("action.intended")
        if self.task is not None:
            keys.append("observation.environment_state")
        keys += [f"observation.images.{c}" for c in cfg.cameras]
        frames: dict[str, list] = {k: [] for k in keys}
        previous = np.asarray(self.arm.get_observation().tcp_pose, dtype=np.float64)
        timer = LoopTimer(1.0 / cfg.fps, cfg.realtime, cfg.spin_s)
        outcome, interventions, intervention_steps, sensor_faults = "timeout", 0, 0, 0
        was_intervening = False
        started = time.monotonic()
        # A collector pause of a few ms in the middle of an episode is jitter the arm feels;
        # collect between episodes instead (the loop makes little cyclic garbage).
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(cfg.max_steps):
                timer.wait()
                observation = self.arm.get_observation()
                env_state = None
                if self.task is not None:
                    env_state = np.asarray(self.task.environment_state(), dtype=np.float32)
                    if observe_env is not None:
                        observe_env(env_state)
                self.teleop.observe(observation)
                command = self.teleop.read()
                pressed = set(command.buttons) & set(BUTTONS)
                if pressed:
                    # One press, one meaning: the most destructive wins when several arrive.
                    outcome = next(
                        b for b in ("quit", "rerecord", "discard", "save") if b in pressed
                    )
                    break
                if command.intervention:
                    intervention_steps += 1
                    interventions += not was_intervening
                was_intervening = bool(command.intervention)
                state = observation.state_vector()
                if self.policy is not None and not command.intervention:
                    policy_obs = state if env_state is None else np.concatenate([state, env_state])
                    delta = np.asarray(self.policy.act(policy_obs[None])[0], dtype=np.float64)
                else:
                    delta = np.asarray(command.delta_pose, dtype=np.float64)
                    if not command.enabled:
                        delta = np.zeros(6)  # the dead-man is released: keep streaming a hold
                try:
                    sent = np.asarray(self.arm.send_action(compose_delta(previous, delta)))
                except ProtectiveStop as exc:
                    self._say(f"protective stop: {exc}")
                    outcome = "protective_stop"
                    break
                if self.task is not None:
                    self.task.update(self.arm)
                success = bool(self.task.metrics().get("success", False)) if self.task else False
                wrench, healthy = self._wrench(observation)
                sensor_faults += not healthy
                frames["observation.state"].append(state)
                frames["intervention"].append(np.array([bool(command.intervention)]))
                if records_intended:
                    # A command without an intention of its own meant what it sent.
                    meant = command.delta_pose if command.intended is None else command.intended
                    frames["action.intended"].append(np.asarray(meant, dtype=np.float32))
                frames["observation.wrench"].append(wrench)
                frames["action"].append(pose_delta(previous, sent).astype(np.float32))
                frames["next.success"].append(np.array([success]))
                if env_state is not None:
                    frames["observation.environment_state"].append(env_state)
                for cam in cfg.cameras:
                    image = self.camera(cam, cfg.image_width, cfg.image_height)
                    frames[f"observation.images.{cam}"].append(np.asarray(image, dtype=np.uint8))
                previous = sent.astype(np.float64)
                timer.done()
                if success and cfg.end_on_success:
                    outcome = "success"
                    break
        finally:
            if gc_was_enabled:
                gc.enable()
        events = getattr(self.arm, "events", [])[events_before:]
        meta = {
            "outcome": outcome,
            "seed": int(seed),
            "length": len(frames["action"]),
            "duration_s": time.monotonic() - started,
            "interventions": int(interventions),
            "intervention_steps": int(intervention_steps),
            "safety_clips": sum(e.kind == "clip" for e in events),
            "sensor_faults": int(sensor_faults),
            "timing": timer.stats(),
            "periods_s": np.diff(timer.starts),
            "lateness_s": np.asarray(timer.lateness),
            "work_s": np.asarray(timer.work),
            "missed": timer.missed,
        }
        if self.task is not None:
            meta["metrics"] = {k: _plain(v) for k, v in self.task.metrics().items()}
        return _Attempt(outcome, frames, meta)

    # ---------------------------------------------------------------- the session
    def run(self) -> dict:
        """Record until ``num_episodes`` are saved or the operator quits; returns the
        session summary (also stored in ``self.summary``)."""
        cfg = self.config
        with contextlib.ExitStack() as stack:
            for device, up, down, on in (
                (self.arm, "connect", "disconnect", "is_connected"),
                (self.teleop, "connect", "disconnect", "is_connected"),
                (self.sensor, "start", "stop", "is_running"),
            ):
                if device is not None and not getattr(device, on):
                    getattr(device, up)()
                    stack.callback(getattr(device, down))
            self._check_rate()
            if self.task is not None:
                self._reset_task(cfg.seed)
            self._check_policy()
            # The writer runs in a process of its own (it never holds this loop's interpreter
            # lock); lerobot and the codecs load there now, not in the middle of a save.
            self.log("opening the dataset writer (loads lerobot and the video codec)...")
            self.writer = BackgroundEpisodeWriter(
                cfg.root, cfg.repo_id, cfg.fps, self.features(), resume=cfg.resume
            )
            if cfg.resume and self.writer.created:
                self.log(f"resume: no dataset at {self.writer.root} yet, starting a new one")
            elif cfg.resume:
                self.log(f"resume: {self.writer.num_episodes} episodes at {self.writer.root}")
            self.summary = run_session(self)
            return self.summary

    def _check_rate(self) -> None:
        arm_hz = 1.0 / self.arm.control_period_s
        if abs(arm_hz - self.config.fps) > 0.01 * self.config.fps:
            raise ConfigError(
                f"record fps={self.config.fps} but the arm runs at {arm_hz:.4g} Hz: set the "
                f"arm's control_hz to {self.config.fps} (or record.fps to match the arm)"
            )

    def _check_policy(self) -> None:
        expected = getattr(self.policy, "obs_dim", None)
        if expected is None:
            return
        dims = 2 * self.arm.n_joints + 12
        if self.task is not None:
            dims += len(np.asarray(self.task.environment_state()).reshape(-1))
        if expected != dims:
            raise ConfigError(
                f"the policy takes {expected}-dim observations but this arm and task give {dims}: "
                "use a policy trained on recordings of this setup"
            )
