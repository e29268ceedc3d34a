"""The MuJoCo force-sensing arm and its wrist sensor: the hardware contracts plus physics."""

from __future__ import annotations

import numpy as np
import pytest

from robopref.errors import ConfigError, NonFiniteError
from robopref.geometry import matrix_from_rotvec, rotvec_from_matrix, unwrap_rotvec
from robopref.hardware import make_arm, make_sensor
from robopref.hardware.base import NotConnectedError, ProtectiveStop
from robopref.hardware.sim import REACH_M, SimArmConfig, SimForceArm
from robopref.hardware.sim_sensor import SimSensorConfig, SimWrenchSensor
from robopref.hardware.testing import ArmContract, SensorContract

GRAVITY = 9.81


class TestSimArmContract(ArmContract):
    @pytest.fixture
    def make_arm(self):
        return lambda: SimForceArm(SimArmConfig())


class TestSimSensorContract(SensorContract):
    @pytest.fixture
    def make_sensor(self):
        return lambda: SimWrenchSensor(
            SimSensorConfig(force_noise_std=0.05, torque_noise_std=0.005)
        )


@pytest.fixture
def arm():
    arm = SimForceArm(SimArmConfig())
    arm.connect()
    yield arm
    arm.disconnect()


def settle(arm: SimForceArm, target: np.ndarray, commands: int = 30) -> None:
    for _ in range(commands):
        arm.send_action(target)


def world_force(arm: SimForceArm) -> np.ndarray:
    """The wrench's force (N) rotated from the tool frame into the base frame."""
    rotation = matrix_from_rotvec(arm.get_observation().tcp_pose[3:])
    return rotation @ arm.get_observation().wrench[:3]


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "options",
    [
        {"control_hz": 0},
        {"control_hz": 1000},
        {"stiffness": (100.0,) * 5},
        {"stiffness": (100.0, 100.0, -1.0, 10.0, 10.0, 10.0)},
        {"damping_ratio": 0.0},
        {"initial_joint_positions": (0.0, 0.0, float("nan"), 0.0, 0.0, 0.0)},
        {"model_path": "/no/such/model.xml"},
        {"camera_width": 4096},
        {"camera_height": 0},
    ],
)
def test_bad_config_is_one_line_config_error(options):
    with pytest.raises(ConfigError) as info:
        SimArmConfig(**options)
    assert "\n" not in str(info.value)


def test_bad_sensor_config():
    with pytest.raises(ConfigError):
        SimSensorConfig(force_noise_std=-1.0)
    with pytest.raises(ConfigError):
        SimSensorConfig(offset=(0.0,) * 5)
    with pytest.raises(ConfigError):
        SimSensorConfig(bias_samples=0)


def test_registry_builds_sim_devices():
    arm = make_arm("sim", control_hz=10)
    assert isinstance(arm, SimForceArm)
    assert arm.control_period_s == pytest.approx(0.1)
    assert isinstance(make_sensor("sim", force_noise_std=0.1), SimWrenchSensor)


# ----------------------------------------------------------------------------- rates and clock
def test_physics_runs_at_500_hz_and_commands_at_control_rate(arm):
    assert arm.physics_hz >= 500
    assert arm.ticks_per_command == 25  # 20 Hz control over 500 Hz physics
    assert arm.control_period_s == pytest.approx(0.05)
    before_time, before_ticks = arm.get_observation().timestamp, arm.physics_steps
    arm.send_action(arm.get_observation().tcp_pose)
    assert arm.get_observation().timestamp - before_time == pytest.approx(0.05)
    assert arm.physics_steps - before_ticks == 25
    assert len(arm.pop_trace()["tcp_position"]) == 25


def test_clock_keeps_running_across_reset(arm):
    settle(arm, arm.get_observation().tcp_pose, commands=3)
    before = arm.get_observation().timestamp
    arm.reset()
    assert arm.get_observation().timestamp == pytest.approx(before)


def test_same_commands_give_same_states():
    runs = []
    for _ in range(2):
        arm = SimForceArm(SimArmConfig())
        arm.connect()
        target = arm.get_observation().tcp_pose + np.array([0.02, -0.01, -0.03, 0.0, 0.1, 0.0])
        settle(arm, target, commands=10)
        runs.append(arm.get_observation().joint_positions)
    np.testing.assert_array_equal(runs[0], runs[1])


# ----------------------------------------------------------------------------- commands
def test_reach_and_table_clipping_reported_in_the_return(arm):
    pose = arm.get_observation().tcp_pose.copy()
    far = pose.copy()
    far[:3] = [3.0, 0.0, 0.5]
    sent = arm.send_action(far)
    shoulder = arm.model.body("shoulder").pos
    assert np.linalg.norm(sent[:3] - shoulder) == pytest.approx(REACH_M)
    low = pose.copy()
    low[2] = -0.2
    assert arm.send_action(low)[2] == pytest.approx(0.005)
    np.testing.assert_array_equal(arm.send_action(pose), pose)  # in range: unchanged


def test_wrong_shape_and_non_finite_commands(arm):
    with pytest.raises(ValueError):
        arm.send_action(np.zeros(5))
    bad = arm.get_observation().tcp_pose.copy()
    bad[4] = np.nan
    with pytest.raises(NonFiniteError):
        arm.send_action(bad)


def test_tracks_a_rotation_and_keeps_rotvec_continuous(arm):
    start = arm.get_observation().tcp_pose.copy()
    # The home tool points down: a 180 deg rotation, where canonical rotation vectors flip.
    assert np.linalg.norm(start[3:]) == pytest.approx(np.pi, abs=0.01)
    previous = start[3:]
    for angle in np.linspace(0.0, 0.3, 7):
        turn = matrix_from_rotvec([0.0, 0.0, angle]) @ matrix_from_rotvec(start[3:])
        target = np.concatenate([start[:3], unwrap_rotvec(rotvec_from_matrix(turn), previous)])
        settle(arm, target, commands=4)
        observed = arm.get_observation().tcp_pose[3:]
        assert np.linalg.norm(observed - previous) < 0.3  # never a 2*pi jump
        previous = observed
    reached = matrix_from_rotvec(previous)
    wanted = matrix_from_rotvec([0.0, 0.0, 0.3]) @ matrix_from_rotvec(start[3:])
    assert np.linalg.norm(rotvec_from_matrix(reached @ wanted.T)) < 0.02


def test_stop_brakes_and_holds(arm):
    target = arm.get_observation().tcp_pose + np.array([0.05, 0, 0, 0, 0, 0])
    arm.send_action(target)  # moving now
    assert np.abs(arm.get_observation().joint_velocities).max() > 1e-3
    arm.stop()
    assert np.abs(arm.get_observation().joint_velocities).max() == 0.0
    held = arm.get_observation().tcp_pose.copy()
    with pytest.raises(ProtectiveStop):
        arm.send_action(target)
    arm.advance(50)  # time passes while stopped: the arm holds where it stopped
    assert np.linalg.norm(arm.get_observation().tcp_pose[:3] - held[:3]) < 1e-3
    arm.recover()
    arm.send_action(held)
    assert not arm.get_observation().protective_stop


# ----------------------------------------------------------------------------- wrench physics
def test_wrench_at_rest_is_the_tools_weight_in_any_orientation(arm):
    tool = arm.model.body("tool").id
    mass = float(arm.model.body_subtreemass[tool])
    assert 0.1 < mass < 2.0
    start = arm.get_observation().tcp_pose.copy()
    tilt = matrix_from_rotvec([0.0, 0.5, 0.0]) @ matrix_from_rotvec(start[3:])
    for rotation in (start[3:], unwrap_rotvec(rotvec_from_matrix(tilt), start[3:])):
        settle(arm, np.concatenate([start[:3], rotation]), commands=40)
        obs = arm.get_observation()
        assert np.abs(obs.joint_velocities).max() < 1e-2
        frame = matrix_from_rotvec(obs.tcp_pose[3:])
        force = frame @ obs.wrench[:3]
        np.testing.assert_allclose(force, [0.0, 0.0, -mass * GRAVITY], atol=0.05)
        # Torque about the sensor: the weight acting at the tool's centre of mass.
        lever = arm.data.subtree_com[tool] - arm.data.site_xpos[arm.model.site("ft_site").id]
        expected = np.cross(lever, [0.0, 0.0, -mass * GRAVITY])
        np.testing.assert_allclose(frame @ obs.wrench[3:], expected, atol=5e-3)
    # The tilted pose has a real lever arm, so the torque check above was not trivially zero.
    assert np.linalg.norm(expected) > 0.05


def test_pressing_on_the_fruit_gives_a_positive_normal_force(arm):
    rest = world_force(arm)
    fruit = arm.model.geom("fruit").id
    centre = arm.data.geom_xpos[fruit].copy()
    radius = float(arm.model.geom_size[fruit][0])
    tip = float(arm.model.geom_size[arm.model.geom("blade_tip").id][0])
    pose = arm.get_observation().tcp_pose.copy()
    above = pose.copy()
    above[:3] = centre + [0.0, 0.0, radius + tip + 0.01]
    settle(arm, above, commands=30)
    assert arm.pop_trace()["contact_force"][-25:].max() == 0.0  # not touching yet
    press = above.copy()
    press[2] -= 0.01 + 0.004  # 4 mm below the surface: the arm's spring pushes ~8 N
    settle(arm, press, commands=30)
    outward = np.array([0.0, 0.0, 1.0])  # the top of the horizontal fruit
    normal = float((world_force(arm) - rest) @ outward)
    contact = arm.pop_trace()["contact_force"][-1]
    assert normal > 3.0
    assert normal == pytest.approx(contact, rel=0.2)
    # Soft contact: the tip sinks below the skin, but only by millimetres.
    depth = radius - (arm.get_observation().tcp_pose[2] - centre[2] - tip)
    assert 0.0002 < depth < 0.004


# ----------------------------------------------------------------------------- rendering
def test_render_cameras(arm):
    front = arm.render("front", 64, 48)
    assert front.shape == (48, 64, 3) and front.dtype == np.uint8
    assert front.std() > 5  # a scene, not a blank frame
    wrist = arm.render("wrist")
    assert wrist.shape == (128, 128, 3)
    assert arm.render("front", 64, 48) is not None  # cached renderer reused
    with pytest.raises(ConfigError):
        arm.render("nope")


# ----------------------------------------------------------------------------- sensor
def test_sensor_reads_a_shared_arm_with_offset_noise_and_bias(arm):
    offset = (1.0, -2.0, 0.5, 0.1, 0.0, -0.1)
    sensor = SimWrenchSensor(
        SimSensorConfig(force_noise_std=0.2, torque_noise_std=0.01, offset=offset, seed=3), arm
    )
    with pytest.raises(NotConnectedError):
        sensor.read()
    sensor.start()
    readings = np.array([sensor.read().wrench for _ in range(400)])
    np.testing.assert_allclose(readings.mean(0), arm.tool_wrench() + offset, atol=0.05)
    np.testing.assert_allclose(readings.std(0), [0.2] * 3 + [0.01] * 3, rtol=0.2)
    before = sensor.read().sequence
    arm.send_action(arm.get_observation().tcp_pose)
    assert sensor.read().sequence == before + 25  # one per physics tick of the shared arm
    assert sensor.read().timestamp == pytest.approx(arm.get_observation().timestamp)
    sensor.bias()  # the mean of 10 noisy samples: within 0.2 / sqrt(10) N per force channel
    residual = np.mean([sensor.read().wrench for _ in range(200)], axis=0)
    assert np.abs(residual[:3]).max() < 0.25 and np.abs(residual[3:]).max() < 0.0125
    sensor.stop()


def test_standalone_sensor_advances_its_own_arm():
    sensor = SimWrenchSensor(SimSensorConfig())
    with sensor:
        first, second = sensor.read(), sensor.read()
        assert second.sequence == first.sequence + 1
        assert second.timestamp > first.timestamp
        # The arm at rest carries the tool's weight: about 3.4 N along the tool's z (down).
        assert second.wrench[2] == pytest.approx(0.35 * GRAVITY, abs=0.05)
