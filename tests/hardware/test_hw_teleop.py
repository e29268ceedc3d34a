"""Teleop devices: the contract for each, plus deadzone, scaling, buttons and intervention."""

from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np
import pytest

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware import make_teleop
from robopref.hardware.base import ArmObservation, HardwareError, NotConnectedError
from robopref.hardware.fake.teleop import FakeSpaceMouse
from robopref.hardware.teleop import (
    JS_EVENT_AXIS,
    JS_EVENT_BUTTON,
    JS_EVENT_INIT,
    GamepadConfig,
    GamepadTeleop,
    KeyboardConfig,
    KeyboardTeleop,
    ScriptedConfig,
    ScriptedTeleop,
    SpaceMouseConfig,
    SpaceMouseTeleop,
    apply_deadzone,
    pack_js_event,
)
from robopref.hardware.testing import TeleopContract


def wait_until(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def observation(tcp=(0.4, 0.0, 0.3, np.pi, 0.0, 0.0), wrench=(0, 0, 0, 0, 0, 0)):
    return ArmObservation(
        joint_positions=np.zeros(6),
        joint_velocities=np.zeros(6),
        tcp_pose=np.asarray(tcp, dtype=np.float64),
        wrench=np.asarray(wrench, dtype=np.float64),
        timestamp=time.monotonic(),
    )


@pytest.fixture
def pipes():
    """Pipes created by a test, closed after it: ``new()`` -> (read_fd, write_fd)."""
    opened: list[int] = []

    class Pipes:
        @staticmethod
        def new() -> tuple[int, int]:
            r, w = os.pipe()
            opened.extend([r, w])
            return r, w

    yield Pipes
    for fd in opened:
        with contextlib.suppress(OSError):  # a test may have closed its end already
            os.close(fd)


def settled_read(teleop, predicate, timeout: float = 2.0):
    """Reads until ``predicate(command)`` holds (the reader thread is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        command = teleop.read()
        if predicate(command) or time.monotonic() > deadline:
            return command
        time.sleep(0.002)


# ----------------------------------------------------------------------------- contracts


class TestKeyboardContract(TeleopContract):
    @pytest.fixture
    def make_teleop(self, pipes):
        return lambda: KeyboardTeleop(KeyboardConfig(), source=pipes.new()[0])


class TestSpaceMouseContract(TeleopContract):
    @pytest.fixture
    def make_teleop(self):
        return lambda: SpaceMouseTeleop(SpaceMouseConfig(), backend=FakeSpaceMouse())


class TestGamepadContract(TeleopContract):
    @pytest.fixture
    def make_teleop(self, pipes):
        return lambda: GamepadTeleop(GamepadConfig(), source=pipes.new()[0])


class TestScriptedContract(TeleopContract):
    @pytest.fixture
    def make_teleop(self):
        return lambda: ScriptedTeleop(ScriptedConfig(), policy=lambda obs: np.full(6, 0.001))


# ------------------------------------------------------------------------------ deadzone


def test_deadzone_zeroes_small_and_rescales_the_rest():
    out = apply_deadzone(np.array([0.05, -0.1, 0.55, -1.0, 1.5, 0.0]), 0.1)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, -1.0, 1.0, 0.0])
    np.testing.assert_allclose(apply_deadzone(np.array([0.3] * 6), 0.0), [0.3] * 6)


# ------------------------------------------------------------------------------ keyboard


def test_keyboard_keys_map_to_axes_and_scale(pipes):
    r, w = pipes.new()
    config = KeyboardConfig(translation_scale=0.01, rotation_scale=0.1, start_engaged=True)
    with KeyboardTeleop(config, source=r) as teleop:
        os.write(w, b"wajo")
        command = settled_read(teleop, lambda c: np.count_nonzero(c.delta_pose) == 4)
        np.testing.assert_allclose(command.delta_pose, [0.01, 0.01, 0, 0, 0.1, -0.1])
        assert command.enabled and command.intervention
        # Motion is one tick per press: the next read holds still.
        np.testing.assert_allclose(teleop.read().delta_pose, 0.0)
        os.write(w, b"sssdfik")  # repeated presses saturate at full deflection
        command = settled_read(teleop, lambda c: np.count_nonzero(c.delta_pose) == 3)
        np.testing.assert_allclose(command.delta_pose, [-0.01, -0.01, -0.01, 0, 0, 0])


def test_keyboard_engage_toggle_gates_motion(pipes):
    r, w = pipes.new()
    with KeyboardTeleop(KeyboardConfig(), source=r) as teleop:
        os.write(w, b"w")
        time.sleep(0.1)
        command = teleop.read()
        assert not command.enabled and not command.intervention
        np.testing.assert_allclose(command.delta_pose, 0.0)
        os.write(w, b" w")
        command = settled_read(teleop, lambda c: c.delta_pose[0] > 0)
        assert command.enabled and command.intervention
        assert command.delta_pose[0] == pytest.approx(0.005)
        os.write(w, b" ")
        assert wait_until(lambda: not teleop.read().enabled)


def test_keyboard_buttons_once_per_press_and_escapes_ignored(pipes):
    r, w = pipes.new()
    with KeyboardTeleop(KeyboardConfig(start_engaged=True), source=r) as teleop:
        os.write(w, b"\n\x7fnq")
        command = settled_read(teleop, lambda c: len(c.buttons) == 4)
        assert command.buttons == {"save", "discard", "rerecord", "quit"}
        assert teleop.read().buttons == frozenset()
        os.write(w, b"x\x1b[D\x1b[A")  # Backspace alternative, then left and up arrows
        command = settled_read(teleop, lambda c: c.buttons)
        assert command.buttons == {"discard"}
        time.sleep(0.05)
        command = teleop.read()
        np.testing.assert_allclose(command.delta_pose, 0.0)  # 'D' of the arrow is not 'd'


def test_keyboard_read_needs_connect(pipes):
    teleop = KeyboardTeleop(KeyboardConfig(), source=pipes.new()[0])
    with pytest.raises(NotConnectedError):
        teleop.read()


def test_keyboard_sets_and_restores_cbreak_on_a_tty():
    termios = pytest.importorskip("termios")
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        assert before[3] & termios.ICANON
        with KeyboardTeleop(KeyboardConfig(start_engaged=True), source=slave) as teleop:
            assert not termios.tcgetattr(slave)[3] & termios.ICANON
            os.write(master, b"r")  # no Enter needed in cbreak mode
            command = settled_read(teleop, lambda c: c.delta_pose[2] > 0)
            assert command.delta_pose[2] == pytest.approx(0.005)
        assert termios.tcgetattr(slave)[3] & termios.ICANON
    finally:
        os.close(master)
        os.close(slave)


def test_keyboard_without_stdin_names_the_fix(monkeypatch):
    class NoStdin:
        def fileno(self):
            raise ValueError("redirected")

    monkeypatch.setattr(sys, "stdin", NoStdin())
    with pytest.raises(HardwareError, match="interactive shell"):
        KeyboardTeleop(KeyboardConfig()).connect()


# ---------------------------------------------------------------------------- spacemouse


def test_spacemouse_maps_state_with_deadzone_and_scale():
    backend = FakeSpaceMouse()
    config = SpaceMouseConfig(translation_scale=0.01, rotation_scale=0.1, deadzone=0.2)
    with SpaceMouseTeleop(config, backend=backend) as teleop:
        call = backend.open_calls[0]
        assert call["nonblocking"] is True
        assert call["axis_convention"] == backend.AxisConvention.HID_Z_UP
        backend.set_state(x=0.6, y=-1.0, z=0.1, roll=0.0, pitch=1.0, yaw=-0.6)
        command = settled_read(teleop, lambda c: c.delta_pose[0] != 0)
        np.testing.assert_allclose(command.delta_pose, [0.005, -0.01, 0.0, 0.0, 0.1, -0.05])
        assert command.enabled
        assert command.intervention  # touching the puck takes over
        backend.set_state(x=0.1, y=0.0, z=0.0, pitch=0.0, yaw=0.0)
        command = settled_read(teleop, lambda c: not c.intervention)
        np.testing.assert_allclose(command.delta_pose, 0.0)
    assert backend.closed == 1


def test_spacemouse_axis_signs_flip_axes():
    backend = FakeSpaceMouse()
    config = SpaceMouseConfig(deadzone=0.0, axis_signs=(-1, 1, 1, 1, 1, -1))
    with SpaceMouseTeleop(config, backend=backend) as teleop:
        backend.set_state(x=0.5, yaw=0.5)
        command = settled_read(teleop, lambda c: c.delta_pose[0] != 0)
        assert command.delta_pose[0] < 0 and command.delta_pose[5] < 0


def test_spacemouse_buttons_on_press_and_enable_button():
    backend = FakeSpaceMouse(buttons=2)
    config = SpaceMouseConfig(enable_button=1, buttons={0: "save"})
    with SpaceMouseTeleop(config, backend=backend) as teleop:
        backend.set_state(x=1.0)
        time.sleep(0.05)
        command = teleop.read()
        assert not command.enabled and not command.intervention
        np.testing.assert_allclose(command.delta_pose, 0.0)
        backend.set_state(buttons=[0, 1])
        command = settled_read(teleop, lambda c: c.enabled)
        assert command.intervention and command.delta_pose[0] == pytest.approx(0.005)
        assert command.buttons == frozenset()  # the enable button is not a named button
        backend.set_state(buttons=[1, 1])
        command = settled_read(teleop, lambda c: c.buttons)
        assert command.buttons == {"save"}
        time.sleep(0.05)  # still held: no second press
        assert teleop.read().buttons == frozenset()


def test_spacemouse_button_held_at_connect_is_not_a_press():
    backend = FakeSpaceMouse()
    backend.set_state(buttons=[1, 0])
    with SpaceMouseTeleop(SpaceMouseConfig(), backend=backend) as teleop:
        time.sleep(0.05)
        assert teleop.read().buttons == frozenset()


def test_spacemouse_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspacemouse", None)  # makes the import fail
    with pytest.raises(HardwareError, match=r"pip install 'robopref\[spacemouse\]'"):
        SpaceMouseTeleop(SpaceMouseConfig()).connect()


def test_spacemouse_open_failure_is_a_hardware_error():
    backend = FakeSpaceMouse()
    backend.fail_with = RuntimeError("No connected or supported devices found.")
    teleop = SpaceMouseTeleop(SpaceMouseConfig(), backend=backend)
    with pytest.raises(HardwareError, match="No connected"):
        teleop.connect()
    assert not teleop.is_connected


def test_spacemouse_reader_failure_surfaces_in_read():
    backend = FakeSpaceMouse()
    with SpaceMouseTeleop(SpaceMouseConfig(), backend=backend) as teleop:

        def broken():
            raise OSError("device unplugged")

        backend.device.read = broken
        assert wait_until(lambda: teleop._failure is not None)
        with pytest.raises(HardwareError, match="unplugged"):
            teleop.read()


# ------------------------------------------------------------------------------- gamepad


def test_gamepad_events_from_a_pipe(pipes):
    r, w = pipes.new()
    config = GamepadConfig(translation_scale=0.01, deadzone=0.0)
    with GamepadTeleop(config, source=r) as teleop:
        os.write(w, pack_js_event(-32767, JS_EVENT_AXIS, 1))  # left stick fully forward
        os.write(w, pack_js_event(16384, JS_EVENT_AXIS, 0))  # half right
        time.sleep(0.05)
        command = teleop.read()
        assert not command.enabled  # LB not held
        np.testing.assert_allclose(command.delta_pose, 0.0)
        os.write(w, pack_js_event(1, JS_EVENT_BUTTON, 4))
        command = settled_read(teleop, lambda c: c.enabled)
        assert command.intervention
        np.testing.assert_allclose(command.delta_pose[:2], [0.01, -0.01 * 16384 / 32767])
        # A frame split across writes is reassembled.
        event = pack_js_event(1, JS_EVENT_BUTTON, 0)
        os.write(w, event[:3])
        time.sleep(0.02)
        os.write(w, event[3:] + pack_js_event(0, JS_EVENT_BUTTON, 0))
        command = settled_read(teleop, lambda c: c.buttons)
        assert command.buttons == {"save"}


def test_gamepad_deadzone_and_init_events(tmp_path):
    path = tmp_path / "events.bin"
    path.write_bytes(
        pack_js_event(1, JS_EVENT_BUTTON | JS_EVENT_INIT, 0)  # A already down: not a press
        + pack_js_event(1, JS_EVENT_BUTTON | JS_EVENT_INIT, 4)
        + pack_js_event(3000, JS_EVENT_AXIS | JS_EVENT_INIT, 1)  # inside a 0.1 deadzone
        + pack_js_event(32767, JS_EVENT_AXIS, 3)  # right stick full right -> -yaw
        + pack_js_event(1, JS_EVENT_BUTTON, 7)
    )
    fd = os.open(path, os.O_RDONLY)
    try:
        with GamepadTeleop(GamepadConfig(rotation_scale=0.2), source=fd) as teleop:
            command = settled_read(teleop, lambda c: c.delta_pose[5] != 0)
            np.testing.assert_allclose(command.delta_pose, [0, 0, 0, 0, 0, -0.2])
            assert command.buttons == {"quit"}
            assert command.enabled
    finally:
        os.close(fd)


def test_gamepad_missing_device_names_the_fix(tmp_path):
    teleop = GamepadTeleop(GamepadConfig(device=str(tmp_path / "js7")))
    with pytest.raises(HardwareError, match="input"):
        teleop.connect()


def test_gamepad_opens_device_path(tmp_path):
    path = tmp_path / "js0"
    path.write_bytes(pack_js_event(1, JS_EVENT_BUTTON, 4) + pack_js_event(-32767, JS_EVENT_AXIS, 4))
    teleop = make_teleop("gamepad", device=str(path), deadzone=0.0)
    with teleop:
        command = settled_read(teleop, lambda c: c.delta_pose[2] != 0)
        assert command.delta_pose[2] == pytest.approx(0.005)


# ------------------------------------------------------------------------------ scripted


class BatchedExpert:
    """Shaped like a batched scripted expert: act((B, obs_dim)) -> (B, 6)."""

    def __init__(self):
        self.episodes = 0
        self.seen: list[np.ndarray] = []

    def begin_episodes(self, n: int) -> None:
        assert n == 1
        self.episodes += 1

    def act(self, obs: np.ndarray) -> np.ndarray:
        assert obs.ndim == 2 and obs.shape[0] == 1
        self.seen.append(obs[0].copy())
        return np.tile([0.5, 0.0, -0.5, 0.0, 0.0, 1.0], (obs.shape[0], 1))


def test_scripted_uses_batched_policy_and_environment_state():
    expert = BatchedExpert()
    config = ScriptedConfig(translation_scale=0.01, rotation_scale=0.1)
    with ScriptedTeleop(config, policy=expert) as teleop:
        assert expert.episodes == 1
        teleop.observe(observation(wrench=(0, 0, 5.0, 0, 0, 0)), environment_state=[7.0, 8.0])
        command = teleop.read()
        np.testing.assert_allclose(command.delta_pose, [0.005, 0, -0.005, 0, 0, 0.1])
        assert command.enabled and not command.intervention
        np.testing.assert_allclose(expert.seen[0][:6], [0.4, 0.0, 0.3, np.pi, 0, 0])
        np.testing.assert_allclose(expert.seen[0][6:12], [0, 0, 5.0, 0, 0, 0], atol=1e-6)
        np.testing.assert_allclose(expert.seen[0][12:], [7.0, 8.0])
        # Without a new observation the policy does not act again.
        np.testing.assert_allclose(teleop.read().delta_pose, 0.0)
        teleop.set_environment_state(np.array([1.0]))
        teleop.observe(observation())
        teleop.read()
        assert expert.seen[-1].shape == (13,)


def test_scripted_execution_noise_reports_the_clean_command_as_intended():
    noisy = ScriptedConfig(translation_scale=0.01, rotation_scale=0.1, execution_noise=0.002)
    sent, meant = [], []
    with ScriptedTeleop(noisy, policy=BatchedExpert()) as teleop:
        assert teleop.reports_intended_action
        for _ in range(400):
            teleop.observe(observation())
            command = teleop.read()
            sent.append(command.delta_pose)
            meant.append(command.intended)
        idle = teleop.read()  # no new observation: no motion, and no noise on it
        np.testing.assert_array_equal(idle.delta_pose, 0.0)
    sent, meant = np.array(sent), np.array(meant)
    np.testing.assert_allclose(meant, np.tile([0.005, 0, -0.005, 0, 0, 0.1], (400, 1)))
    noise = sent - meant
    assert noise.std() == pytest.approx(0.002, rel=0.1) and abs(noise.mean()) < 3e-4
    # Without execution noise what is sent is what is meant; the same seed, the same noise.
    with ScriptedTeleop(ScriptedConfig(), policy=BatchedExpert()) as clean:
        clean.observe(observation())
        command = clean.read()
        np.testing.assert_array_equal(command.delta_pose, command.intended)
    with ScriptedTeleop(noisy, policy=BatchedExpert()) as again:
        again.observe(observation())
        np.testing.assert_array_equal(again.read().delta_pose, sent[0])


@pytest.mark.parametrize("noise", [-0.001, float("nan"), "loud"])
def test_scripted_execution_noise_is_validated(noise):
    with pytest.raises(ConfigError, match="execution_noise"):
        ScriptedConfig(execution_noise=noise)


def test_scripted_save_every_and_max_episodes_then_quit():
    expert = BatchedExpert()
    teleop = ScriptedTeleop(ScriptedConfig(save_every=3, max_episodes=2), policy=expert)
    teleop.connect()
    pressed = []
    for _ in range(8):
        teleop.observe(observation())
        pressed.append(teleop.read().buttons)
    assert pressed[2] == {"save"} and pressed[5] == {"save"}
    assert pressed[6] == {"quit"}
    assert all(not p for i, p in enumerate(pressed) if i not in (2, 5, 6))
    assert expert.episodes == 3  # one at connect, one after each save
    assert teleop.episodes_saved == 2


def test_scripted_done_callable_saves_once_until_rearmed():
    solved = {"now": False}
    teleop = ScriptedTeleop(
        ScriptedConfig(), policy=lambda obs: np.zeros(6), done=lambda obs, env: solved["now"]
    )
    with teleop:
        teleop.observe(observation())
        assert teleop.read().buttons == frozenset()
        solved["now"] = True
        teleop.observe(observation())
        assert teleop.read().buttons == {"save"}
        teleop.observe(observation())  # still solved before the recorder resets the task
        assert teleop.read().buttons == frozenset()
        solved["now"] = False
        teleop.observe(observation())
        teleop.read()
        solved["now"] = True
        teleop.observe(observation())
        assert teleop.read().buttons == {"save"}


def test_scripted_schedule_and_intervention_ranges():
    config = ScriptedConfig(
        buttons_schedule={1: "discard", 3: ["rerecord", "quit"]}, intervention_ticks=((0, 1),)
    )
    with ScriptedTeleop(config) as teleop:
        commands = [teleop.read() for _ in range(4)]
    assert [c.buttons for c in commands] == [
        frozenset(),
        {"discard"},
        frozenset(),
        {"rerecord", "quit"},
    ]
    # Episode ticks restart after the discard: tick 0 of each episode is an intervention.
    assert [c.intervention for c in commands] == [True, False, True, False]
    np.testing.assert_allclose(commands[0].delta_pose, 0.0)  # no policy: hold still


def test_scripted_rejects_bad_policy_output():
    teleop = ScriptedTeleop(ScriptedConfig(), policy=lambda obs: np.array([np.nan] * 6))
    teleop.connect()
    with pytest.raises(NonFiniteError):
        teleop.observe(observation())
    teleop = ScriptedTeleop(ScriptedConfig(), policy=lambda obs: np.zeros(4))
    teleop.connect()
    with pytest.raises(ConfigError, match="6 values"):
        teleop.observe(observation())


def test_registry_builds_every_teleop():
    assert isinstance(make_teleop("keyboard"), KeyboardTeleop)
    assert isinstance(make_teleop("spacemouse", deadzone=0.2), SpaceMouseTeleop)
    assert isinstance(make_teleop("gamepad"), GamepadTeleop)
    scripted = make_teleop("scripted", save_every=5, buttons_schedule={0: "save"})
    assert isinstance(scripted, ScriptedTeleop)


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (KeyboardConfig, {"translation_scale": -1}),
        (SpaceMouseConfig, {"deadzone": 1.0}),
        (SpaceMouseConfig, {"buttons": {0: "launch"}}),
        (SpaceMouseConfig, {"enable_button": 0}),  # clashes with button 0 = save
        (SpaceMouseConfig, {"axis_signs": (1, 1)}),
        (GamepadConfig, {"axis_map": (0, 1, 2)}),
        (GamepadConfig, {"device": ""}),
        (ScriptedConfig, {"observation_keys": ("pose",)}),
        (ScriptedConfig, {"save_every": 0}),
        (ScriptedConfig, {"buttons_schedule": {2: "explode"}}),
        (ScriptedConfig, {"intervention_ticks": ((3, 1),)}),
    ],
)
def test_configs_reject_bad_values(cls, options):
    with pytest.raises(ConfigError):
        cls(**options)
