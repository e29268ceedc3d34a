"""URArm against the in-process ur_rtde fake: the arm contract plus UR specifics."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware import make_arm
from robopref.hardware.base import HardwareError, NotConnectedError, ProtectiveStop
from robopref.hardware.fake.rtde import FakeRTDE
from robopref.hardware.testing import ArmContract
from robopref.hardware.ur import URArm, URConfig, URForceMode, base_wrench_to_tool

HOST = "192.0.2.10"


class TestURServoContract(ArmContract):
    @pytest.fixture
    def make_arm(self):
        return lambda: URArm(URConfig(host=HOST, simulate=True))


class TestURSpeedContract(ArmContract):
    @pytest.fixture
    def make_arm(self):
        return lambda: URArm(URConfig(host=HOST, mode="speed", simulate=True))


@pytest.fixture
def fake():
    return FakeRTDE()


@pytest.fixture
def robot(fake):
    return fake.robot(HOST)


def _arm(fake, **options) -> URArm:
    arm = URArm(URConfig(host=HOST, **options), rtde=fake)
    arm.connect()
    return arm


def test_servol_streamed_with_configured_arguments(fake, robot):
    arm = _arm(
        fake, control_hz=100.0, lookahead_time_s=0.05, gain=500.0, speed=0.3, acceleration=0.8
    )
    target = np.asarray(arm.get_observation().tcp_pose) + np.array([0.002, 0, 0, 0, 0, 0])
    sent = arm.send_action(target)
    np.testing.assert_allclose(sent, target)
    pose, speed, acceleration, period, lookahead, gain = robot.last("servoL")
    np.testing.assert_allclose(pose, target)
    assert (speed, acceleration, lookahead, gain) == (0.3, 0.8, 0.05, 500.0)
    assert period == pytest.approx(0.01)
    np.testing.assert_allclose(arm.get_observation().tcp_pose, target, atol=1e-9)


def test_watchdog_armed_once_and_kicked_every_command(fake, robot):
    arm = _arm(fake, watchdog_min_hz=20.0)
    assert robot.count("setWatchdog") == 0  # not armed before streaming starts
    pose = np.asarray(arm.get_observation().tcp_pose)
    for _ in range(7):
        arm.send_action(pose)
    assert robot.count("setWatchdog") == 1
    assert robot.last("setWatchdog") == (20.0,)
    assert robot.count("servoL") == 7
    assert robot.count("kickWatchdog") == 7
    names = [name for _, name, _ in robot.calls if name in ("servoL", "kickWatchdog")]
    assert names == ["servoL", "kickWatchdog"] * 7


def test_watchdog_stops_script_when_commands_pause_and_recover_reuploads(fake, robot):
    arm = _arm(fake, watchdog_min_hz=10.0)
    pose = np.asarray(arm.get_observation().tcp_pose)
    arm.send_action(pose)
    robot.advance(0.5)  # longer than 1/10 s without a command
    with pytest.raises(ProtectiveStop, match="watchdog"):
        arm.send_action(pose)
    assert arm.is_stopped
    with pytest.raises(ProtectiveStop):
        arm.send_action(pose)
    arm.recover()
    assert robot.count("reuploadScript") == 1
    assert robot.count("unlockProtectiveStop") == 0  # not a safety stop
    arm.send_action(pose)
    assert robot.count("setWatchdog") == 2  # re-armed for the new script


def test_force_mode_entered_with_selection_vector_and_left_on_stop(fake, robot):
    arm = _arm(
        fake,
        mode="speed",
        force_mode={"selection_vector": [0, 0, 1, 0, 0, 0], "wrench": [0, 0, -10.0, 0, 0, 0]},
    )
    assert isinstance(arm.config.force_mode, URForceMode)
    arm.send_action(np.asarray(arm.get_observation().tcp_pose))
    task_frame, selection, wrench, frame_type, limits = robot.last("forceMode")
    assert selection == [0, 0, 1, 0, 0, 0]
    assert wrench == [0.0, 0.0, -10.0, 0.0, 0.0, 0.0]
    assert frame_type == 2 and task_frame == [0.0] * 6 and len(limits) == 6
    arm.stop()
    assert robot.count("speedStop") == 1 and robot.count("forceModeStop") == 1


def test_speed_mode_clips_twist_and_returns_the_pose_it_commands(fake, robot):
    arm = _arm(fake, mode="speed", speed=0.1, control_hz=125.0)
    start = np.asarray(arm.get_observation().tcp_pose)
    target = start + np.array([0.3, 0, 0, 0, 0, 0])
    sent = arm.send_action(target)
    xd, acceleration, period = robot.last("speedL")
    assert np.linalg.norm(xd[:3]) == pytest.approx(0.1)
    assert xd[0] > 0 and period == pytest.approx(1 / 125)
    np.testing.assert_allclose(sent[:3], start[:3] + np.array([0.1 / 125, 0, 0]), atol=1e-12)
    np.testing.assert_allclose(arm.get_observation().tcp_pose, sent, atol=1e-9)


def test_wrench_rotated_into_tool_frame_by_hand(fake, robot):
    arm = _arm(fake)
    # TCP rotated +90 deg about base z: tool x = base y, tool y = -base x, tool z = base z.
    robot.tcp_pose = np.array([0.4, 0.0, 0.3, 0.0, 0.0, np.pi / 2])
    robot.inject_wrench([10.0, 0.0, 0.0, 0.0, 2.0, 1.0])
    wrench = arm.get_observation().wrench
    np.testing.assert_allclose(wrench, [0.0, -10.0, 0.0, 2.0, 0.0, 1.0], atol=1e-9)
    # Tool pointing down (rotation pi about base x): tool z = -base z. A table pushing up on
    # the tool (+z base) reads as -z in the tool frame.
    robot.tcp_pose = np.array([0.4, 0.0, 0.3, np.pi, 0.0, 0.0])
    robot.inject_wrench([0.0, 0.0, 5.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(arm.get_observation().wrench, [0, 0, -5.0, 0, 0, 0], atol=1e-9)


def test_base_wrench_to_tool_matches_rotation_matrix_for_random_poses():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rotvec = Rotation.random(random_state=rng).as_rotvec()
        wrench = rng.normal(size=6)
        tool = base_wrench_to_tool(wrench, np.concatenate([[0.1, 0.2, 0.3], rotvec]))
        matrix = Rotation.from_rotvec(rotvec).as_matrix()  # base <- tool
        np.testing.assert_allclose(matrix @ tool[:3], wrench[:3], atol=1e-12)
        np.testing.assert_allclose(matrix @ tool[3:], wrench[3:], atol=1e-12)


def test_excessive_force_protective_stop_latches_and_recovers_through_dashboard(fake, robot):
    arm = _arm(fake)
    pose = np.asarray(arm.get_observation().tcp_pose)
    arm.send_action(pose)
    robot.inject_wrench([0.0, 0.0, 200.0, 0.0, 0.0, 0.0])  # above the 150 N limit
    obs = arm.get_observation()
    assert obs.protective_stop and arm.is_stopped
    with pytest.raises(ProtectiveStop, match=HOST):
        arm.send_action(pose)
    robot.inject_wrench(np.zeros(6))
    with pytest.raises(HardwareError, match="5 s"):
        arm.recover()  # the controller refuses to unlock within 5 s of the stop
    assert arm.is_stopped
    robot.advance(5.0)
    arm.recover()
    dashboard = [name for iface, name, _ in robot.calls if iface == "dashboard"]
    assert dashboard.index("closeSafetyPopup") < dashboard.index("unlockProtectiveStop")
    assert not robot.protective_stopped and robot.program_running
    assert robot.count("reuploadScript") == 1
    assert not arm.is_stopped and not arm.get_observation().protective_stop
    arm.send_action(pose)
    assert robot.count("servoL") == 2


def test_protective_stop_while_streaming_is_raised_by_the_next_command(fake, robot):
    arm = _arm(fake)
    pose = np.asarray(arm.get_observation().tcp_pose)
    arm.send_action(pose)
    robot.trigger_protective_stop()
    with pytest.raises(ProtectiveStop):
        arm.send_action(pose)
    assert robot.count("servoL") == 1  # nothing streamed into a stopped arm


def test_script_stopped_on_pendant_latches(fake, robot):
    arm = _arm(fake)
    pose = np.asarray(arm.get_observation().tcp_pose)
    arm.send_action(pose)
    robot.program_running = False
    with pytest.raises(ProtectiveStop, match="not running"):
        arm.send_action(pose)
    assert arm.is_stopped
    arm.recover()
    arm.send_action(pose)


def test_dropped_connection_names_the_host(fake, robot):
    arm = _arm(fake)
    pose = np.asarray(arm.get_observation().tcp_pose)
    robot.drop_connection()
    with pytest.raises(HardwareError, match=HOST) as info:
        arm.send_action(pose)
    assert not isinstance(info.value, ProtectiveStop | NotConnectedError)
    with pytest.raises(HardwareError, match=HOST):
        arm.get_observation()
    arm.disconnect()
    arm.disconnect()
    assert not arm.is_connected


def test_unreachable_controller_names_the_host(fake, robot):
    robot.drop_connection()
    arm = URArm(URConfig(host=HOST), rtde=fake)
    with pytest.raises(HardwareError, match=f"{HOST}.*check the address"):
        arm.connect()
    assert not arm.is_connected


def test_non_finite_command_is_not_streamed(fake, robot):
    arm = _arm(fake)
    with pytest.raises(NonFiniteError):
        arm.send_action(np.array([0.4, np.nan, 0.3, 0, 0, 0]))
    assert robot.count("servoL") == 0 and robot.count("kickWatchdog") == 0


def test_disconnect_stops_script_and_closes_every_interface(fake, robot):
    arm = _arm(fake)
    arm.send_action(np.asarray(arm.get_observation().tcp_pose))
    arm.disconnect()
    assert robot.count("servoStop") == 1 and robot.count("stopScript") == 1
    closed = {iface for iface, name, _ in robot.calls if name == "disconnect"}
    assert closed == {"control", "receive", "dashboard"}
    arm.disconnect()
    with pytest.raises(NotConnectedError):
        arm.send_action(np.zeros(6))


def test_missing_vendor_library_names_the_extra(monkeypatch):
    for name in ("rtde_control", "rtde_receive", "dashboard_client"):
        monkeypatch.setitem(sys.modules, name, None)  # makes ``import name`` fail
    arm = URArm(URConfig(host=HOST))  # constructing needs no vendor library
    with pytest.raises(HardwareError, match=r"pip install 'robopref\[ur\]'"):
        arm.connect()


def test_registry_builds_a_simulated_ur_arm():
    arm = make_arm("ur", host=HOST, simulate=True, control_hz=100.0)
    assert isinstance(arm, URArm) and arm.control_period_s == pytest.approx(0.01)
    with arm:
        pose = np.asarray(arm.get_observation().tcp_pose)
        np.testing.assert_allclose(arm.send_action(pose), pose)
    with pytest.raises(ConfigError, match="gain"):
        make_arm("ur", host=HOST, gain=5000.0)


def test_each_simulated_arm_has_its_own_fake_controller():
    first = URArm(URConfig(host=HOST, simulate=True))
    second = URArm(URConfig(host=HOST, simulate=True))
    with first, second:
        first.rtde.robot(HOST).trigger_protective_stop()
        assert first.get_observation().protective_stop
        assert not second.get_observation().protective_stop


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"host": ""}, "host"),
        ({"rtde_frequency_hz": 0.0}, "rtde_frequency_hz"),
        ({"control_hz": 600.0}, "control_hz"),
        ({"mode": "torque"}, "mode"),
        ({"lookahead_time_s": 0.5}, "lookahead_time_s"),
        ({"gain": 50.0}, "gain"),
        ({"speed": -1.0}, "speed"),
        ({"watchdog_min_hz": 200.0}, "watchdog_min_hz"),
        ({"force_mode": {"selection_vector": [2, 0, 0, 0, 0, 0]}}, "selection_vector"),
        ({"force_mode": {"type": 4}}, "type"),
        ({"force_mode": {"stiffness": 1}}, "stiffness"),
    ],
)
def test_config_rejects_bad_values_in_one_line(options, word):
    options = {"host": HOST, **options}
    with pytest.raises(ConfigError, match=word) as info:
        URConfig(**options)
    assert "\n" not in str(info.value)
