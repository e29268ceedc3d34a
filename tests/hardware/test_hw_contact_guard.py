"""SafeArm's force-guarded motion (``contact_force_n``): over the guard no command presses the
tool further against the measured force, with a compliance it backs off and presses at most
up to the guard, and in the Peel-v0 simulation it keeps a policy that drives into the fruit
under the protective stop. And its tool-orientation limit: every sent orientation stays in
the cone around ``orientation_center``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from robopref.errors import ConfigError
from robopref.hardware.fake.arm import FakeArmConfig, FakeForceArm
from robopref.hardware.fake.wrench import FakeWrenchSensor
from robopref.hardware.safety import SafeArm, SafetyConfig

HOME = (0.4, 0.0, 0.3, math.pi, 0.0, 0.0)
BOX = dict(workspace_min=(0.1, -0.4, 0.05), workspace_max=(0.7, 0.4, 0.6))
STEP = 0.01  # m, the default max_step_translation_m
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _guarded(guard=30.0, compliance=0.0, pose=HOME, sensor=None):
    inner = FakeForceArm(FakeArmConfig(initial_pose=tuple(pose)))
    config = SafetyConfig(**BOX, max_force_n=50.0, max_speed_m_s=10.0, contact_force_n=guard,
                          contact_compliance_m_per_n=compliance)
    safe = SafeArm(inner, config, clock=lambda: 0.0, wrist_sensor=sensor)
    safe.connect()
    return safe, inner


def _press(inner: FakeForceArm, force_base: np.ndarray) -> None:
    """The fake measures ``force_base`` (N, base frame), given in the tool frame as arms do."""
    rotation = Rotation.from_rotvec(inner.get_observation().tcp_pose[3:]).as_matrix()
    inner.inject_wrench(np.concatenate([rotation.T @ force_base, np.zeros(3)]))


def _guard_clips(safe: SafeArm) -> list[dict]:
    return [e.detail for e in safe.events if e.kind == "clip"
            and e.detail.get("limit") == "contact_force_n"]


unit = st.lists(st.floats(-1, 1), min_size=3, max_size=3).map(np.array).filter(
    lambda v: np.linalg.norm(v) > 0.1).map(lambda v: v / np.linalg.norm(v))
tool_rotation = st.lists(st.floats(-0.6, 0.6), min_size=3, max_size=3).map(
    lambda v: (Rotation.from_rotvec(v) * Rotation.from_rotvec(HOME[3:])).as_rotvec())
move = st.lists(st.floats(-0.012, 0.012), min_size=3, max_size=3).map(np.array)


@PROPERTY
@given(away=unit, rotvec=tool_rotation, moves=st.lists(move, min_size=1, max_size=6),
       excess=st.floats(0.01, 19.0), compliance=st.sampled_from([0.0, 0.0005, 0.002]))
def test_over_the_guard_no_command_presses_further(away, rotvec, moves, excess, compliance):
    guard = 30.0
    safe, inner = _guarded(guard, compliance, pose=(0.4, 0.0, 0.3, *rotvec))
    backoff = min(compliance * excess, STEP)
    for delta in moves:
        _press(inner, (guard + excess) * away)  # re-expressed in the tool frame as it moves
        # Limits count from the last command sent (the fake tracks it only part of the way).
        before = np.array(inner.commands[-1] if inner.commands else HOME[:3] + tuple(rotvec))
        requested = before.copy()
        requested[:3] += delta
        step = np.asarray(safe.send_action(requested))[:3] - before[:3]
        along = float(step @ away)
        assert along >= -1e-12  # never toward the surface
        assert np.linalg.norm(step) <= STEP + 1e-12  # and still within the step limit
        if np.linalg.norm(step) < STEP - 1e-9:  # no step clip: the full back-off, nothing else
            assert along >= backoff - 1e-9
            across = delta - (delta @ away) * away
            np.testing.assert_allclose(step - along * away, across, atol=1e-9)
            if float(delta @ away) >= backoff:
                np.testing.assert_allclose(step, delta, atol=1e-12)
    assert not safe.is_stopped


def test_below_the_guard_commands_pass_unless_a_compliance_limits_pressing():
    safe, inner = _guarded(guard=30.0, compliance=0.0)
    _press(inner, np.array([0.0, 0.0, 25.0]))
    target = np.array([0.4, 0.0, 0.291, *HOME[3:]])  # 9 mm down, into the contact
    np.testing.assert_allclose(safe.send_action(target), target)
    assert not _guard_clips(safe)

    safe, inner = _guarded(guard=30.0, compliance=0.0005)
    _press(inner, np.array([0.0, 0.0, 25.0]))
    sent = np.asarray(safe.send_action(target))
    # At 2000 N/m the 5 N left to the guard is 2.5 mm of pressing.
    assert sent[2] == pytest.approx(0.3 - 0.0025)
    np.testing.assert_allclose(sent[:2], target[:2], atol=1e-12)
    clip = _guard_clips(safe)[0]
    assert clip["force_n"] == pytest.approx(25.0) and clip["limit_value"] == 30.0


def test_free_space_is_not_guarded():
    # The tool's weight (a few N) never engages the guard, even with a compliance.
    safe, inner = _guarded(guard=30.0, compliance=0.0005)
    _press(inner, np.array([0.0, 0.0, -3.5]))
    target = np.array([0.4, 0.0, 0.291, *HOME[3:]])
    np.testing.assert_allclose(safe.send_action(target), target)
    assert not _guard_clips(safe)


def test_backoff_is_at_most_one_step():
    safe, inner = _guarded(guard=30.0, compliance=0.01)
    _press(inner, np.array([0.0, 0.0, 49.0]))  # 19 N over: 0.19 m at this compliance
    sent = np.asarray(safe.send_action(np.array(HOME)))
    assert sent[2] == pytest.approx(0.3 + STEP)


def test_guard_reads_the_wrist_sensor_and_holds_when_the_arm_sees_no_contact():
    sensor = FakeWrenchSensor(wrench=[0.0, 0.0, 35.0, 0.0, 0.0, 0.0])
    safe, inner = _guarded(guard=30.0, compliance=0.0005, sensor=sensor)
    inner.inject_wrench(np.zeros(6))  # the arm's estimate shows nothing: no direction
    target = np.array([0.41, 0.0, 0.291, *HOME[3:]])
    sent = np.asarray(safe.send_action(target))
    np.testing.assert_allclose(sent[:3], HOME[:3])  # position held, nothing guessed
    assert _guard_clips(safe)[0]["force_n"] == pytest.approx(35.0)
    assert not safe.is_stopped


def test_guard_off_by_default():
    assert SafetyConfig().contact_force_n is None
    inner = FakeForceArm(FakeArmConfig(initial_pose=HOME))
    safe = SafeArm(inner, SafetyConfig(**BOX, max_speed_m_s=10.0))
    safe.connect()
    safe.arm.inject_wrench(np.array([0.0, 0.0, 45.0, 0.0, 0.0, 0.0]))
    target = np.array([0.4, 0.0, 0.291, *HOME[3:]])
    np.testing.assert_allclose(safe.send_action(target), target)


@pytest.mark.parametrize(
    "options, name",
    [
        (dict(contact_force_n=50.0), "contact_force_n"),
        (dict(contact_force_n=0.0), "contact_force_n"),
        (dict(contact_force_n="30"), "contact_force_n"),
        (dict(contact_force_n=True), "contact_force_n"),
        (dict(contact_force_n=30.0, contact_compliance_m_per_n=-1e-4),
         "contact_compliance_m_per_n"),
        (dict(contact_force_n=30.0, contact_compliance_m_per_n=0.5),
         "contact_compliance_m_per_n"),
        (dict(contact_compliance_m_per_n=None), "contact_compliance_m_per_n"),
    ],
)
def test_guard_config_validation(options, name):
    with pytest.raises(ConfigError) as info:
        SafetyConfig(max_force_n=50.0, **options)
    assert name in str(info.value) and "\n" not in str(info.value)


def _drive_into_fruit(safety: SafetyConfig) -> tuple[bool, float, int]:
    """The scripted Peel-v0 expert with 5 mm per tick more downward push once it touches the
    fruit: (protective stop?, largest wrist |force| (N), guard clips)."""
    from robopref.envs.peel import PeelConfig, PeelEnv, PeelExpert

    config = PeelConfig(episode_steps=120)
    env = PeelEnv(config, seed=3, safety=safety)
    expert = PeelExpert(task=config)
    obs, _ = env.reset(seed=2_000_020)
    touching, largest = False, 0.0
    for _ in range(120):
        action = np.asarray(expert.act(obs), dtype=np.float64)
        if touching:
            action[2] -= 0.005
        obs, _, stopped, truncated, info = env.step(action)
        force = float(np.linalg.norm(obs[18:21]))
        largest = max(largest, force)
        touching = touching or info["peak_force_n"] > 3.0
        if stopped or truncated:
            break
    clips = len(_guard_clips(env.arm))
    env.close()
    return stopped, largest, clips


def test_guard_keeps_a_policy_pressing_into_the_fruit_under_the_stop():
    unguarded = _drive_into_fruit(SafetyConfig())
    assert unguarded[0], "without the guard this push trips the 50 N stop"
    stopped, largest, clips = _drive_into_fruit(
        SafetyConfig(contact_force_n=40.0, contact_compliance_m_per_n=0.0005))
    assert not stopped and largest < 50.0 and clips > 0


# ------------------------------------------------------------------ tool-orientation limit
DOWN = (math.pi, 0.0, 0.0)
rotation_request = st.lists(st.floats(-4.0, 4.0), min_size=3, max_size=3).map(np.array)


@PROPERTY
@given(requests=st.lists(rotation_request, min_size=1, max_size=8),
       limit=st.floats(0.05, 1.5))
def test_every_sent_orientation_stays_in_the_cone(requests, limit):
    inner = FakeForceArm(FakeArmConfig(initial_pose=HOME))
    safe = SafeArm(inner, SafetyConfig(**BOX, orientation_center=DOWN,
                                       max_orientation_deviation_rad=limit,
                                       max_step_rotation_rad=0.5, max_angular_speed_rad_s=1e3),
                   clock=lambda: 0.0)
    safe.connect()
    previous = np.array(HOME)
    for rotvec in requests:
        sent = np.asarray(safe.send_action(np.array([*HOME[:3], *rotvec])))
        deviation = (Rotation.from_rotvec(sent[3:]) * Rotation.from_rotvec(DOWN).inv()).magnitude()
        assert deviation <= limit + 1e-9
        turn = (Rotation.from_rotvec(sent[3:]) * Rotation.from_rotvec(previous[3:]).inv())
        assert turn.magnitude() <= 0.5 + 1e-9  # the step limit still holds after the cone
        if not np.allclose(sent[3:], rotvec):  # a clipped orientation is continuous with the
            assert np.linalg.norm(sent[3:] - previous[3:]) < math.pi  # last one sent
        previous = sent


def test_orientation_inside_the_cone_passes_and_outside_is_turned_back_toward_the_centre():
    inner = FakeForceArm(FakeArmConfig(initial_pose=HOME))
    safe = SafeArm(inner, SafetyConfig(**BOX, orientation_center=DOWN,
                                       max_orientation_deviation_rad=0.35,
                                       max_step_rotation_rad=1.0, max_angular_speed_rad_s=1e3),
                   clock=lambda: 0.0)
    safe.connect()
    tilted = (Rotation.from_rotvec([0.0, 0.3, 0.0]) * Rotation.from_rotvec(DOWN)).as_rotvec()
    np.testing.assert_allclose(safe.send_action(np.array([*HOME[:3], *tilted]))[3:], tilted)
    far = (Rotation.from_rotvec([0.0, 0.9, 0.0]) * Rotation.from_rotvec(DOWN)).as_rotvec()
    sent = np.asarray(safe.send_action(np.array([*HOME[:3], *far])))
    offset = (Rotation.from_rotvec(sent[3:]) * Rotation.from_rotvec(DOWN).inv()).as_rotvec()
    np.testing.assert_allclose(offset, [0.0, 0.35, 0.0], atol=1e-9)  # same axis, at the limit
    clips = [e.detail for e in safe.events if e.detail.get("limit") ==
             "max_orientation_deviation_rad"]
    assert len(clips) == 1 and clips[0]["limit_value"] == 0.35


@pytest.mark.parametrize(
    "options",
    [
        dict(orientation_center=DOWN),
        dict(max_orientation_deviation_rad=0.3),
        dict(orientation_center=DOWN, max_orientation_deviation_rad=2.0),
        dict(orientation_center=DOWN, max_orientation_deviation_rad=0.0),
        dict(orientation_center=(1.0, 2.0), max_orientation_deviation_rad=0.3),
        dict(orientation_center=(1.0, math.nan, 0.0), max_orientation_deviation_rad=0.3),
        dict(orientation_center=DOWN, max_orientation_deviation_rad="0.3"),
    ],
)
def test_orientation_limit_config_validation(options):
    with pytest.raises(ConfigError) as info:
        SafetyConfig(**options)
    message = str(info.value)
    assert "orientation" in message and "\n" not in message
