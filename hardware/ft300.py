"""Robotiq FT 300 force/torque sensor in stream mode over its serial link (USB/RS-485).

Protocol (Robotiq FT 300 manual, "Data stream"): the link runs at 19200 baud, 8N1. Writing
0x0200 to holding register 410 of Modbus RTU slave 9 starts the stream, the frame
``09 10 01 9A 00 01 02 02 00 CD CA`` (function 16, write multiple registers). The sensor
then sends 16-byte frames at about 100 Hz: header ``0x20 0x4E``, six little-endian
``int16`` (Fx, Fy, Fz in 1/100 N; Mx, My, Mz in 1/1000 N*m) and a little-endian Modbus
CRC-16 (poly 0xA001, init 0xFFFF) over the first 14 bytes, header included. A run of 0xFF
bytes (about 0.5 s of them) stops the stream and returns the sensor to Modbus.

The serial port is opened with ``os.open`` and put in raw mode with ``termios``, so no
serial library is needed.
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
import termios
import threading
import time
import tty
from dataclasses import dataclass

import numpy as np

from robopref.errors import ConfigError
from robopref.hardware.base import (
    HardwareError,
    NotConnectedError,
    SensorStatus,
    WrenchReading,
    WrenchSensor,
)

HEADER = b"\x20\x4e"
FRAME_SIZE = 16
FRAME = struct.Struct("<2s6hH")  # header, Fx Fy Fz Mx My Mz, CRC
FORCE_LSB_N = 1 / 100
TORQUE_LSB_NM = 1 / 1000
STREAM_REGISTER = 410
STREAM_START_VALUE = 0x0200
DEFAULT_SLAVE = 9
STOP_BYTES = b"\xff" * 50

_BAUDRATES = {
    rate: getattr(termios, f"B{rate}")
    for rate in (9600, 19200, 38400, 57600, 115200)
    if hasattr(termios, f"B{rate}")
}


def crc16_modbus(data: bytes) -> int:
    """Modbus CRC-16 of ``data`` (reflected polynomial 0xA001, initial value 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def modbus_write_register(slave: int, register: int, value: int) -> bytes:
    """Modbus RTU "write multiple registers" (function 16) frame writing one register, with
    its CRC appended low byte first, as the FT 300 manual's stream-start example."""
    body = struct.pack(">BBHHBH", slave, 0x10, register, 1, 2, value)
    return body + crc16_modbus(body).to_bytes(2, "little")


def encode_frame(wrench: np.ndarray) -> bytes:
    """The 16-byte stream frame of ``wrench (6,)`` (N, N*m), rounded to the sensor's LSBs
    and clipped to int16; used by the fake and by tests."""
    lsb = np.array([FORCE_LSB_N] * 3 + [TORQUE_LSB_NM] * 3)
    counts = np.clip(np.round(np.asarray(wrench, dtype=np.float64) / lsb), -32768, 32767)
    body = HEADER + struct.pack("<6h", *(int(c) for c in counts))
    return body + crc16_modbus(body).to_bytes(2, "little")


@dataclass
class FT300Config:
    """Settings of one FT 300 on a serial port.

    Attributes:
        port: serial device path, e.g. ``/dev/ttyUSB0``.
        baudrate: bits per second; the FT 300 ships at 19200.
        slave_address: Modbus slave id of the sensor (9 from the factory).
        stale_timeout_s: s; a reading whose newest frame is older than this is ``STALE``
            (frames arrive every 10 ms).
        bias_samples: frames averaged by ``bias()``.
        bad_frame_limit: consecutive frames with a bad CRC after which readings carry
            ``DEVICE_ERROR`` until a good frame arrives.
        start_stream: send the Modbus register write that starts stream mode on ``start()``
            (off when the sensor already streams, e.g. set up by another tool).
        start_timeout_s: s that ``start()`` and ``bias()`` wait for frames before failing.
    """

    port: str = "/dev/ttyUSB0"
    baudrate: int = 19200
    slave_address: int = DEFAULT_SLAVE
    stale_timeout_s: float = 0.1
    bias_samples: int = 10
    bad_frame_limit: int = 3
    start_stream: bool = True
    start_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.port, str) or not self.port:
            raise ConfigError("ft300 port is empty: set port to the serial device, /dev/ttyUSB0")
        if self.baudrate not in _BAUDRATES:
            raise ConfigError(
                f"ft300 baudrate={self.baudrate} is not supported: use 19200 (factory setting)"
            )
        if not 1 <= int(self.slave_address) <= 247:
            raise ConfigError(f"ft300 slave_address={self.slave_address} must be in 1..247: use 9")
        for name in ("stale_timeout_s", "start_timeout_s"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"ft300 {name}={getattr(self, name)} must be > 0 seconds")
        if int(self.bias_samples) < 1:
            raise ConfigError(f"ft300 bias_samples={self.bias_samples} must be >= 1")
        if int(self.bad_frame_limit) < 1:
            raise ConfigError(f"ft300 bad_frame_limit={self.bad_frame_limit} must be >= 1")


@dataclass(frozen=True)
class FT300Stats:
    """Counters since ``start()``.

    Attributes:
        frames: frames with a good CRC.
        bad_crc: frames whose header and length looked right but whose CRC did not match.
        garbage_bytes: bytes skipped while searching for a frame header (resynchronising).
        bad_run: current run of consecutive bad-CRC frames.
    """

    frames: int = 0
    bad_crc: int = 0
    garbage_bytes: int = 0
    bad_run: int = 0


class FrameParser:
    """Splits the FT 300 byte stream into checked frames, resynchronising after garbage.

    ``feed(data)`` returns the wrenches ``(6,)`` (N, N*m) of the complete good frames found.
    A candidate frame with a bad CRC is skipped one byte at a time, so a real frame that
    starts inside it is still found.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.frames = 0
        self.bad_crc = 0
        self.garbage_bytes = 0
        self.bad_run = 0

    def feed(self, data: bytes) -> list[np.ndarray]:
        self._buffer += data
        out = []
        while True:
            start = self._buffer.find(HEADER)
            if start < 0:
                # Keep a trailing 0x20: it may be the first half of the next header.
                keep = 1 if self._buffer.endswith(HEADER[:1]) else 0
                self.garbage_bytes += len(self._buffer) - keep
                del self._buffer[: len(self._buffer) - keep]
                return out
            if start:
                self.garbage_bytes += start
                del self._buffer[:start]
            if len(self._buffer) < FRAME_SIZE:
                return out
            _, *counts, crc = FRAME.unpack_from(self._buffer)
            if crc16_modbus(self._buffer[: FRAME_SIZE - 2]) != crc:
                self.bad_crc += 1
                self.bad_run += 1
                del self._buffer[:1]
                self.garbage_bytes += 1
                continue
            del self._buffer[:FRAME_SIZE]
            self.frames += 1
            self.bad_run = 0
            out.append(
                np.asarray(counts, dtype=np.float64)
                * np.array([FORCE_LSB_N] * 3 + [TORQUE_LSB_NM] * 3)
            )


class FT300Sensor(WrenchSensor):
    """An FT 300 streaming over a serial port, read by a background thread.

    ``read()`` returns the newest frame minus the bias; ``sequence`` counts good frames since
    ``start()``. Bad-CRC frames are counted in ``stats``; ``bad_frame_limit`` of them in a row
    flag ``DEVICE_ERROR``.
    """

    def __init__(self, config: FT300Config):
        self.config = config
        self._lock = threading.Lock()
        self._new_frame = threading.Condition(self._lock)
        self._fd: int | None = None
        self._saved_mode: list | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._reset()

    def _reset(self) -> None:
        self._parser = FrameParser()
        self._raw = np.zeros(6)
        self._stamp = 0.0
        self._bias = np.zeros(6)
        self._bias_acc: list[np.ndarray] | None = None

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    @property
    def stats(self) -> FT300Stats:
        with self._lock:
            p = self._parser
            return FT300Stats(p.frames, p.bad_crc, p.garbage_bytes, p.bad_run)

    def _open(self) -> int:
        try:
            fd = os.open(self.config.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as error:
            raise HardwareError(
                f"FT 300: cannot open {self.config.port} ({error.strerror}): check the USB "
                "cable and that your user is in the 'dialout' group"
            ) from error
        try:
            self._saved_mode = termios.tcgetattr(fd)
            mode = termios.tcgetattr(fd)
            tty.cfmakeraw(mode)
            speed = _BAUDRATES[self.config.baudrate]
            mode[tty.CFLAG] |= termios.CLOCAL | termios.CREAD
            mode[tty.ISPEED] = mode[tty.OSPEED] = speed
            mode[tty.CC][termios.VMIN] = 0
            mode[tty.CC][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, mode)
        except termios.error as error:
            os.close(fd)
            raise HardwareError(
                f"FT 300: {self.config.port} is not a serial port ({error}): set port to the "
                "sensor's tty, e.g. /dev/ttyUSB0"
            ) from error
        return fd

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        deadline = time.monotonic() + 1.0
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                written = 0
            except OSError as error:
                raise HardwareError(
                    f"FT 300 on {self.config.port}: write failed ({error.strerror}): check the "
                    "cable"
                ) from error
            view = view[written:]
            if view:
                if time.monotonic() > deadline:
                    raise HardwareError(f"FT 300 on {self.config.port}: write timed out")
                select.select([], [self._fd], [], 0.05)

    def start(self) -> None:
        """Opens the port, starts stream mode and waits for the first good frame."""
        if self.is_running:
            return
        self._fd = self._open()
        self._reset()
        try:
            if self.config.start_stream:
                # Stop any stream left running so the sensor listens to Modbus again.
                self._write(STOP_BYTES)
                termios.tcdrain(self._fd)
                # Modbus RTU needs >= 3.5 character times of silence between frames.
                time.sleep(0.005)
                with contextlib.suppress(termios.error):
                    termios.tcflush(self._fd, termios.TCIFLUSH)
                self._write(
                    modbus_write_register(
                        int(self.config.slave_address), STREAM_REGISTER, STREAM_START_VALUE
                    )
                )
        except HardwareError:
            self._close_port()
            raise
        self._stopping.clear()
        self._thread = threading.Thread(target=self._receive, name="ft300-stream", daemon=True)
        self._thread.start()
        with self._lock:
            self._new_frame.wait_for(
                lambda: self._parser.frames > 0, timeout=self.config.start_timeout_s
            )
            started = self._parser.frames > 0
        if not started:
            self.stop()
            raise HardwareError(
                f"FT 300 on {self.config.port} sent no valid frame within "
                f"{self.config.start_timeout_s} s: check power (24 V), the port and the "
                "baudrate"
            )

    def _close_port(self) -> None:
        if self._fd is None:
            return
        if self._saved_mode is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self._fd, termios.TCSANOW, self._saved_mode)
        os.close(self._fd)
        self._fd = None

    def stop(self) -> None:
        """Stops the stream (a run of 0xFF bytes), joins the reader and closes the port."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        if self.config.start_stream:
            # The sensor may be unplugged already; the port closes either way.
            with contextlib.suppress(HardwareError):
                self._write(STOP_BYTES)
        self._close_port()

    def _receive(self) -> None:
        fd = self._fd
        assert fd is not None
        while not self._stopping.is_set():
            readable, _, _ = select.select([fd], [], [], 0.02)
            if not readable:
                continue
            try:
                data = os.read(fd, 512)
            except BlockingIOError:
                continue
            except OSError:
                # EIO once the far end of the line goes away: keep the last value, go stale.
                time.sleep(0.02)
                continue
            if not data:
                time.sleep(0.005)
                continue
            stamp = time.monotonic()
            with self._lock:
                wrenches = self._parser.feed(data)
                if not wrenches:
                    continue
                self._raw = wrenches[-1]
                self._stamp = stamp
                if self._bias_acc is not None:
                    self._bias_acc.extend(w.copy() for w in wrenches)
                self._new_frame.notify_all()

    def read(self) -> WrenchReading:
        if not self.is_running:
            raise NotConnectedError("FT 300 sensor is not started: call start() first")
        now = time.monotonic()
        with self._lock:
            status = SensorStatus.OK
            if self._parser.bad_run >= self.config.bad_frame_limit:
                status |= SensorStatus.DEVICE_ERROR
            if now - self._stamp > self.config.stale_timeout_s:
                status |= SensorStatus.STALE
            return WrenchReading(
                wrench=self._raw - self._bias,
                timestamp=float(self._stamp),
                status=status,
                sequence=int(self._parser.frames),
            )

    def bias(self) -> None:
        """Zeroes the current load: the mean of the next ``bias_samples`` frames is subtracted
        from later readings (stream mode has no on-sensor zeroing)."""
        if not self.is_running:
            raise NotConnectedError("FT 300 sensor is not started: call start() first")
        n = int(self.config.bias_samples)
        with self._lock:
            self._bias_acc = []
            self._new_frame.wait_for(
                lambda: len(self._bias_acc) >= n, timeout=self.config.start_timeout_s
            )
            samples, self._bias_acc = self._bias_acc, None
            if len(samples) < n:
                raise HardwareError(
                    f"FT 300 on {self.config.port}: only {len(samples)} of {n} frames arrived "
                    f"within {self.config.start_timeout_s} s for bias(): check the stream"
                )
            self._bias = np.mean(samples[:n], axis=0)
