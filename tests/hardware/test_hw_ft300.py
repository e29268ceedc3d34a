"""FT300Sensor against FakeFT300 on a pty: the sensor contract plus the stream-mode framing."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robopref.errors import ConfigError
from robopref.hardware import make_sensor
from robopref.hardware.base import HardwareError, NotConnectedError, SensorStatus
from robopref.hardware.fake.ft300 import FakeFT300
from robopref.hardware.ft300 import (
    FrameParser,
    FT300Config,
    FT300Sensor,
    crc16_modbus,
    encode_frame,
    modbus_write_register,
)
from robopref.hardware.testing import SensorContract

LOAD = np.array([12.34, -5.6, 100.0, 0.123, -1.5, 0.004])


def wait_until(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.003)
    return predicate()


@pytest.fixture
def fake():
    device = FakeFT300(rate_hz=200.0, wrench=LOAD)
    try:
        yield device
    finally:
        device.close()


@pytest.fixture
def sensor(fake):
    sensor = FT300Sensor(FT300Config(port=fake.port))
    sensor.start()
    try:
        yield sensor
    finally:
        sensor.stop()


class TestFT300Contract(SensorContract):
    @pytest.fixture
    def make_sensor(self, fake):
        return lambda: FT300Sensor(FT300Config(port=fake.port))


def test_crc_matches_the_manuals_stream_start_frame():
    # Robotiq FT 300 manual: "09 10 01 9A 00 01 02 02 00 CD CA" starts the data stream.
    assert modbus_write_register(9, 410, 0x0200) == bytes.fromhex("0910019A0001020200CDCA")
    # Standard Modbus check value of the ASCII digits 1..9.
    assert crc16_modbus(b"123456789") == 0x4B37


def test_frame_layout_and_scaling():
    frame = encode_frame(LOAD)
    assert len(frame) == 16 and frame[:2] == b"\x20\x4e"
    assert int.from_bytes(frame[2:4], "little", signed=True) == 1234  # Fx in 1/100 N
    assert int.from_bytes(frame[8:10], "little", signed=True) == 123  # Mx in 1/1000 N*m
    assert int.from_bytes(frame[14:16], "little") == crc16_modbus(frame[:14])
    parser = FrameParser()
    (wrench,) = parser.feed(frame)
    np.testing.assert_allclose(wrench, LOAD, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    noise=st.binary(max_size=40),
    chunk=st.integers(min_value=1, max_value=17),
    values=st.lists(st.integers(-32768, 32767), min_size=6, max_size=6),
)
def test_parser_resyncs_after_any_garbage(noise, chunk, values):
    lsb = np.array([0.01] * 3 + [0.001] * 3)
    wrench = np.array(values) * lsb
    good = encode_frame(wrench)
    stream = noise + good + good
    parser = FrameParser()
    found = []
    for i in range(0, len(stream), chunk):
        found += parser.feed(stream[i : i + chunk])
    # Garbage may by chance hold a valid frame; the two real ones always come out last.
    assert len(found) >= 2
    for w in found[-2:]:
        np.testing.assert_allclose(w, wrench, atol=1e-9)


def test_bad_crc_is_counted_and_skipped():
    bad = bytearray(encode_frame(LOAD))
    bad[5] ^= 0x01
    parser = FrameParser()
    out = parser.feed(bytes(bad) + encode_frame(-LOAD))
    assert parser.bad_crc == 1
    assert len(out) == 1
    np.testing.assert_allclose(out[0], -LOAD, atol=1e-3)


def test_start_sends_stop_bytes_then_the_modbus_write(sensor, fake):
    assert fake.start_commands == 1
    sent = bytes(fake.received)
    start = modbus_write_register(9, 410, 0x0200)
    assert sent.endswith(start)
    assert sent[: -len(start)] == b"\xff" * len(sent[: -len(start)])


def test_stop_sends_ff_run_and_the_sensor_stops_streaming(sensor, fake):
    sensor.stop()
    assert wait_until(lambda: not fake.streaming)
    assert fake.stop_commands == 1
    assert bytes(fake.received).endswith(b"\xff" * 50)


def test_reading_is_scaled_to_si(sensor):
    reading = sensor.read()
    np.testing.assert_allclose(reading.wrench, LOAD, atol=1e-3)
    assert reading.ok


def test_garbage_on_the_line_is_skipped(sensor, fake):
    before = sensor.stats
    fake.inject_garbage(b"\x00\x20\x13\x37garbage\x20")
    fake.set_wrench(-LOAD)
    assert wait_until(lambda: np.allclose(sensor.read().wrench, -LOAD, atol=1e-3))
    after = sensor.stats
    assert after.garbage_bytes - before.garbage_bytes >= 12
    assert after.bad_crc == before.bad_crc
    assert sensor.read().ok


def test_single_bad_crc_counted_without_device_error(sensor, fake):
    fake.corrupt_next(1)
    assert wait_until(lambda: sensor.stats.bad_crc >= 1)
    frames = sensor.stats.frames
    assert wait_until(lambda: sensor.stats.frames > frames)
    assert sensor.read().ok


def test_run_of_bad_frames_flags_device_error(fake):
    with FT300Sensor(FT300Config(port=fake.port, bad_frame_limit=3)) as sensor:
        fake.corrupt_next(10_000)
        assert wait_until(lambda: SensorStatus.DEVICE_ERROR in sensor.read().status)
        assert sensor.stats.bad_run >= 3
        fake.clear_faults()
        assert wait_until(lambda: sensor.read().ok)


def test_paused_stream_reads_stale(fake):
    with FT300Sensor(FT300Config(port=fake.port, stale_timeout_s=0.05)) as sensor:
        assert sensor.read().ok
        fake.pause()
        assert wait_until(lambda: SensorStatus.STALE in sensor.read().status)
        np.testing.assert_allclose(sensor.read().wrench, LOAD, atol=1e-3)
        fake.pause(False)
        assert wait_until(lambda: sensor.read().ok)


def test_bias_subtracts_the_mean(sensor, fake):
    sensor.bias()
    np.testing.assert_allclose(sensor.read().wrench, 0.0, atol=1e-9)
    fake.set_wrench(LOAD + np.array([1.0, 0, 0, 0, 0, 0.01]))
    assert wait_until(lambda: np.allclose(sensor.read().wrench, [1.0, 0, 0, 0, 0, 0.01], atol=1e-3))


def test_sensor_already_streaming_without_start_command():
    with FakeFT300(rate_hz=200.0, wrench=LOAD, streaming=True) as fake:
        with FT300Sensor(FT300Config(port=fake.port, start_stream=False)) as sensor:
            np.testing.assert_allclose(sensor.read().wrench, LOAD, atol=1e-3)
        assert fake.start_commands == 0


def test_silent_port_fails_start():
    with FakeFT300() as fake:
        fake.slave_address = 3  # ignores our start command for slave 9
        sensor = FT300Sensor(FT300Config(port=fake.port, start_timeout_s=0.1))
        with pytest.raises(HardwareError, match="no valid frame"):
            sensor.start()
        assert not sensor.is_running
        with pytest.raises(NotConnectedError):
            sensor.read()


def test_missing_port_names_the_fix(tmp_path):
    sensor = FT300Sensor(FT300Config(port=str(tmp_path / "ttyUSB9")))
    with pytest.raises(HardwareError, match="dialout"):
        sensor.start()


def test_regular_file_is_not_a_serial_port(tmp_path):
    path = tmp_path / "not-a-tty"
    path.write_bytes(b"")
    with pytest.raises(HardwareError, match="not a serial port"):
        FT300Sensor(FT300Config(port=str(path))).start()


def test_registry_builds_the_sensor(fake):
    sensor = make_sensor("ft300", port=fake.port)
    assert isinstance(sensor, FT300Sensor)
    with sensor:
        assert sensor.read().ok


@pytest.mark.parametrize(
    "options",
    [
        {"port": ""},
        {"baudrate": 12345},
        {"slave_address": 0},
        {"stale_timeout_s": -1},
        {"bias_samples": 0},
        {"bad_frame_limit": 0},
    ],
)
def test_config_rejects_bad_values(options):
    with pytest.raises(ConfigError):
        FT300Config(**options)
