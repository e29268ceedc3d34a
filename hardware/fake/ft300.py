"""A Robotiq FT 300 behind a pseudo-terminal: the sensor opens ``fake.port`` like a USB tty.

The fake listens on the pty's master side in a thread. Like the sensor it waits for the
Modbus RTU write of 0x0200 to register 410 (answering with the function-16 echo), then
streams 16-byte frames (``0x20 0x4E``, six little-endian int16, Modbus CRC-16) at
``rate_hz`` from a settable wrench, and stops at a run of 0xFF bytes. Hooks inject garbage
bytes, corrupt CRCs and pause the stream.

    with FakeFT300(wrench=[0, 0, 5, 0, 0, 0]) as fake:
        sensor = FT300Sensor(FT300Config(port=fake.port))
"""

from __future__ import annotations

import contextlib
import os
import struct
import termios
import threading
import tty

import numpy as np

from robopref.hardware.fake.paced import PacedServer
from robopref.hardware.ft300 import (
    DEFAULT_SLAVE,
    STREAM_REGISTER,
    STREAM_START_VALUE,
    crc16_modbus,
    encode_frame,
    modbus_write_register,
)

_STOP_RUN = 8  # consecutive 0xFF bytes the fake takes as "stop streaming"


class FakeFT300(PacedServer):
    """A stream-mode FT 300 on a pty until ``close()``.

    Args:
        rate_hz: frames per second while streaming (the FT 300 sends 100).
        wrench: initial ``(6,)`` load ``[fx, fy, fz, tx, ty, tz]`` (N, N*m).
        slave_address: Modbus id it answers to (9 from the factory).
        streaming: start streaming at once, as a sensor left in stream mode by a previous
            session does (then the start command is not needed).
    """

    def __init__(
        self,
        rate_hz: float = 100.0,
        wrench=None,
        slave_address: int = DEFAULT_SLAVE,
        streaming: bool = False,
    ):
        self.period_s = 1.0 / rate_hz
        self.slave_address = slave_address
        self._lock = threading.Lock()
        self._wrench = np.zeros(6) if wrench is None else np.asarray(wrench, dtype=np.float64)
        self._master, self._slave = os.openpty()
        # Raw line discipline: no echo of our frames back to us, no CR/LF rewriting.
        tty.setraw(self._slave, termios.TCSANOW)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self.received = bytearray()  # every byte the host sent, in order
        self.frames_sent = 0
        self.start_commands = 0
        self.stop_commands = 0
        self.paused = False
        self._streaming = streaming
        self._garbage = bytearray()
        self._corrupt = 0
        self._inbox = bytearray()
        self._ff_run = 0
        self._start("fake-ft300")

    # ---------------------------------------------------------------- hooks
    def set_wrench(self, wrench) -> None:
        """The load ``(6,)`` (N, N*m) encoded into the next frames."""
        with self._lock:
            self._wrench = np.asarray(wrench, dtype=np.float64).reshape(6)

    def inject_garbage(self, data: bytes) -> None:
        """Bytes sent before the next frame, as line noise or a partial frame would be."""
        with self._lock:
            self._garbage += data

    def corrupt_next(self, n: int = 1) -> None:
        """Send the next ``n`` frames with a wrong CRC."""
        with self._lock:
            self._corrupt += n

    def clear_faults(self) -> None:
        """Forget pending garbage and CRC corruption: the line is clean again."""
        with self._lock:
            self._garbage.clear()
            self._corrupt = 0

    # ------------------------------------------------------------ lifecycle
    def _release(self) -> None:
        os.close(self._master)
        os.close(self._slave)

    # ------------------------------------------------------------- protocol
    def _send(self, data: bytes) -> None:
        # Nobody reads the line when this fails: the sensor's UART would drop the bytes too.
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def _listen(self, data: bytes) -> None:
        self.received += data
        start = modbus_write_register(self.slave_address, STREAM_REGISTER, STREAM_START_VALUE)
        for byte in data:
            self._ff_run = self._ff_run + 1 if byte == 0xFF else 0
            if self._ff_run >= _STOP_RUN and self._streaming:
                self._streaming = False
                self.stop_commands += 1
        if self._streaming:
            self._inbox.clear()  # in stream mode the sensor ignores everything but 0xFF
            return
        self._inbox += data
        at = self._inbox.find(start)
        if at >= 0:
            del self._inbox[: at + len(start)]
            self.start_commands += 1
            echo = struct.pack(">BBHH", self.slave_address, 0x10, STREAM_REGISTER, 1)
            self._send(echo + crc16_modbus(echo).to_bytes(2, "little"))
            self._streaming = True
        elif len(self._inbox) > 256:
            del self._inbox[:-32]

    def _frame(self) -> bytes:
        with self._lock:
            frame = bytearray(encode_frame(self._wrench))
            if self._corrupt > 0:
                self._corrupt -= 1
                frame[-1] ^= 0x5A
            out = bytes(self._garbage) + bytes(frame)
            self._garbage.clear()
        return out

    def _input(self) -> int:
        return self._master

    def _receive(self) -> bool:
        try:
            data = os.read(self._master, 512)
        except (BlockingIOError, OSError):
            data = b""
        if data:
            self._listen(data)
        return bool(data)

    def _emit(self) -> None:
        self._send(self._frame())
        self.frames_sent += 1
