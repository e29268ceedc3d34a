"""FrankaArm against the in-process franky fake: the arm contract plus Franka specifics."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware import make_arm
from robopref.hardware.base import HardwareError, NotConnectedError, ProtectiveStop
from robopref.hardware.fake.franky import FakeFranky
from robopref.hardware.franka import FrankaArm, FrankaConfig, external_wrench_to_tool
from robopref.hardware.testing import ArmContract

HOST = "192.0.2.20"


class TestFrankaContract(ArmContract):
    @pytest.fixture
    def make_arm(self):
        return lambda: FrankaArm(FrankaConfig(fci_ip=HOST, simulate=True))


class TestSlowFrankaContract(ArmContract):
    """The lowest sensible dynamics factor still reaches a 1 cm step within the settle ticks."""

    @pytest.fixture
    def make_arm(self):
        return lambda: FrankaArm(
            FrankaConfig(fci_ip=HOST, relative_dynamics_factor=0.05, simulate=True)
        )


@pytest.fixture
def fake():
    return FakeFranky(tick_s=0.02)


@pytest.fixture
def controller(fake):
    return fake.controller(HOST)


def _arm(fake, **options) -> FrankaArm:
    arm = FrankaArm(FrankaConfig(fci_ip=HOST, **options), franky=fake)
    arm.connect()
    return arm


def test_connect_sets_dynamics_factor_and_collision_thresholds(fake, controller):
    arm = _arm(fake, relative_dynamics_factor=0.2, force_threshold_n=25.0, realtime=False)
    assert arm.n_joints == 7
    _, _, realtime = controller.last("__init__")
    assert realtime == fake.RealtimeConfig.Ignore
    assert controller.last("set_relative_dynamics_factor") == (0.2,)
    assert controller.force_threshold_n == 25.0


def test_targets_become_asynchronous_absolute_cartesian_motions(fake, controller):
    arm = _arm(fake)
    start = np.asarray(arm.get_observation().tcp_pose)
    target = start.copy()
    target[2] -= 0.005
    target[3:] = (Rotation.from_rotvec([0, 0, 0.05]) * Rotation.from_rotvec(start[3:])).as_rotvec()
    sent = arm.send_action(target)
    np.testing.assert_allclose(sent, target)
    motion, asynchronous = controller.last("move")
    assert asynchronous is True
    assert isinstance(motion, fake.CartesianMotion)
    assert motion.reference_type == fake.ReferenceType.Absolute
    np.testing.assert_allclose(motion.target.translation, target[:3])
    # franky's quaternion order is x, y, z, w, which is scipy's.
    expected = Rotation.from_rotvec(target[3:])
    got = Rotation.from_quat(motion.target.quaternion)
    assert (expected.inv() * got).magnitude() < 1e-9


def test_wrench_converted_to_tool_frame_and_environment_sign(fake, controller):
    arm = _arm(fake)
    # Home pose: tool pointing down (rotation pi about base x): tool z = -base z,
    # tool y = -base y. The robot pressing down on a table: libfranka reports the wrench
    # the robot applies, -z in the base frame; the table pushes back on the tool along +z
    # base = -z tool.
    controller.set_external_wrench([0.0, 0.0, -8.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(arm.get_observation().wrench, [0, 0, -8.0, 0, 0, 0], atol=1e-9)
    # Rotated +90 deg about base z: tool x = base y, tool y = -base x.
    controller.ee_matrix[:3, :3] = Rotation.from_rotvec([0, 0, np.pi / 2]).as_matrix()
    controller.set_external_wrench([4.0, 0.0, 0.0, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(
        arm.get_observation().wrench, [0.0, 4.0, 0.0, -1.0, 0.0, -0.5], atol=1e-9
    )


def test_external_wrench_to_tool_agrees_with_the_stiffness_frame_reading(fake, controller):
    # With EE_T_K identity, K_F_ext_hat_K is the same wrench in the tool frame (robot sign).
    arm = _arm(fake)
    rng = np.random.default_rng(1)
    robot = fake.Robot(HOST)
    for _ in range(10):
        controller.ee_matrix[:3, :3] = Rotation.random(random_state=rng).as_matrix()
        controller.set_external_wrench(rng.normal(scale=3.0, size=6))
        state = robot.state
        tool = external_wrench_to_tool(state.O_F_ext_hat_K, state.O_T_EE.matrix)
        np.testing.assert_allclose(tool, -np.asarray(state.K_F_ext_hat_K), atol=1e-12)
        np.testing.assert_allclose(arm.get_observation().wrench, tool, atol=1e-12)


def test_reflex_latches_protective_stop_until_recover_from_errors(fake, controller):
    arm = _arm(fake)
    pose = np.asarray(arm.get_observation().tcp_pose)
    arm.send_action(pose)
    controller.set_external_wrench([0.0, 0.0, -50.0, 0, 0, 0])  # above the 30 N threshold
    assert arm.get_observation().protective_stop and arm.is_stopped
    with pytest.raises(ProtectiveStop, match=HOST):
        arm.send_action(pose)
    moves = controller.count("move")
    controller.set_external_wrench(np.zeros(6))
    arm.recover()
    assert controller.count("recover_from_errors") == 1
    assert not arm.is_stopped and not arm.get_observation().protective_stop
    arm.send_action(pose)
    assert controller.count("move") == moves + 1


def test_reflex_raised_by_the_next_move_latches(fake, controller):
    # franky stores the aborted motion's ControlException and raises it from the next move.
    arm = _arm(fake)
    pose = np.asarray(arm.get_observation().tcp_pose)
    arm.send_action(pose)
    controller.trigger_reflex("joint_reflex")
    controller.has_errors = False  # the stored exception alone must latch the stop
    with pytest.raises(ProtectiveStop, match="joint_reflex"):
        arm.send_action(pose)
    assert arm.is_stopped
    arm.recover()
    arm.send_action(pose)


def test_stop_preempts_motion_and_joins_it(fake, controller):
    arm = _arm(fake)
    arm.send_action(np.asarray(arm.get_observation().tcp_pose))
    arm.stop()
    assert controller.count("stop") == 1 and controller.count("join_motion") == 1
    assert controller.pending is None  # the abort was collected, not left for the next move
    assert arm.is_stopped


def test_dropped_connection_names_the_host(fake, controller):
    arm = _arm(fake)
    pose = np.asarray(arm.get_observation().tcp_pose)
    controller.drop_connection()
    with pytest.raises(HardwareError, match=HOST) as info:
        arm.send_action(pose)
    assert not isinstance(info.value, ProtectiveStop | NotConnectedError)
    with pytest.raises(HardwareError, match=HOST):
        arm.get_observation()
    arm.disconnect()
    arm.disconnect()
    assert not arm.is_connected


def test_unreachable_arm_names_the_host(fake, controller):
    controller.drop_connection()
    arm = FrankaArm(FrankaConfig(fci_ip=HOST), franky=fake)
    with pytest.raises(HardwareError, match=f"{HOST}.*FCI"):
        arm.connect()
    assert not arm.is_connected


def test_non_finite_command_is_not_sent(fake, controller):
    arm = _arm(fake)
    with pytest.raises(NonFiniteError):
        arm.send_action(np.array([0.3, 0.0, np.inf, np.pi, 0, 0]))
    assert controller.count("move") == 0


def test_missing_vendor_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "franky", None)  # makes ``import franky`` fail
    arm = FrankaArm(FrankaConfig(fci_ip=HOST))  # constructing needs no vendor library
    with pytest.raises(HardwareError, match=r"pip install 'robopref\[franka\]'"):
        arm.connect()


def test_registry_builds_a_simulated_franka_arm():
    arm = make_arm("franka", fci_ip=HOST, simulate=True, control_hz=20.0)
    assert isinstance(arm, FrankaArm) and arm.control_period_s == pytest.approx(0.05)
    with arm:
        pose = np.asarray(arm.get_observation().tcp_pose)
        np.testing.assert_allclose(arm.send_action(pose), pose)
    with pytest.raises(ConfigError, match="relative_dynamics_factor"):
        make_arm("franka", fci_ip=HOST, relative_dynamics_factor=1.5)


def test_each_simulated_arm_has_its_own_fake_controller():
    first = FrankaArm(FrankaConfig(fci_ip=HOST, simulate=True))
    second = FrankaArm(FrankaConfig(fci_ip=HOST, simulate=True))
    with first, second:
        first.franky.controller(HOST).trigger_reflex()
        assert first.get_observation().protective_stop
        assert not second.get_observation().protective_stop


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"fci_ip": ""}, "fci_ip"),
        ({"control_hz": 0.0}, "control_hz"),
        ({"control_hz": 2000.0}, "control_hz"),
        ({"relative_dynamics_factor": 0.0}, "relative_dynamics_factor"),
        ({"force_threshold_n": -1.0}, "force_threshold_n"),
        ({"torque_threshold_nm": float("nan")}, "torque_threshold_nm"),
    ],
)
def test_config_rejects_bad_values_in_one_line(options, word):
    options = {"fci_ip": HOST, **options}
    with pytest.raises(ConfigError, match=word) as info:
        FrankaConfig(**options)
    assert "\n" not in str(info.value)
