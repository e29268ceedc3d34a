"""SafeArm: clipping invariants, force stops, the watchdog and the event log (property tests)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware.base import HardwareError, NotConnectedError, ProtectiveStop
from robopref.hardware.fake.arm import FakeArmConfig, FakeForceArm
from robopref.hardware.safety import SafeArm, SafetyConfig, SafetyEvent

EPS = 1e-9
HOME = (0.4, 0.0, 0.3, math.pi, 0.0, 0.0)
BOX = dict(workspace_min=(0.1, -0.4, 0.05), workspace_max=(0.7, 0.4, 0.6))
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _angle_between(a: np.ndarray, b: np.ndarray) -> float:
    return (Rotation.from_rotvec(a) * Rotation.from_rotvec(b).inv()).magnitude()


def _safe(config: SafetyConfig, arm_config: FakeArmConfig | None = None, clock=None):
    inner = FakeForceArm(arm_config or FakeArmConfig(initial_pose=HOME))
    safe = SafeArm(inner, config, clock=clock or FakeClock())
    safe.connect()
    return safe, inner


# ------------------------------------------------------------------ strategies
coordinate = st.one_of(
    st.floats(-3.0, 3.0),
    st.sampled_from([1e12, -1e12, 1e300, -1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
)
rotation_coordinate = st.one_of(st.floats(-10.0, 10.0), st.sampled_from([math.pi, -math.pi]))


@st.composite
def commands(draw):
    position = [draw(coordinate) for _ in range(3)]
    rotation = [draw(rotation_coordinate) for _ in range(3)]
    if draw(st.booleans()):  # small moves near the current home, where clipping is rarer
        position = [HOME[i] + draw(st.floats(-0.02, 0.02)) for i in range(3)]
        rotation = list(
            (
                Rotation.from_rotvec(draw(st.lists(st.floats(-0.05, 0.05), min_size=3, max_size=3)))
                * Rotation.from_rotvec(HOME[3:])
            ).as_rotvec()
        )
    if draw(st.integers(0, 9)) == 0:
        rotation[draw(st.integers(0, 2))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return np.array(position + rotation, dtype=np.float64)


@st.composite
def limits(draw):
    return SafetyConfig(
        **BOX,
        max_step_translation_m=draw(st.floats(1e-3, 0.1)),
        max_step_rotation_rad=draw(st.floats(1e-3, 0.5)),
        max_speed_m_s=draw(st.floats(0.05, 10.0)),
        max_angular_speed_rad_s=draw(st.floats(0.05, 50.0)),
        max_force_n=50.0,
        max_torque_nm=5.0,
    )


# ------------------------------------------------------------------ clipping invariants
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=limits(),
    # Each command is repeated for a while so that steady pushes reach the box walls.
    sequence=st.lists(st.tuples(commands(), st.integers(1, 30)), min_size=1, max_size=6),
    hz=st.sampled_from([50.0, 125.0, 500.0]),
)
def test_every_sent_command_obeys_box_and_step_limits(config, sequence, hz):
    safe, inner = _safe(config, FakeArmConfig(control_hz=hz, initial_pose=HOME))
    dt = 1.0 / hz
    limits_of = (
        np.array(config.workspace_min),
        np.array(config.workspace_max),
        min(config.max_step_translation_m, config.max_speed_m_s * dt),
        min(config.max_step_rotation_rad, config.max_angular_speed_rad_s * dt),
    )
    previous = np.array(HOME)
    for requested, repeats in sequence:
        for _ in range(repeats):
            previous = _send_and_check(safe, inner, requested, previous, limits_of)


def _send_and_check(safe, inner, requested, previous, limits_of):
    """Sends one command through ``safe`` and checks what reached ``inner``; returns the
    command the inner arm received (or ``previous`` when nothing was sent)."""
    low, high, max_translation, max_rotation = limits_of
    before_events = len(safe.events)
    before_commands = inner.n_commands
    if not np.all(np.isfinite(requested)):
        with pytest.raises(NonFiniteError):
            safe.send_action(requested)
        assert inner.n_commands == before_commands
        assert safe.events[-1].kind == "non_finite_command"
        return previous
    returned = safe.send_action(requested)
    assert inner.n_commands == before_commands + 1
    sent = inner.commands[-1]
    np.testing.assert_array_equal(returned, sent)
    assert np.all(sent[:3] >= low - EPS) and np.all(sent[:3] <= high + EPS)
    assert np.linalg.norm(sent[:3] - previous[:3]) <= max_translation + EPS
    assert _angle_between(sent[3:], previous[3:]) <= max_rotation + EPS
    clips = [e for e in safe.events[before_events:] if e.kind == "clip"]
    if np.array_equal(sent, requested):
        assert clips == []
        return sent
    assert clips, "a clipped command left no event"
    limits_hit = {e.detail["limit"] for e in clips}
    if not np.array_equal(sent[:3], requested[:3]):
        assert limits_hit & {"workspace", "max_step_translation_m", "max_speed_m_s"}
        np.testing.assert_allclose(clips[0].detail["requested"], requested[:3])
    if not np.array_equal(sent[3:], requested[3:]):
        rotation_clips = [e for e in clips if "rotation" in e.detail["limit"]]
        rotation_clips += [e for e in clips if "angular" in e.detail["limit"]]
        assert rotation_clips
        np.testing.assert_allclose(rotation_clips[-1].detail["sent"], sent[3:])
    return sent


def test_rotation_clip_turns_about_the_requested_axis():
    config = SafetyConfig(**BOX, max_step_rotation_rad=0.1, max_angular_speed_rad_s=100.0)
    safe, inner = _safe(config)
    start = Rotation.from_rotvec(HOME[3:])
    target = (Rotation.from_rotvec([0.0, 0.0, 1.0]) * start).as_rotvec()
    safe.send_action(np.concatenate([HOME[:3], target]))
    sent = Rotation.from_rotvec(inner.commands[-1][3:])
    step = (sent * start.inv()).as_rotvec()
    np.testing.assert_allclose(step, [0.0, 0.0, 0.1], atol=1e-12)


def test_rotation_clip_keeps_rotation_vector_continuous_near_180_degrees():
    # Start pointing down (pi about x) and turn about x past 180 deg: the canonical rotation
    # vector would flip to about -pi; clipped commands stay close to the previous one.
    config = SafetyConfig(**BOX, max_step_rotation_rad=0.05, max_angular_speed_rad_s=100.0)
    safe, inner = _safe(config)
    target = np.array([*HOME[:3], -(math.pi - 0.3), 0.0, 0.0])
    previous = np.array(HOME)
    for _ in range(5):
        safe.send_action(target)
        sent = inner.commands[-1]
        assert np.linalg.norm(sent[3:] - previous[3:]) == pytest.approx(0.05)
        previous = sent
    assert previous[3] == pytest.approx(math.pi + 0.25)
    assert _angle_between(previous[3:], target[3:]) == pytest.approx(0.05)


def test_speed_limit_wins_when_tighter_than_step_limit():
    config = SafetyConfig(**BOX, max_step_translation_m=0.05, max_speed_m_s=0.5)
    safe, inner = _safe(config, FakeArmConfig(control_hz=100.0, initial_pose=HOME))
    safe.send_action(np.array([0.6, 0.0, 0.3, math.pi, 0.0, 0.0]))
    assert inner.commands[-1][0] == pytest.approx(0.405)
    assert safe.events[-1].detail["limit"] == "max_speed_m_s"
    config = SafetyConfig(**BOX, max_step_translation_m=0.002, max_speed_m_s=0.5)
    safe, inner = _safe(config, FakeArmConfig(control_hz=100.0, initial_pose=HOME))
    safe.send_action(np.array([0.6, 0.0, 0.3, math.pi, 0.0, 0.0]))
    assert inner.commands[-1][0] == pytest.approx(0.402)
    assert safe.events[-1].detail["limit"] == "max_step_translation_m"


def test_arm_outside_the_box_is_led_back_without_a_jump():
    config = SafetyConfig(**BOX, max_step_translation_m=0.01, max_speed_m_s=10.0)
    outside = (0.9, 0.0, 0.3, math.pi, 0.0, 0.0)
    safe, inner = _safe(config, FakeArmConfig(initial_pose=outside, tracking=1.0))
    previous = np.array(outside)
    for _ in range(30):
        safe.send_action(np.array(outside))
        sent = inner.commands[-1]
        assert np.linalg.norm(sent[:3] - previous[:3]) <= 0.01 + EPS
        previous = sent
    assert inner.commands[-1][0] == pytest.approx(0.7)


# ------------------------------------------------------------------ force and torque stops
@PROPERTY
@given(
    stop_tick=st.integers(0, 15),
    extra=st.integers(1, 5),
    direction=st.lists(st.floats(-1, 1), min_size=3, max_size=3).filter(
        lambda v: np.linalg.norm(v) > 1e-3
    ),
    overload=st.floats(1.001, 20.0),
    torque=st.booleans(),
)
def test_over_limit_wrench_stops_on_the_next_command(stop_tick, extra, direction, overload, torque):
    config = SafetyConfig(**BOX, max_force_n=40.0, max_torque_nm=4.0)
    safe, inner = _safe(config)
    unit = np.asarray(direction) / np.linalg.norm(direction)
    wrench = np.zeros(6)
    if torque:
        wrench[3:] = unit * 4.0 * overload
    else:
        wrench[:3] = unit * 40.0 * overload
    target = np.array([0.45, 0.05, 0.25, math.pi, 0.0, 0.0])
    for _ in range(stop_tick):
        safe.send_action(target)
    inner.inject_wrench(wrench)
    received = inner.n_commands
    with pytest.raises(ProtectiveStop):
        safe.send_action(target)
    assert inner.n_commands == received
    assert inner.is_stopped and safe.is_stopped
    assert safe.get_observation().protective_stop
    stop_events = [e for e in safe.events if e.kind == "protective_stop"]
    assert len(stop_events) == 1
    assert stop_events[0].detail["reason"] == ("torque_limit" if torque else "force_limit")
    for _ in range(extra):
        with pytest.raises(ProtectiveStop):
            safe.send_action(target)
    assert safe.poll(now=1e6) is False  # the watchdog does not command a stopped arm
    assert inner.n_commands == received
    # Still overloaded: recover() clears the latch, the next command trips it again.
    safe.recover()
    with pytest.raises(ProtectiveStop):
        safe.send_action(target)
    assert inner.n_commands == received
    inner.inject_wrench(np.zeros(6))
    safe.recover()
    safe.send_action(target)
    assert inner.n_commands == received + 1


def test_wrench_just_under_the_limits_does_not_stop():
    safe, inner = _safe(SafetyConfig(**BOX, max_force_n=40.0, max_torque_nm=4.0))
    inner.inject_wrench(np.array([0.0, 0.0, 39.99, 0.0, 3.99, 0.0]))
    safe.send_action(np.array(HOME))
    assert not safe.is_stopped and inner.n_commands == 1


def test_get_observation_latches_over_limit_and_reports_it():
    safe, inner = _safe(SafetyConfig(**BOX, max_force_n=40.0))
    inner.inject_wrench(np.array([0.0, 0.0, -60.0, 0.0, 0.0, 0.0]))
    obs = safe.get_observation()
    assert obs.protective_stop and safe.is_stopped and inner.is_stopped
    with pytest.raises(ProtectiveStop):
        safe.send_action(np.array(HOME))
    assert inner.n_commands == 0


def test_non_finite_observation_latches_and_raises():
    safe, inner = _safe(SafetyConfig(**BOX))
    inner.inject_nan_observation(True)
    with pytest.raises(HardwareError, match="non-finite"):
        safe.send_action(np.array(HOME))
    assert safe.is_stopped and inner.n_commands == 0
    assert safe.events[-1].detail["reason"] == "non_finite_observation"
    with pytest.raises(HardwareError):
        safe.get_observation()
    inner.inject_nan_observation(False)
    safe.recover()
    safe.send_action(np.array(HOME))
    assert inner.n_commands == 1


def test_stop_of_the_wrapped_arm_is_honoured():
    safe, inner = _safe(SafetyConfig(**BOX))
    inner.stop()  # e.g. the controller's own protective stop
    assert safe.is_stopped
    with pytest.raises(ProtectiveStop):
        safe.send_action(np.array(HOME))
    safe.recover()
    assert not inner.is_stopped
    safe.send_action(np.array(HOME))


def test_recover_restarts_step_limits_from_the_measured_pose():
    config = SafetyConfig(**BOX, max_step_translation_m=0.01, max_speed_m_s=10.0)
    safe, inner = _safe(config, FakeArmConfig(initial_pose=HOME, tracking=0.5))
    far = np.array([0.6, 0.0, 0.3, math.pi, 0.0, 0.0])
    for _ in range(3):
        safe.send_action(far)  # commands run ahead of the lagging arm
    safe.stop()
    safe.recover()
    measured = safe.get_observation().tcp_pose.copy()
    safe.send_action(far)
    assert np.linalg.norm(inner.commands[-1][:3] - measured[:3]) == pytest.approx(0.01)
    assert safe.events[-2].kind == "recover"


def test_sync_reference_restarts_step_limits_but_keeps_a_stop_latched():
    config = SafetyConfig(**BOX, max_step_translation_m=0.01, max_speed_m_s=10.0)
    safe, inner = _safe(config, FakeArmConfig(initial_pose=HOME, tracking=1.0))
    far = np.array([0.6, 0.0, 0.3, math.pi, 0.0, 0.0])
    safe.send_action(far)
    # A simulated reset teleports the arm: step limits must count from the new pose.
    inner.send_action(np.array([0.3, 0.1, 0.4, math.pi, 0.0, 0.0]))
    safe.sync_reference()
    measured = safe.get_observation().tcp_pose.copy()
    safe.send_action(far)
    assert np.linalg.norm(inner.commands[-1][:3] - measured[:3]) == pytest.approx(0.01)
    safe.stop()
    safe.sync_reference()
    assert safe.is_stopped
    with pytest.raises(ProtectiveStop):
        safe.send_action(far)


# ------------------------------------------------------------------ watchdog
@PROPERTY
@given(
    timeout=st.floats(0.01, 5.0),
    early=st.floats(0.0, 0.99),
    late=st.floats(1.001, 10.0),
)
def test_watchdog_holds_after_timeout_and_not_before(timeout, early, late):
    clock = FakeClock(100.0)
    safe, inner = _safe(SafetyConfig(**BOX, watchdog_timeout_s=timeout), clock=clock)
    target = np.array([0.45, 0.0, 0.3, math.pi, 0.0, 0.0])
    safe.send_action(target)
    assert not safe.poll(now=100.0 + early * timeout)
    clock.t = 100.0 + early * timeout
    assert not safe.poll()
    assert inner.n_commands == 1
    measured = inner.get_observation().tcp_pose.copy()
    clock.t = 100.0 + late * timeout
    assert safe.poll()
    assert inner.n_commands == 2
    np.testing.assert_array_equal(inner.commands[-1], measured)
    assert safe.events[-1].kind == "watchdog_hold"
    # Once per lapse: later polls add nothing until a new command arrives.
    clock.t += 10 * timeout
    assert not safe.poll()
    assert inner.n_commands == 2
    safe.send_action(target)
    assert not safe.poll()
    clock.t += 1.001 * timeout
    assert safe.poll()
    assert inner.n_commands == 4


def test_watchdog_idle_when_disconnected_or_stopped():
    clock = FakeClock()
    safe, inner = _safe(SafetyConfig(**BOX, watchdog_timeout_s=0.1), clock=clock)
    safe.stop()
    assert not safe.poll(now=10.0)
    safe.recover()
    clock.t = 0.05
    assert not safe.poll()
    safe.disconnect()
    assert not safe.poll(now=100.0)
    assert inner.n_commands == 0


def test_watchdog_poll_trips_on_over_limit_wrench():
    safe, inner = _safe(SafetyConfig(**BOX, max_force_n=10.0, watchdog_timeout_s=1.0))
    inner.inject_wrench(np.array([11.0, 0, 0, 0, 0, 0]))
    assert not safe.poll(now=0.0)
    assert safe.is_stopped and inner.is_stopped


def test_watchdog_thread_holds_and_stops_on_disconnect():
    inner = FakeForceArm(FakeArmConfig(initial_pose=HOME))
    safe = SafeArm(inner, SafetyConfig(**BOX, watchdog_timeout_s=0.05))
    safe.connect()
    safe.send_action(np.array(HOME))
    safe.start_watchdog(period_s=0.005)
    safe.start_watchdog(period_s=0.005)  # a second start is a no-op
    assert safe.watchdog_running
    deadline = time.monotonic() + 2.0
    while inner.n_commands < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inner.n_commands == 2
    assert [e.kind for e in safe.events].count("watchdog_hold") == 1
    safe.disconnect()
    assert not safe.watchdog_running
    with pytest.raises(ConfigError, match="period_s"):
        safe.start_watchdog(period_s=0.0)


# ------------------------------------------------------------------ event log
def test_event_log_records_every_clip_and_stop(tmp_path):
    path = tmp_path / "logs" / "safety.jsonl"
    config = SafetyConfig(
        **BOX, max_step_translation_m=0.01, max_speed_m_s=10.0, event_log_path=str(path)
    )
    safe, inner = _safe(config)
    safe.send_action(np.array([5.0, 0.0, 0.3, math.pi, 0.0, 0.0]))  # box + step clip
    with pytest.raises(NonFiniteError):
        safe.send_action(np.array([0.4, np.nan, 0.3, np.inf, 0.0, 0.0]))
    safe.stop()
    safe.recover()
    inner.inject_wrench(np.array([0.0, 0.0, 500.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ProtectiveStop):
        safe.send_action(np.array(HOME))
    events = safe.events
    kinds = [e.kind for e in events]
    assert kinds == [
        "clip",
        "clip",
        "non_finite_command",
        "protective_stop",
        "recover",
        "protective_stop",
    ]
    assert [e.detail["limit"] for e in events[:2]] == ["workspace", "max_step_translation_m"]
    assert events[0].detail["requested"] == [5.0, 0.0, 0.3]
    assert events[0].detail["sent"] == [0.7, 0.0, 0.3]
    assert events[3].detail["reason"] == "stop_requested"
    assert events[5].detail["reason"] == "force_limit"
    assert events[5].detail["force_n"] == pytest.approx(500.0)

    # Flushed as they happen: readable before the arm is closed.
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["kind"] for r in records] == kinds
    assert records[2]["detail"]["requested"] == [0.4, "nan", 0.3, "inf", 0.0, 0.0]
    assert all(isinstance(e, SafetyEvent) for e in events)
    safe.disconnect()
    # Appends across sessions rather than overwriting.
    safe2, _ = _safe(config)
    safe2.stop()
    safe2.disconnect()
    assert len(path.read_text().splitlines()) == len(lines) + 1


def test_events_in_memory_are_bounded():
    config = SafetyConfig(**BOX, max_step_translation_m=0.001, max_events=5)
    safe, _ = _safe(config)
    for _ in range(20):
        safe.send_action(np.array([0.6, 0.0, 0.3, math.pi, 0.0, 0.0]))
    assert len(safe.events) == 5


# ------------------------------------------------------------------ lifecycle and config
def test_send_before_connect_and_wrong_shape():
    safe = SafeArm(FakeForceArm(), SafetyConfig(**BOX))
    with pytest.raises(NotConnectedError):
        safe.send_action(np.array(HOME))
    safe.connect()
    with pytest.raises(ValueError, match=r"\(6,\)"):
        safe.send_action(np.zeros(7))
    safe.disconnect()
    safe.disconnect()


def test_latched_stop_survives_reconnect():
    safe, inner = _safe(SafetyConfig(**BOX))
    safe.stop()
    safe.disconnect()
    safe.connect()
    assert safe.is_stopped
    with pytest.raises(ProtectiveStop):
        safe.send_action(np.array(HOME))
    safe.recover()
    safe.send_action(np.array(HOME))
    assert inner.n_commands == 1


@pytest.mark.parametrize(
    ("options", "name"),
    [
        (dict(workspace_min=(0.0, 0.0, 1.0), workspace_max=(1.0, 1.0, 1.0)), "workspace_min[2]"),
        (dict(workspace_min=(0.0, 0.0)), "workspace_min"),
        (dict(workspace_max=(0.0, 0.0, math.inf)), "workspace_max"),
        (dict(workspace_max="big"), "workspace_max"),
        (dict(max_step_translation_m=0.0), "max_step_translation_m"),
        (dict(max_step_rotation_rad=-0.1), "max_step_rotation_rad"),
        (dict(max_speed_m_s=math.inf), "max_speed_m_s"),
        (dict(max_angular_speed_rad_s=math.nan), "max_angular_speed_rad_s"),
        (dict(max_force_n="50"), "max_force_n"),
        (dict(max_torque_nm=True), "max_torque_nm"),
        (dict(watchdog_timeout_s=0), "watchdog_timeout_s"),
        (dict(event_log_path=3), "event_log_path"),
        (dict(max_events=0), "max_events"),
    ],
)
def test_config_validation_messages(options, name):
    with pytest.raises(ConfigError) as info:
        SafetyConfig(**options)
    message = str(info.value)
    assert name in message and "\n" not in message, message


def test_config_normalises_values():
    config = SafetyConfig(workspace_min=[0, 0, 0], workspace_max=np.ones(3), max_force_n=30)
    assert config.workspace_min == (0.0, 0.0, 0.0)
    assert config.workspace_max == (1.0, 1.0, 1.0)
    assert isinstance(config.max_force_n, float)
