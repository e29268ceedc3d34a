"""SafeArm with a wrist F/T sensor: the force limit reads the sensor (the arm's estimate is
the cross-check), and a sensor that cannot vouch for the force stops motion within one tick.

"Within one tick" means: the first command after the fault reaches the arm never, and the
watchdog's next poll (one control period) latches the stop even when no command comes.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from robopref.hardware.base import ProtectiveStop, SensorStatus
from robopref.hardware.fake.arm import FakeArmConfig, FakeForceArm
from robopref.hardware.fake.netft import FakeNetFTServer
from robopref.hardware.fake.wrench import FakeWrenchSensor
from robopref.hardware.netft import NetFTConfig, NetFTSensor
from robopref.hardware.safety import SafeArm, SafetyConfig
from robopref.hardware.testing import SensorContract

HOME = (0.4, 0.0, 0.3, math.pi, 0.0, 0.0)
LIMITS = dict(workspace_min=(0.1, -0.4, 0.05), workspace_max=(0.7, 0.4, 0.6),
              max_force_n=40.0, max_torque_nm=4.0)
TARGET = np.array([0.41, 0.0, 0.3, math.pi, 0.0, 0.0])


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class TestFakeWrenchSensorContract(SensorContract):
    @pytest.fixture
    def make_sensor(self):
        return lambda: FakeWrenchSensor(wrench=[1.0, -2.0, 3.0, 0.1, 0.2, -0.3])


def _armed(clock=None):
    clock = clock or Clock()
    sensor = FakeWrenchSensor(stale_timeout_s=0.05, clock=clock)
    inner = FakeForceArm(FakeArmConfig(initial_pose=HOME))
    safe = SafeArm(inner, SafetyConfig(**LIMITS), clock=clock, wrist_sensor=sensor)
    safe.connect()
    assert sensor.is_running  # connect() starts a configured sensor
    safe.send_action(TARGET)
    return safe, inner, sensor, clock


def _stop_reason(safe: SafeArm) -> dict:
    stops = [e.detail for e in safe.events if e.kind == "protective_stop"]
    assert len(stops) == 1, stops
    return stops[0]


@pytest.mark.parametrize("wrench, reason", [
    ([0.0, 0.0, -45.0, 0.0, 0.0, 0.0], "force_limit"),
    ([0.0, 0.0, 0.0, 3.0, 3.0, 0.0], "torque_limit"),
])
def test_wrist_wrench_over_the_limit_stops_the_next_command(wrench, reason):
    safe, inner, sensor, _ = _armed()
    sent = inner.n_commands
    sensor.set_wrench(wrench)  # the arm's own estimate stays at zero
    with pytest.raises(ProtectiveStop):
        safe.send_action(TARGET)
    assert inner.n_commands == sent and inner.is_stopped and safe.is_stopped
    detail = _stop_reason(safe)
    assert detail["reason"] == reason and detail["source"] == "wrist_sensor"


def test_arm_estimate_still_stops_when_the_wrist_reads_low():
    safe, inner, _sensor, _ = _armed()
    inner.inject_wrench(np.array([0.0, 60.0, 0.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ProtectiveStop):
        safe.send_action(TARGET)
    detail = _stop_reason(safe)
    assert detail["reason"] == "force_limit" and detail["source"] == "arm_estimate"


@pytest.mark.parametrize("status, reason", [
    (SensorStatus.DEVICE_ERROR, "wrist_sensor_error"),
    (SensorStatus.SATURATED, "wrist_sensor_saturated"),
])
def test_device_error_stops_within_one_tick(status, reason):
    safe, inner, sensor, _ = _armed()
    sent = inner.n_commands
    sensor.set_status(status)
    with pytest.raises(ProtectiveStop):
        safe.send_action(TARGET)
    assert inner.n_commands == sent and inner.is_stopped
    assert _stop_reason(safe)["reason"] == reason


def test_stale_sensor_stops_within_one_tick_and_stays_latched():
    safe, inner, sensor, clock = _armed()
    sent = inner.n_commands
    sensor.freeze()
    clock.t += 0.06  # past the sensor's stale timeout
    with pytest.raises(ProtectiveStop):
        safe.send_action(TARGET)
    assert inner.n_commands == sent
    assert _stop_reason(safe)["reason"] == "wrist_sensor_stale"
    sensor.freeze(False)  # fresh samples again: the stop stays latched until recover()
    with pytest.raises(ProtectiveStop):
        safe.send_action(TARGET)
    safe.recover()
    safe.send_action(TARGET)
    assert inner.n_commands == sent + 1


def test_watchdog_tick_latches_a_stale_sensor_without_any_command():
    safe, inner, sensor, clock = _armed()
    sensor.freeze()
    clock.t += 0.06
    assert safe.poll() is False  # one watchdog tick: no hold commanded, a stop latched
    assert safe.is_stopped and inner.is_stopped
    assert _stop_reason(safe)["reason"] == "wrist_sensor_stale"


def test_a_stopped_sensor_is_a_fault_not_a_blind_spot():
    safe, inner, sensor, _ = _armed()
    sensor.stop()
    with pytest.raises(ProtectiveStop):
        safe.send_action(TARGET)
    detail = _stop_reason(safe)
    assert detail["reason"] == "wrist_sensor_error" and "start()" in detail["message"]


def test_disconnect_stops_the_sensor_connect_started():
    safe, _inner, sensor, _ = _armed()
    safe.disconnect()
    assert not sensor.is_running


def test_net_ft_device_error_stops_the_arm_through_the_real_protocol():
    with FakeNetFTServer(rate_hz=500.0) as box:
        sensor = NetFTSensor(NetFTConfig(host=box.host, port=box.port))
        inner = FakeForceArm(FakeArmConfig(initial_pose=HOME))
        safe = SafeArm(inner, SafetyConfig(**LIMITS), wrist_sensor=sensor)
        safe.connect()
        try:
            safe.send_action(TARGET)
            box.set_status(0x80010000)  # the box flags an error in its status word
            deadline = 200
            while SensorStatus.DEVICE_ERROR not in sensor.read().status and deadline:
                time.sleep(0.005)
                deadline -= 1
            with pytest.raises(ProtectiveStop):
                safe.send_action(TARGET)
            assert _stop_reason(safe)["reason"] == "wrist_sensor_error"
        finally:
            safe.disconnect()
        assert not sensor.is_running
