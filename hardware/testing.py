"""Contract test suites every hardware implementation inherits (dm_env ``test_utils`` style).

An implementation's test file subclasses a suite and overrides one fixture that returns a
zero-argument factory of a fresh device in its initial state::

    class TestFakeArmContract(ArmContract):
        @pytest.fixture
        def make_arm(self):
            return lambda: FakeForceArm(FakeArmConfig())

The suites never sleep on an arm: arms in tests (the simulation, the fakes) are synchronous
and advance their own clock by one control period per ``send_action``. Sensors and teleop
devices may stream from a background thread, so their suites poll with a bounded wait.

This module imports pytest and is meant for tests only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from robopref.errors import NonFiniteError
from robopref.hardware.base import (
    ArmObservation,
    ForceArm,
    NotConnectedError,
    ProtectiveStop,
    SensorStatus,
    Teleop,
    TeleopCommand,
    WrenchReading,
    WrenchSensor,
)

__all__ = ["ArmContract", "SensorContract", "TeleopContract"]


def _position_error(obs: ArmObservation, target: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(obs.tcp_pose)[:3] - np.asarray(target)[:3]))


class _Lifecycle:
    """Open/close checks the suites share; each suite names its device's calls."""

    _open_call = "connect"
    _close_call = "disconnect"
    _open_flag = "is_connected"
    # The call that needs an open device, checked after closing (None: not checked).
    _use_call: str | None = None
    # Whether that call is also made inside ``with device:``.
    _use_inside_with = False

    def _is_open(self, device) -> bool:
        return getattr(device, self._open_flag)

    def _opened(self, device):
        """Body of the suites' open-device fixtures: ``device`` open, closed afterwards."""
        getattr(device, self._open_call)()
        try:
            yield device
        finally:
            getattr(device, self._close_call)()

    def _check_open_close_twice(self, device) -> None:
        assert not self._is_open(device)
        getattr(device, self._open_call)()
        assert self._is_open(device)
        for _ in range(2):  # closing twice is harmless
            getattr(device, self._close_call)()
            assert not self._is_open(device)
        if self._use_call is not None:
            with pytest.raises(NotConnectedError):
                getattr(device, self._use_call)()

    def _check_context_manager(self, device) -> None:
        with device as entered:
            assert entered is device
            assert self._is_open(device)
            if self._use_inside_with:
                getattr(device, self._use_call)()
        assert not self._is_open(device)


class ArmContract(_Lifecycle):
    """Behaviour every ``ForceArm`` must show; override the ``make_arm`` fixture.

    Attributes:
        settle_ticks: commands of one unchanged target the arm needs to reach a 1 cm step.
        position_tolerance_m: how close (m) the TCP must come to a target it was sent.
        step_m: the size (m) of the small +x step used to check that commands move the arm.
    """

    settle_ticks: int = 20
    position_tolerance_m: float = 0.01
    step_m: float = 0.01
    _use_call = "get_observation"
    _use_inside_with = True

    @pytest.fixture
    def make_arm(self) -> Callable[[], ForceArm]:
        raise NotImplementedError("override the make_arm fixture: return a zero-arg factory")

    @pytest.fixture
    def arm(self, make_arm):
        yield from self._opened(make_arm())

    def test_features_readable_while_disconnected(self, make_arm):
        arm = make_arm()
        assert not arm.is_connected
        n = arm.n_joints
        assert isinstance(n, int) and n > 0
        assert arm.observation_features == {
            "joint_positions": (n,),
            "joint_velocities": (n,),
            "tcp_pose": (6,),
            "wrench": (6,),
        }
        assert arm.action_features == {"tcp_target": (6,)}
        assert arm.control_period_s > 0

    def test_needs_connection(self, make_arm):
        arm = make_arm()
        with pytest.raises(NotConnectedError):
            arm.get_observation()
        with pytest.raises(NotConnectedError):
            arm.send_action(np.zeros(6))

    def test_connect_and_disconnect_twice(self, make_arm):
        self._check_open_close_twice(make_arm())

    def test_context_manager(self, make_arm):
        self._check_context_manager(make_arm())

    def test_observation_shapes_finite_and_timestamps_monotonic(self, arm):
        first = arm.get_observation()
        assert isinstance(first, ArmObservation)
        for key, value in first.as_dict().items():
            assert value.shape == arm.observation_features[key], key
            assert np.all(np.isfinite(value)), key
        assert isinstance(first.timestamp, float) and np.isfinite(first.timestamp)
        assert not first.protective_stop
        last = first.timestamp
        for _ in range(3):
            arm.send_action(np.asarray(arm.get_observation().tcp_pose, dtype=np.float64))
            obs = arm.get_observation()
            assert obs.timestamp >= last
            last = obs.timestamp

    def test_hold_current_pose(self, arm):
        start = np.asarray(arm.get_observation().tcp_pose, dtype=np.float64).copy()
        for _ in range(5):
            sent = arm.send_action(start.copy())
            sent = np.asarray(sent)
            assert sent.shape == (6,)
            assert np.all(np.isfinite(sent))
            assert _position_error(arm.get_observation(), start) <= self.position_tolerance_m

    def test_small_step_moves_toward_target(self, arm):
        start = np.asarray(arm.get_observation().tcp_pose, dtype=np.float64).copy()
        target = start.copy()
        target[0] += self.step_m
        before = _position_error(arm.get_observation(), target)
        for _ in range(self.settle_ticks):
            arm.send_action(target.copy())
        after = _position_error(arm.get_observation(), target)
        assert after < before
        assert after <= self.position_tolerance_m, f"{after:.4f} m from target"

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_command_rejected(self, arm, bad):
        start = np.asarray(arm.get_observation().tcp_pose, dtype=np.float64).copy()
        command = start.copy()
        command[1] = bad
        with pytest.raises(NonFiniteError):
            arm.send_action(command)
        assert _position_error(arm.get_observation(), start) <= self.position_tolerance_m / 10
        # A rejected command is not a protective stop: the next good one is accepted.
        assert not arm.is_stopped
        sent = np.asarray(arm.send_action(start.copy()))
        assert np.all(np.isfinite(sent))

    def test_stop_latches_until_recover(self, arm):
        pose = np.asarray(arm.get_observation().tcp_pose, dtype=np.float64).copy()
        arm.stop()
        assert arm.is_stopped
        assert arm.get_observation().protective_stop
        with pytest.raises(ProtectiveStop):
            arm.send_action(pose.copy())
        with pytest.raises(ProtectiveStop):
            arm.send_action(pose.copy())
        arm.recover()
        assert not arm.is_stopped
        assert not arm.get_observation().protective_stop
        here = np.asarray(arm.get_observation().tcp_pose, dtype=np.float64).copy()
        sent = np.asarray(arm.send_action(here))
        assert sent.shape == (6,) and np.all(np.isfinite(sent))
        assert _position_error(arm.get_observation(), here) <= self.position_tolerance_m


class SensorContract(_Lifecycle):
    """Behaviour every ``WrenchSensor`` must show; override the ``make_sensor`` fixture.

    Attributes:
        bias_tolerance: how close to zero (N for forces, N*m for torques) readings must be
            after ``bias()`` while the load does not change.
        wait_timeout_s: the longest ``wait_for_samples`` polls for a fresh sample.
    """

    bias_tolerance: float = 0.5
    wait_timeout_s: float = 1.0
    _open_call = "start"
    _close_call = "stop"
    _open_flag = "is_running"
    _use_call = "read"

    @pytest.fixture
    def make_sensor(self) -> Callable[[], WrenchSensor]:
        raise NotImplementedError("override the make_sensor fixture: return a zero-arg factory")

    @pytest.fixture
    def sensor(self, make_sensor):
        yield from self._opened(make_sensor())

    def wait_for_samples(self, sensor: WrenchSensor) -> WrenchReading:
        """Returns a reading newer than the current one, or the latest after
        ``wait_timeout_s``; streaming sensors need this, synchronous ones may override it."""
        first = sensor.read()
        deadline = time.monotonic() + self.wait_timeout_s
        reading = first
        while reading.sequence <= first.sequence and time.monotonic() < deadline:
            time.sleep(0.002)
            reading = sensor.read()
        return reading

    def test_read_needs_start(self, make_sensor):
        sensor = make_sensor()
        assert not sensor.is_running
        with pytest.raises(NotConnectedError):
            sensor.read()

    def test_start_stop_twice(self, make_sensor):
        self._check_open_close_twice(make_sensor())

    def test_context_manager(self, make_sensor):
        self._check_context_manager(make_sensor())

    def test_reading_shape_and_types(self, sensor):
        reading = self.wait_for_samples(sensor)
        assert isinstance(reading, WrenchReading)
        wrench = np.asarray(reading.wrench)
        assert wrench.shape == (6,)
        assert np.all(np.isfinite(wrench))
        assert isinstance(reading.timestamp, float) and np.isfinite(reading.timestamp)
        assert isinstance(reading.status, SensorStatus)
        assert isinstance(reading.sequence, int)

    def test_bias_zeroes_constant_load(self, sensor):
        self.wait_for_samples(sensor)
        sensor.bias()
        for _ in range(3):
            reading = self.wait_for_samples(sensor)
            worst = float(np.max(np.abs(np.asarray(reading.wrench))))
            assert worst <= self.bias_tolerance, f"{worst:.4g} left after bias()"

    def test_sequence_non_decreasing(self, sensor):
        last = self.wait_for_samples(sensor).sequence
        for _ in range(5):
            sequence = self.wait_for_samples(sensor).sequence
            assert sequence >= last
            last = sequence


class TeleopContract(_Lifecycle):
    """Behaviour every ``Teleop`` must show; override the ``make_teleop`` fixture.

    Attributes:
        max_read_s: the longest (s) one ``read()`` may take: it must never block on the device.
    """

    max_read_s: float = 0.05

    @pytest.fixture
    def make_teleop(self) -> Callable[[], Teleop]:
        raise NotImplementedError("override the make_teleop fixture: return a zero-arg factory")

    @pytest.fixture
    def teleop(self, make_teleop):
        yield from self._opened(make_teleop())

    @staticmethod
    def _observation() -> ArmObservation:
        return ArmObservation(
            joint_positions=np.zeros(6),
            joint_velocities=np.zeros(6),
            tcp_pose=np.array([0.4, 0.0, 0.3, np.pi, 0.0, 0.0]),
            wrench=np.zeros(6),
            timestamp=time.monotonic(),
        )

    def test_connect_and_disconnect_twice(self, make_teleop):
        self._check_open_close_twice(make_teleop())

    def test_context_manager(self, make_teleop):
        self._check_context_manager(make_teleop())

    def test_read_returns_command_without_blocking(self, teleop):
        for _ in range(5):
            teleop.observe(self._observation())
            began = time.perf_counter()
            command = teleop.read()
            took = time.perf_counter() - began
            assert took <= self.max_read_s, f"read() took {took * 1e3:.1f} ms"
            assert isinstance(command, TeleopCommand)
            delta = np.asarray(command.delta_pose)
            assert delta.shape == (6,)
            assert np.all(np.isfinite(delta))
            assert isinstance(command.buttons, frozenset)
            assert all(isinstance(b, str) for b in command.buttons)
            assert isinstance(command.enabled, bool)
            assert isinstance(command.intervention, bool)
            assert isinstance(command.timestamp, float)

    def test_observe_accepts_arm_observation(self, teleop):
        teleop.observe(self._observation())
        teleop.read()
