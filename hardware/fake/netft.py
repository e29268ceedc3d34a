"""A Net F/T box on loopback: a real UDP server in a thread that speaks ATI's RDT protocol.

It answers RDT requests the way the box does (start real-time or buffered streaming of
``sample_count`` records, stop, set bias) and streams 36-byte records built from a settable
wrench. Hooks misbehave on purpose: drop records (sequence gaps), swap two records
(reordering), set the status word, pause the stream (to trip a stale timeout), restart the
sequence numbers mid-stream, and reboot (the box forgets its client until asked again).

    with FakeNetFTServer(rate_hz=500) as box:
        sensor = NetFTSensor(NetFTConfig(host=box.host, port=box.port))
"""

from __future__ import annotations

import socket
import threading

import numpy as np

from robopref.hardware.fake.paced import PacedServer
from robopref.hardware.netft import (
    CMD_SET_SOFTWARE_BIAS,
    CMD_START_BUFFERED,
    CMD_START_REALTIME,
    CMD_STOP,
    RDT_HEADER,
    RECORD,
    REQUEST,
)

_INT32 = (-(1 << 31), (1 << 31) - 1)


class FakeNetFTServer(PacedServer):
    """An RDT server on ``host`` (127.0.0.1) and an ephemeral ``port`` until ``close()``.

    Args:
        rate_hz: records per second while streaming.
        counts_per_force: counts per N used to encode the wrench.
        counts_per_torque: counts per N*m.
        wrench: initial ``(6,)`` load ``[fx, fy, fz, tx, ty, tz]`` (N, N*m).
        host: address to bind; port 0 picks a free port.
        first_sequence: ``rdt_sequence`` of the first record of each stream; the box uses 1,
            a value near 2**32 exercises the wrap-around.
    """

    def __init__(
        self,
        rate_hz: float = 500.0,
        counts_per_force: float = 1_000_000.0,
        counts_per_torque: float = 1_000_000.0,
        wrench: np.ndarray | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        first_sequence: int = 1,
    ):
        self.period_s = 1.0 / rate_hz
        self._scale = np.array([counts_per_force] * 3 + [counts_per_torque] * 3)
        self._lock = threading.Lock()
        self._wrench = np.zeros(6) if wrench is None else np.asarray(wrench, dtype=np.float64)
        self._bias_counts = np.zeros(6, dtype=np.int64)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.requests: list[bytes] = []  # every datagram received, in order
        self.records_sent = 0
        self.status_word = 0
        self.paused = False
        self._client: tuple[str, int] | None = None
        self._streaming = False
        self._remaining: int | None = None
        self._per_packet = 1
        self._first_sequence = int(first_sequence) % (1 << 32)
        self._rdt_sequence = 0
        self._ft_sequence = 0
        self._drop = 0
        self._reorder = False
        self._held: bytes | None = None
        self._start("fake-netft")

    # ---------------------------------------------------------------- hooks
    @property
    def wrench(self) -> np.ndarray:
        with self._lock:
            return self._wrench.copy()

    def set_wrench(self, wrench) -> None:
        """The load ``(6,)`` (N, N*m) encoded into the next records."""
        with self._lock:
            self._wrench = np.asarray(wrench, dtype=np.float64).reshape(6)

    def drop_next(self, n: int = 1) -> None:
        """Skip the next ``n`` records: their sequence numbers are used up, as on a lossy link."""
        with self._lock:
            self._drop += n

    def reorder_next(self) -> None:
        """Hold the next record back and send it after the one that follows it."""
        with self._lock:
            self._reorder = True

    def restart_sequence(self) -> None:
        """Number the next records from ``first_sequence`` again while streaming on, as a box
        does when its firmware restarts the RDT stream."""
        with self._lock:
            self._rdt_sequence = (self._first_sequence - 1) % (1 << 32)
            self._held = None

    def reboot(self) -> None:
        """Power-cycle the box: it forgets the client, stops streaming, clears its hardware
        bias, and numbers the next stream from ``first_sequence`` once asked to start."""
        with self._lock:
            self._client = None
            self._streaming = False
            self._held = None
            self._bias_counts = np.zeros(6, dtype=np.int64)
            self._rdt_sequence = (self._first_sequence - 1) % (1 << 32)

    def set_status(self, status: int) -> None:
        """The status word of the next records (0 = healthy)."""
        self.status_word = int(status)

    def commands(self) -> list[int]:
        """The RDT command codes received so far (well-formed requests only)."""
        out = []
        for request in list(self.requests):
            if len(request) == REQUEST.size:
                header, command, _ = REQUEST.unpack(request)
                if header == RDT_HEADER:
                    out.append(command)
        return out

    # ------------------------------------------------------------ lifecycle
    def _release(self) -> None:
        self._sock.close()

    # ------------------------------------------------------------- protocol
    def _handle(self, request: bytes, client: tuple[str, int]) -> None:
        self.requests.append(request)
        if len(request) != REQUEST.size:
            return  # the box ignores datagrams that are not requests
        header, command, sample_count = REQUEST.unpack(request)
        if header != RDT_HEADER:
            return
        with self._lock:
            if command in (CMD_START_REALTIME, CMD_START_BUFFERED):
                # Each request starts a new output stream numbered from 1.
                self._client = client
                self._streaming = True
                self._remaining = sample_count or None
                self._per_packet = 1 if command == CMD_START_REALTIME else 4
                self._rdt_sequence = (self._first_sequence - 1) % (1 << 32)
                self._held = None
            elif command == CMD_STOP:
                self._streaming = False
            elif command == CMD_SET_SOFTWARE_BIAS:
                self._bias_counts = self._counts_unbiased()

    def _counts_unbiased(self) -> np.ndarray:
        return np.round(self._wrench * self._scale).astype(np.int64)

    def _next_record(self) -> bytes | None:
        """One encoded record, or None when it is dropped; called with the lock held."""
        self._rdt_sequence = (self._rdt_sequence + 1) % (1 << 32)
        self._ft_sequence = (self._ft_sequence + 1) % (1 << 32)
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self._streaming = False
        if self._drop > 0:
            self._drop -= 1
            return None
        counts = np.clip(self._counts_unbiased() - self._bias_counts, *_INT32)
        return RECORD.pack(
            self._rdt_sequence, self._ft_sequence, self.status_word, *(int(c) for c in counts)
        )

    def _emit(self) -> None:
        with self._lock:
            if not self._streaming or self._client is None:
                return
            records = []
            for _ in range(self._per_packet):
                if not self._streaming:
                    break
                record = self._next_record()
                if record is not None:
                    records.append(record)
            client = self._client
            if self._reorder and len(records) == 1 and self._held is None:
                self._held, self._reorder = records[0], False
                records = []
            elif self._held is not None and records:
                records.append(self._held)
                self._held = None
        if not records:
            return
        datagrams = [b"".join(records)] if self._per_packet > 1 else records
        for datagram in datagrams:
            try:
                self._sock.sendto(datagram, client)
                self.records_sent += len(datagram) // RECORD.size
            except OSError:
                pass  # the client went away; the real box keeps streaming into the void

    def _input(self) -> socket.socket:
        return self._sock

    def _receive(self) -> bool:
        try:
            request, client = self._sock.recvfrom(64)
        except OSError:
            return True
        self._handle(request, client)
        return True
