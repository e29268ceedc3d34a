"""NetFTSensor against FakeNetFTServer: the sensor contract plus the RDT protocol details."""

from __future__ import annotations

import socket
import struct
import time

import numpy as np
import pytest

from robopref.errors import ConfigError
from robopref.hardware import make_sensor
from robopref.hardware.base import HardwareError, NotConnectedError, SensorStatus
from robopref.hardware.fake.netft import FakeNetFTServer
from robopref.hardware.netft import (
    CMD_SET_SOFTWARE_BIAS,
    CMD_START_REALTIME,
    CMD_STOP,
    RECORD,
    NetFTConfig,
    NetFTSensor,
    rdt_request,
    sequence_delta,
)
from robopref.hardware.testing import SensorContract

LOAD = np.array([1.5, -2.25, 10.0, 0.125, -0.5, 0.03])


def wait_until(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


@pytest.fixture
def box():
    server = FakeNetFTServer(rate_hz=500.0, wrench=LOAD)
    try:
        yield server
    finally:
        server.close()


def config_for(box: FakeNetFTServer, **overrides) -> NetFTConfig:
    return NetFTConfig(host=box.host, port=box.port, **overrides)


@pytest.fixture
def sensor(box):
    sensor = NetFTSensor(config_for(box))
    sensor.start()
    try:
        yield sensor
    finally:
        sensor.stop()


class TestNetFTContract(SensorContract):
    @pytest.fixture
    def make_sensor(self, box):
        return lambda: NetFTSensor(config_for(box))


class TestNetFTHardwareBiasContract(SensorContract):
    @pytest.fixture
    def make_sensor(self, box):
        return lambda: NetFTSensor(config_for(box, hardware_bias=True))


def test_request_bytes_match_the_rdt_layout():
    assert rdt_request(CMD_START_REALTIME, 0) == bytes.fromhex("1234 0002 00000000")
    assert rdt_request(CMD_STOP) == bytes.fromhex("1234 0000 00000000")
    assert rdt_request(CMD_SET_SOFTWARE_BIAS) == bytes.fromhex("1234 0042 00000000")
    assert rdt_request(CMD_START_REALTIME, 1000) == struct.pack(">HHI", 0x1234, 2, 1000)
    assert RECORD.size == 36


def test_start_and_stop_send_the_exact_requests(box):
    sensor = NetFTSensor(config_for(box, sample_count=0))
    sensor.start()
    assert wait_until(lambda: box.streaming)
    sensor.stop()
    assert wait_until(lambda: not box.streaming)
    assert box.requests[0] == struct.pack(">HHI", 0x1234, 0x0002, 0)
    assert box.requests[-1] == struct.pack(">HHI", 0x1234, 0x0000, 0)


def test_counts_convert_to_newtons_and_newton_metres():
    cpf, cpt = 1_000_000.0, 250_000.0
    with FakeNetFTServer(counts_per_force=cpf, counts_per_torque=cpt, wrench=LOAD) as box:
        config = config_for(box, counts_per_force=cpf, counts_per_torque=cpt)
        with NetFTSensor(config) as sensor:
            reading = sensor.read()
    np.testing.assert_allclose(reading.wrench, LOAD, atol=1e-5)
    assert reading.ok


def test_wrong_counts_per_unit_scales_reading(box):
    # A mismatch with the box's calibration shows up as a scaled reading, so the
    # conversion is really applied (not the fake's own numbers passed through).
    with NetFTSensor(config_for(box, counts_per_force=2e6, counts_per_torque=4e6)) as sensor:
        reading = sensor.read()
    np.testing.assert_allclose(reading.wrench[:3], LOAD[:3] / 2, atol=1e-5)
    np.testing.assert_allclose(reading.wrench[3:], LOAD[3:] / 4, atol=1e-5)


def test_load_changes_show_in_later_readings(sensor, box):
    box.set_wrench(-LOAD)
    assert wait_until(lambda: np.allclose(sensor.read().wrench, -LOAD, atol=1e-5))


def test_sequence_gaps_count_as_lost(sensor, box):
    assert wait_until(lambda: sensor.stats.received >= 3)
    before = sensor.stats.lost
    box.drop_next(5)
    assert wait_until(lambda: sensor.stats.lost - before >= 5)
    time.sleep(0.02)
    assert sensor.stats.lost - before == 5
    assert sensor.stats.reordered == 0


def test_reordered_record_is_dropped_not_applied(sensor, box):
    assert wait_until(lambda: sensor.stats.received >= 3)
    box.reorder_next()
    assert wait_until(lambda: sensor.stats.reordered == 1)
    # The late record was not applied, and its slot was not counted as lost after all.
    last = sensor.read().sequence
    assert wait_until(lambda: sensor.read().sequence > last)
    assert sensor.stats.reordered == 1


def test_sequence_wraps_around_32_bits():
    assert sequence_delta(5, 3) == 2
    assert sequence_delta(3, 5) == -2
    assert sequence_delta(0, 0xFFFFFFFF) == 1
    assert sequence_delta(2, 0xFFFFFFFE) == 4
    assert sequence_delta(0xFFFFFFFF, 0) == -1


def test_wrap_around_in_a_stream_keeps_sequence_increasing():
    with FakeNetFTServer(rate_hz=1000.0, wrench=LOAD, first_sequence=0xFFFFFFF8) as box:
        sensor = NetFTSensor(config_for(box))
        with sensor:
            first = sensor.read().sequence
            assert first >= 0xFFFFFFF8
            assert wait_until(lambda: sensor.read().sequence > 0xFFFFFFFF + 5)
            stats = sensor.stats
    assert stats.lost == 0 and stats.reordered == 0
    assert stats.received >= 13


def test_nonzero_status_word_flags_device_error(sensor, box):
    assert sensor.read().ok
    box.set_status(0x80010000)
    assert wait_until(lambda: SensorStatus.DEVICE_ERROR in sensor.read().status)
    assert sensor.stats.status == 0x80010000
    box.set_status(0)
    assert wait_until(lambda: sensor.read().ok)


def test_paused_stream_reads_stale(box):
    with NetFTSensor(config_for(box, stale_timeout_s=0.03)) as sensor:
        assert sensor.read().ok
        box.pause()
        assert wait_until(lambda: SensorStatus.STALE in sensor.read().status, timeout=1.0)
        held = sensor.read()
        np.testing.assert_allclose(held.wrench, LOAD, atol=1e-5)  # last good value kept
        box.pause(False)
        assert wait_until(lambda: sensor.read().ok)


def test_hardware_bias_sends_command_0x0042(box):
    with NetFTSensor(config_for(box, hardware_bias=True, bias_samples=5)) as sensor:
        sensor.bias()
        assert CMD_SET_SOFTWARE_BIAS in box.commands()
        assert np.max(np.abs(sensor.read().wrench)) < 1e-6
        box.set_wrench(LOAD + np.array([0, 0, 3.0, 0, 0, 0]))
        assert wait_until(lambda: abs(sensor.read().wrench[2] - 3.0) < 1e-5)


def test_software_bias_sends_no_command(sensor, box):
    sensor.bias()
    assert CMD_SET_SOFTWARE_BIAS not in box.commands()
    np.testing.assert_allclose(sensor.read().wrench, 0.0, atol=1e-6)
    box.set_wrench(LOAD * 2)
    assert wait_until(lambda: np.allclose(sensor.read().wrench, LOAD, atol=1e-5))


def test_sample_count_limits_the_stream(box):
    with NetFTSensor(config_for(box, sample_count=7, stale_timeout_s=0.02)) as sensor:
        assert wait_until(lambda: SensorStatus.STALE in sensor.read().status)
        assert sensor.stats.received + sensor.stats.lost == 7
    assert box.requests[0] == struct.pack(">HHI", 0x1234, 0x0002, 7)


def test_silent_host_fails_start_with_a_clear_error():
    # A bound socket that never answers stands in for a box that is off.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        config = NetFTConfig(host="127.0.0.1", port=silent.getsockname()[1], start_timeout_s=0.1)
        sensor = NetFTSensor(config)
        with pytest.raises(HardwareError, match="sent no RDT record"):
            sensor.start()
        assert not sensor.is_running
        with pytest.raises(NotConnectedError):
            sensor.read()
    finally:
        silent.close()


def test_malformed_datagrams_are_counted(sensor):
    sensor._ingest(b"\x00" * 20, time.monotonic())
    assert sensor.stats.malformed == 1


def test_registry_builds_the_sensor(box):
    sensor = make_sensor("netft", host=box.host, port=box.port, stale_timeout_s=0.2)
    assert isinstance(sensor, NetFTSensor)
    with sensor:
        assert sensor.read().ok


@pytest.mark.parametrize(
    "options",
    [
        {"host": ""},
        {"port": 0},
        {"counts_per_force": 0},
        {"counts_per_torque": -1.0},
        {"stale_timeout_s": 0},
        {"bias_samples": 0},
        {"sample_count": -1},
    ],
)
def test_config_rejects_bad_values(options):
    with pytest.raises(ConfigError):
        NetFTConfig(**options)


def test_restarted_sequence_is_read_again_within_the_stale_timeout(box):
    stale_s = 0.2
    with NetFTSensor(config_for(box, stale_timeout_s=stale_s)) as sensor:
        assert wait_until(lambda: sensor.read().sequence > 20)
        before = sensor.read().sequence
        box.restart_sequence()
        box.set_wrench(2 * LOAD)
        restarted = time.monotonic()
        assert wait_until(
            lambda: np.allclose(sensor.read().wrench, 2 * LOAD, atol=1e-5), timeout=stale_s
        ), "readings did not follow the restarted stream within stale_timeout_s"
        assert time.monotonic() - restarted < stale_s
        assert sensor.read().ok
        assert sensor.read().sequence > before  # the local sequence never goes back
        stats = sensor.stats
    assert stats.restarts == 1 and stats.reordered == 0


def test_rebooted_box_is_asked_again_and_read_within_the_stale_timeout(box):
    stale_s = 0.2
    with NetFTSensor(config_for(box, stale_timeout_s=stale_s)) as sensor:
        assert wait_until(lambda: sensor.read().sequence > 20)
        box.pause()  # the box goes down...
        box.reboot()
        assert wait_until(lambda: SensorStatus.STALE in sensor.read().status, timeout=1.0)
        box.set_wrench(3 * LOAD)
        box.reboot()  # ...and comes back having heard none of the requests sent meanwhile
        box.pause(False)
        back = time.monotonic()
        assert wait_until(
            lambda: sensor.read().ok and np.allclose(sensor.read().wrench, 3 * LOAD, atol=1e-5),
            timeout=stale_s,
        ), "a rebooted box was not read again within stale_timeout_s"
        assert time.monotonic() - back < stale_s
        assert sensor.stats.restarts == 1


def test_a_single_late_record_is_still_a_reordering_not_a_restart(sensor, box):
    assert wait_until(lambda: sensor.stats.received > 5)
    box.reorder_next()
    assert wait_until(lambda: sensor.stats.reordered == 1)
    assert wait_until(lambda: sensor.stats.received > 20)
    assert sensor.stats.restarts == 0
