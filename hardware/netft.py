"""ATI Net F/T (and ATI's other RDT boxes) over UDP with the Raw Data Transfer protocol.

Protocol (ATI Net F/T manual, "RDT"): the host sends an 8-byte request to UDP port 49152,
``struct.pack(">HHI", 0x1234, command, sample_count)``; command ``0x0002`` starts high-speed
real-time streaming (``sample_count`` records, 0 = until stopped), ``0x0000`` stops it and
``0x0042`` sets the box's own software bias to the current load. The box answers with 36-byte
records, big-endian ``(rdt_sequence, ft_sequence, status, Fx, Fy, Fz, Tx, Ty, Tz)``: three
``uint32`` then six ``int32`` in counts. ``rdt_sequence`` numbers the records of one stream
(so gaps are lost packets); a non-zero ``status`` word means the box flags an error.

A box that reboots forgets its client and numbers its next stream from 1 again. The client
therefore re-sends the start request whenever the stream has been quiet for half of
``stale_timeout_s``, and takes :data:`RESTART_RUN` consecutive records numbered behind the
newest one as a restarted stream (a stray late record, one at a time, is a reordering and
is dropped): readings come back within ``stale_timeout_s`` of the box streaming again.
Counts per force / torque unit come from the sensor's calibration (its web page or
``netftapi2.xml``); set the config to the newton and newton-metre values.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
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

RDT_PORT = 49152
RDT_HEADER = 0x1234
CMD_STOP = 0x0000
CMD_START_REALTIME = 0x0002
CMD_START_BUFFERED = 0x0003
CMD_SET_SOFTWARE_BIAS = 0x0042

REQUEST = struct.Struct(">HHI")
RECORD = struct.Struct(">III6i")

_SEQ_MOD = 1 << 32
_SEQ_HALF = 1 << 31
# Consecutive records numbered behind the newest one that mean "the box restarted its
# stream": reordering delivers single stray records, never a run numbered one after another.
RESTART_RUN = 3


def rdt_request(command: int, sample_count: int = 0) -> bytes:
    """The 8-byte RDT request for ``command`` (e.g. ``CMD_START_REALTIME``)."""
    return REQUEST.pack(RDT_HEADER, command, sample_count)


def sequence_delta(newer: int, older: int) -> int:
    """Signed distance ``newer - older`` between two 32-bit RDT sequence numbers, taking the
    wrap-around at 2**32 into account (serial-number arithmetic, RFC 1982)."""
    delta = (newer - older) % _SEQ_MOD
    return delta - _SEQ_MOD if delta >= _SEQ_HALF else delta


@dataclass
class NetFTConfig:
    """Settings of one Net F/T box.

    Attributes:
        host: IP address or host name of the Net F/T box.
        port: UDP port of its RDT server (49152 on every ATI box).
        counts_per_force: counts per newton, from the sensor's calibration (1e6 by default
            on Net F/T boxes configured for N).
        counts_per_torque: counts per newton-metre, likewise.
        stale_timeout_s: s; a reading whose newest sample is older than this is ``STALE``.
        bias_samples: samples averaged by a software ``bias()``, or awaited after a hardware
            one so that records already in flight are flushed.
        hardware_bias: ``bias()`` sends RDT command 0x0042 (the box subtracts the load
            itself) instead of averaging samples here.
        sample_count: records requested per stream; 0 streams until ``stop()``.
        start_timeout_s: s that ``start()`` and ``bias()`` wait for samples before failing.
    """

    host: str = "192.168.1.1"
    port: int = RDT_PORT
    counts_per_force: float = 1_000_000.0
    counts_per_torque: float = 1_000_000.0
    stale_timeout_s: float = 0.1
    bias_samples: int = 10
    hardware_bias: bool = False
    sample_count: int = 0
    start_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("netft host is empty: set host to the box's IP address")
        if not 0 < int(self.port) < 65536:
            raise ConfigError(f"netft port={self.port} is not a UDP port: use 49152")
        for name in ("counts_per_force", "counts_per_torque"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(
                    f"netft {name}={getattr(self, name)} must be > 0: copy it from the "
                    "sensor's calibration page"
                )
        for name in ("stale_timeout_s", "start_timeout_s"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"netft {name}={getattr(self, name)} must be > 0 seconds")
        if int(self.bias_samples) < 1:
            raise ConfigError(f"netft bias_samples={self.bias_samples} must be >= 1")
        if not 0 <= int(self.sample_count) < _SEQ_MOD:
            raise ConfigError(
                f"netft sample_count={self.sample_count} must be in [0, 2**32): 0 = infinite"
            )


@dataclass(frozen=True)
class NetFTStats:
    """Counters since ``start()``.

    Attributes:
        received: records accepted.
        lost: records never seen, from gaps in ``rdt_sequence``.
        reordered: records dropped because a newer one had already arrived (or duplicates).
        malformed: datagrams whose length is not a whole number of 36-byte records.
        restarts: streams the box restarted (a reboot, a new stream): the sequence then
            continues from the restarted numbering.
        status: the newest raw status word (0 = healthy).
    """

    received: int = 0
    lost: int = 0
    reordered: int = 0
    malformed: int = 0
    restarts: int = 0
    status: int = 0


class NetFTSensor(WrenchSensor):
    """A Net F/T box streaming RDT records to a background thread.

    ``read()`` returns the newest record converted to N and N*m, minus the software bias,
    with ``sequence`` the RDT sequence number unwrapped past 2**32 (so it never decreases
    within a stream). ``stats`` counts received, lost and reordered records.
    """

    def __init__(self, config: NetFTConfig):
        self.config = config
        self._scale = np.array(
            [config.counts_per_force] * 3 + [config.counts_per_torque] * 3, dtype=np.float64
        )
        self._lock = threading.Lock()
        self._new_sample = threading.Condition(self._lock)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._reset_stream_state()

    def _reset_stream_state(self) -> None:
        self._last_rdt: int | None = None
        self._sequence = 0
        self._raw = np.zeros(6)
        self._stamp = 0.0
        self._status = 0
        self._bias = np.zeros(6)
        self._bias_acc: list[np.ndarray] | None = None
        self._behind_last: int | None = None  # newest record numbered behind _last_rdt
        self._behind_run = 0
        self._counts = dict.fromkeys(
            ("received", "lost", "reordered", "malformed", "restarts"), 0
        )

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    @property
    def stats(self) -> NetFTStats:
        with self._lock:
            return NetFTStats(**self._counts, status=self._status)

    def _send(self, command: int, sample_count: int = 0) -> None:
        assert self._sock is not None
        try:
            self._sock.send(rdt_request(command, sample_count))
        except OSError as error:
            raise HardwareError(
                f"Net F/T at {self.config.host}:{self.config.port}: sending RDT command "
                f"0x{command:04x} failed ({error}): check the network route to the box"
            ) from error

    def start(self) -> None:
        """Opens the socket, requests streaming and waits for the first record."""
        if self.is_running:
            return
        address = (self.config.host, int(self.config.port))
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # A connected UDP socket accepts datagrams from the box only.
            sock.connect(address)
        except OSError as error:
            raise HardwareError(
                f"Net F/T at {address[0]}:{address[1]}: cannot open a UDP socket ({error}): "
                "check the host name and the network interface"
            ) from error
        # Short timeout so the reader notices stop() quickly.
        sock.settimeout(0.02)
        self._sock = sock
        self._reset_stream_state()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._receive, name="netft-rdt", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.config.start_timeout_s
        started = False
        while not started and time.monotonic() < deadline:
            # UDP may drop the request itself: repeat it until the stream begins.
            self._send(CMD_START_REALTIME, int(self.config.sample_count))
            with self._lock:
                if self._counts["received"] == 0:
                    remaining = max(0.0, deadline - time.monotonic())
                    self._new_sample.wait(timeout=min(0.1, remaining))
                started = self._counts["received"] > 0
        if not started:
            self.stop()
            raise HardwareError(
                f"Net F/T at {address[0]}:{address[1]} sent no RDT record within "
                f"{self.config.start_timeout_s} s: check the address, the cable and that "
                "the box is powered"
            )

    def stop(self) -> None:
        """Sends the stop command, joins the reader and closes the socket."""
        if self._thread is None:
            return
        # A failed stop request is harmless: the socket closes below either way.
        with contextlib.suppress(HardwareError):
            self._send(CMD_STOP)
        self._stopping.set()
        self._thread.join()
        self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _receive(self) -> None:
        sock = self._sock
        assert sock is not None
        quiet_s = self.config.stale_timeout_s / 2
        last_request = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            with self._lock:
                quiet = self._counts["received"] > 0 and now - self._stamp > quiet_s
            if quiet and now - last_request > quiet_s:
                # A rebooted box streams to nobody until asked again.
                with contextlib.suppress(HardwareError):
                    self._send(CMD_START_REALTIME, int(self.config.sample_count))
                last_request = now
            try:
                payload = sock.recv(RECORD.size * 40)
            except TimeoutError:
                continue
            except OSError:
                # e.g. ICMP port unreachable before the box answers; keep listening.
                time.sleep(0.01)
                continue
            self._ingest(payload, time.monotonic())

    def _ingest(self, payload: bytes, stamp: float) -> None:
        with self._lock:
            if not payload or len(payload) % RECORD.size:
                self._counts["malformed"] += 1
                return
            # Buffered mode packs several records per datagram; real-time mode sends one.
            for offset in range(0, len(payload), RECORD.size):
                rdt, _ft, status, *counts = RECORD.unpack_from(payload, offset)
                if self._last_rdt is None:
                    delta = 1
                else:
                    delta = sequence_delta(rdt, self._last_rdt)
                    if delta <= 0 and not self._restarted(rdt):
                        self._counts["reordered"] += 1
                        continue
                    if delta <= 0:
                        delta = 1  # a new stream: nothing known lost across the restart
                self._counts["received"] += 1
                self._counts["lost"] += delta - 1
                if self._last_rdt is None:
                    self._sequence = rdt
                else:
                    self._sequence += delta
                self._last_rdt = rdt
                self._behind_last, self._behind_run = None, 0
                self._raw = np.asarray(counts, dtype=np.float64) / self._scale
                self._stamp = stamp
                self._status = status
                if self._bias_acc is not None:
                    self._bias_acc.append(self._raw.copy())
            self._new_sample.notify_all()

    def _restarted(self, rdt: int) -> bool:
        """Whether ``rdt``, numbered behind the newest record, completes a run of
        :data:`RESTART_RUN` consecutive such records (called with the lock held)."""
        consecutive = (
            self._behind_last is not None and sequence_delta(rdt, self._behind_last) == 1
        )
        self._behind_run = self._behind_run + 1 if consecutive else 1
        self._behind_last = rdt
        if self._behind_run < RESTART_RUN:
            return False
        self._counts["restarts"] += 1
        # The earlier records of the run were counted as reordered; they were the new stream.
        self._counts["reordered"] -= RESTART_RUN - 1
        self._behind_last, self._behind_run = None, 0
        return True

    def read(self) -> WrenchReading:
        if not self.is_running:
            raise NotConnectedError("Net F/T sensor is not started: call start() first")
        now = time.monotonic()
        with self._lock:
            status = SensorStatus.OK
            if self._status:
                status |= SensorStatus.DEVICE_ERROR
            if now - self._stamp > self.config.stale_timeout_s:
                status |= SensorStatus.STALE
            return WrenchReading(
                wrench=self._raw - self._bias,
                timestamp=float(self._stamp),
                status=status,
                sequence=int(self._sequence),
            )

    def bias(self) -> None:
        """Zeroes the current load: software (mean of ``bias_samples`` samples, subtracted
        here) or, with ``hardware_bias``, RDT command 0x0042 then ``bias_samples`` fresh
        samples awaited so that the records already in flight are flushed."""
        if not self.is_running:
            raise NotConnectedError("Net F/T sensor is not started: call start() first")
        n = int(self.config.bias_samples)
        if self.config.hardware_bias:
            self._send(CMD_SET_SOFTWARE_BIAS)
        with self._lock:
            self._bias_acc = []
            deadline = time.monotonic() + self.config.start_timeout_s
            while len(self._bias_acc) < n and time.monotonic() < deadline:
                self._new_sample.wait(timeout=max(0.0, deadline - time.monotonic()))
            samples, self._bias_acc = self._bias_acc, None
            if len(samples) < n:
                raise HardwareError(
                    f"Net F/T at {self.config.host}: only {len(samples)} of {n} samples "
                    f"arrived within {self.config.start_timeout_s} s for bias(): check that "
                    "the sensor is streaming"
                )
            self._bias = np.zeros(6) if self.config.hardware_bias else np.mean(samples, axis=0)
