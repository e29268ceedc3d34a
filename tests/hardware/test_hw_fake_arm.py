"""FakeForceArm and SafeArm(FakeForceArm) against the ArmContract, plus the fake's hooks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware import make_arm
from robopref.hardware.fake.arm import FakeArmConfig, FakeForceArm
from robopref.hardware.safety import SafeArm, SafetyConfig
from robopref.hardware.testing import ArmContract


class TestFakeArmContract(ArmContract):
    @pytest.fixture
    def make_arm(self):
        return lambda: FakeForceArm(FakeArmConfig())


class TestSlowFakeArmContract(ArmContract):
    """A sluggish arm still passes when the suite is told how long it needs to settle."""

    settle_ticks = 60

    @pytest.fixture
    def make_arm(self):
        return lambda: FakeForceArm(FakeArmConfig(tracking=0.1, control_hz=500, n_joints=7))


GENEROUS = dict(
    workspace_min=(-2.0, -2.0, -2.0),
    workspace_max=(2.0, 2.0, 2.0),
    max_step_translation_m=0.05,
    max_step_rotation_rad=0.5,
    max_speed_m_s=5.0,
    max_angular_speed_rad_s=50.0,
    max_force_n=100.0,
    max_torque_nm=20.0,
)


class TestSafeFakeArmContract(ArmContract):
    @pytest.fixture
    def make_arm(self):
        return lambda: SafeArm(FakeForceArm(FakeArmConfig()), SafetyConfig(**GENEROUS))


class TestRegistryFakeArmContract(ArmContract):
    @pytest.fixture
    def make_arm(self):
        return lambda: make_arm("fake", control_hz=200, initial_pose=[0.3, 0.1, 0.2, 0, 0, 0])


def test_config_validation_messages():
    cases = [
        (dict(control_hz=0), "control_hz"),
        (dict(control_hz=float("inf")), "control_hz"),
        (dict(initial_pose=(0.0, 0.0, 0.0)), "initial_pose"),
        (dict(initial_pose=(0, 0, float("nan"), 0, 0, 0)), "initial_pose"),
        (dict(initial_pose="home"), "initial_pose"),
        (dict(tracking=0.0), "tracking"),
        (dict(tracking=1.5), "tracking"),
        (dict(n_joints=0), "n_joints"),
        (dict(n_joints=6.0), "n_joints"),
        (dict(history=0), "history"),
    ]
    for options, name in cases:
        with pytest.raises(ConfigError) as info:
            FakeArmConfig(**options)
        message = str(info.value)
        assert name in message and "\n" not in message, message


def test_registry_rejects_unknown_option():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) hardware\.speed: valid keys are"):
        make_arm("fake", speed=3)


def test_registry_suggests_close_names():
    with pytest.raises(ConfigError, match="unknown arm 'fak': did you mean fake"):
        make_arm("fak")


def test_tracking_closes_the_given_fraction_of_error():
    arm = FakeForceArm(FakeArmConfig(tracking=0.25, initial_pose=(0, 0, 0, 0, 0, 0)))
    with arm:
        target = np.array([0.4, 0.0, 0.0, 0.0, 0.0, 0.8])
        arm.send_action(target)
        pose = arm.get_observation().tcp_pose
        np.testing.assert_allclose(pose[:3], [0.1, 0.0, 0.0], atol=1e-12)
        np.testing.assert_allclose(pose[3:], [0.0, 0.0, 0.2], atol=1e-12)
        assert arm.get_observation().timestamp == pytest.approx(0.01)


def test_rotation_tracks_across_the_180_degree_seam():
    arm = FakeForceArm(FakeArmConfig(tracking=1.0))
    with arm:
        target = np.array([0.4, 0.0, 0.3, -3.1, 0.0, 0.0])  # 3.18 rad the short way round
        arm.send_action(target)
        reached = Rotation.from_rotvec(arm.get_observation().tcp_pose[3:])
        assert (reached * Rotation.from_rotvec(target[3:]).inv()).magnitude() < 1e-9


def test_joints_are_a_smooth_deterministic_function_of_pose():
    first, second = FakeForceArm(), FakeForceArm()
    with first, second:
        for arm in (first, second):
            for k in range(10):
                arm.send_action(np.array([0.4 + 0.01 * k, 0.0, 0.3, np.pi, 0.0, 0.0]))
        a, b = first.get_observation(), second.get_observation()
        np.testing.assert_array_equal(a.joint_positions, b.joint_positions)
        # Tiny motion across the rotation-vector sign flip at 180 deg gives tiny joint motion.
        before = first.get_observation().joint_positions
        first.send_action(np.array([a.tcp_pose[0], 0.0, 0.3, -np.pi + 1e-6, 0.0, 0.0]))
        after = first.get_observation()
        assert np.max(np.abs(after.joint_positions - before)) < 1e-4
        assert np.all(np.isfinite(after.joint_velocities))


def test_moving_reports_joint_velocities():
    with FakeForceArm() as arm:
        arm.send_action(np.array([0.45, 0.0, 0.3, np.pi, 0.0, 0.0]))
        assert np.linalg.norm(arm.get_observation().joint_velocities) > 0


def test_inject_wrench_and_nan_observation():
    with FakeForceArm() as arm:
        arm.inject_wrench(np.array([1.0, 2.0, 3.0, 0.1, 0.2, 0.3]))
        np.testing.assert_array_equal(arm.get_observation().wrench, [1, 2, 3, 0.1, 0.2, 0.3])
        with pytest.raises(ValueError, match=r"\(6,\)"):
            arm.inject_wrench(np.zeros(3))
        arm.inject_nan_observation(True)
        for _ in range(2):
            obs = arm.get_observation()
            assert np.all(np.isnan(obs.tcp_pose)) and np.all(np.isnan(obs.wrench))
        arm.inject_nan_observation(False)
        assert np.all(np.isfinite(arm.get_observation().tcp_pose))


def test_rejected_commands_are_not_recorded():
    with FakeForceArm() as arm:
        with pytest.raises(NonFiniteError):
            arm.send_action(np.full(6, np.nan))
        with pytest.raises(ValueError, match=r"\(6,\)"):
            arm.send_action(np.zeros(3))
        assert arm.n_commands == 0 and len(arm.commands) == 0
        arm.send_action(np.array([0.4, 0.0, 0.3, np.pi, 0.0, 0.0]))
        assert arm.n_commands == 1


def test_stop_latch_survives_reconnect():
    arm = FakeForceArm()
    arm.connect()
    arm.stop()
    arm.disconnect()
    arm.connect()
    assert arm.is_stopped
    arm.recover()
    assert not arm.is_stopped
