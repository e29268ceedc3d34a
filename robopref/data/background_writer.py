"""Save episodes in a process of their own, so a control loop never waits for the disk, the
encoder or the interpreter lock.

``BackgroundEpisodeWriter`` runs a ``DurableEpisodeWriter`` in a child process and hands it
each episode; the caller goes on (an operator resets the scene, the next episode runs). A
thread would not do: on 2 cores a writer thread encoding video and building Parquet tables
holds Python's interpreter lock often enough to drag a 100 Hz loop to 73-85 Hz and a 500 Hz
one to ~230 Hz (measured with ``benchmarks/control_loop_rate.py``). From a process of its own,
at idle priority and kept off one CPU, the writer leaves a 500 Hz loop at its rate while it
encodes, on the same 2-core machine.

An episode is durable only when the writer says so (``poll()``/``wait()`` return its
``SaveRecord``; ``on_durable`` is called with it, on the caller's thread). The hand-off is
bounded: at most ``max_pending`` episodes are submitted and not yet durable (default 1, the
one being written), and ``submit`` blocks while that many are. So a crash while writing loses
at most the episode being written, never an earlier one (each was swapped in before). The
child ends with the recorder (a lifeline pipe, and Linux ``PR_SET_PDEATHSIG``) and never
swaps an episode in once the recorder is gone: a killed recorder leaves no writer behind to
race the next session on the same dataset. Ctrl-C reaches the recorder only; the child
finishes what it was given.

Processes come from a fork server that imports lerobot once per recorder process, so a
second session in the same process starts in milliseconds; it is started with the first
writer. ``submit`` hands the frames over on the caller's thread, between episodes, never
while the loop runs; the arrays go to the socket out of band, without a copy.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robopref.errors import ConfigError, DatasetError

__all__ = ["BackgroundEpisodeWriter", "SaveRecord"]

# Imported once by the fork server, so each writer process starts without importing them.
_PRELOAD = [
    "robopref.data.durable_writer",
    "lerobot.datasets.compute_stats",
    "lerobot.datasets.feature_utils",
    "lerobot.datasets.io_utils",
    "lerobot.datasets.video_utils",
    "pandas",
    "av",
]
_NICE = 10  # the writer process's CPU niceness, relative to the recorder
_ERRORS = {"DatasetError": DatasetError, "ConfigError": ConfigError, "ValueError": ValueError}


@dataclass
class SaveRecord:
    """One durable episode: its index, how long ``submit`` blocked the caller (s), how long
    the write itself took (s), the time from ``submit`` until it was durable (s), and when it
    became durable (``time.monotonic()``, s; the same clock in every process)."""

    index: int
    blocked_s: float
    write_s: float
    durable_s: float
    durable_at: float


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent exits (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _lower_priority() -> None:
    """Let the control loop come first: on 2 cores an encoder at the loop's priority delays
    its ticks by tens of ms, and the writer has a whole episode (and the reset) to finish
    in. Linux schedules a session's processes as one group (autogroup), in which a nice
    value only ranks them against each other; so the writer leaves the recorder's session
    and lowers its own group too."""
    with contextlib.suppress(OSError, AttributeError):
        os.setsid()
        Path("/proc/self/autogroup").write_text(str(_NICE))
    with contextlib.suppress(OSError, AttributeError):
        os.nice(_NICE)
    # SCHED_IDLE (allowed without privileges; threads the encoder starts inherit it) runs the
    # writer only on CPU time the recorder leaves idle, where a nice value still shares it.
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _leave_a_cpu_to_the_loop() -> None:
    """Keep the writer (and the encoder threads it starts, which inherit this) off the
    lowest CPU it may use, so the control loop always finds one free. Priorities alone do
    not hold the rate: sharing a CPU with the encoder, a 500 Hz loop on 2 cores still missed
    9-13% of its deadlines (stalls up to 12-16 ms); kept apart it missed at most 6 of 1,499
    (measured with ``benchmarks/control_loop_rate.py``). A machine with one CPU leaves it
    shared."""
    with contextlib.suppress(OSError, AttributeError):
        cpus = os.sched_getaffinity(0)
        if len(cpus) > 1:
            os.sched_setaffinity(0, cpus - {min(cpus)})


def _exit_when_gone(lifeline) -> None:
    # Nothing is ever written to the lifeline: it becomes readable when the recorder exits
    # (its end closes however the recorder died). The child then ends at once, like a kill.
    lifeline.poll(None)
    os._exit(1)


def _serve(conn, lifeline, args: tuple) -> None:
    """The child: open the writer, then save what arrives until told to close."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the recorder's to handle
    _lower_priority()
    _leave_a_cpu_to_the_loop()
    # The kernel's parent-death signal follows the fork server, which outlives the recorder
    # by a moment; the lifeline ends the child with the recorder itself.
    threading.Thread(target=_exit_when_gone, args=(lifeline,), daemon=True).start()
    from robopref.data.durable_writer import DurableEpisodeWriter

    try:
        writer = DurableEpisodeWriter(*args)
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, _one_line(exc)))
        return
    # An episode is swapped in only while its recorder lives: one that died mid-save loses
    # that episode, as if the writer had died with it (no swap after the recorder's death).
    writer.may_commit = lambda: not lifeline.poll()
    conn.send(("opened", _state(writer)))
    failed = False
    while True:
        try:
            message = _receive_message(conn)
        except EOFError:  # the recorder is gone
            return
        if message[0] == "prepare":
            with contextlib.suppress(Exception):  # the first save builds it otherwise
                writer.prepare()
        elif message[0] == "save":
            _, frames, task, meta = message
            if failed:
                continue  # after a failure nothing more is saved (indices would shift)
            began = time.monotonic()
            try:
                index = writer.save_episode(frames, task, meta)
            except Exception as exc:
                failed = True
                conn.send(("failed", type(exc).__name__, _one_line(exc)))
                continue
            conn.send(("saved", index, writer.num_frames, began, time.monotonic()))
        elif message[0] == "close":
            writer.close()
            conn.send(("closed",))
            return


def _send_message(conn, message: tuple) -> None:
    """Pickle ``message`` with its arrays out of band (protocol 5): the header is small, and
    the arrays' memory goes to the socket as it is, without a copy and without holding the
    interpreter lock while it is written."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    conn.send_bytes(header)
    conn.send_bytes(len(buffers).to_bytes(4, "little"))
    for buffer in buffers:
        conn.send_bytes(buffer.raw())


def _receive_message(conn) -> tuple:
    header = conn.recv_bytes()
    count = int.from_bytes(conn.recv_bytes(), "little")
    return pickle.loads(header, buffers=[conn.recv_bytes() for _ in range(count)])


def _state(writer) -> dict:
    names = ("root", "dataset_id", "created", "start_episodes", "num_episodes", "num_frames")
    return {name: getattr(writer, name) for name in names}


@contextlib.contextmanager
def _as_if_from_command_line():
    """Start the child as if the caller ran ``python -c``: multiprocessing would otherwise
    re-run the caller's script in the child (to find objects it pickled), and a script that
    builds a recorder without an ``if __name__ == "__main__":`` guard would start another
    recorder there. The child runs ``_serve`` of this module and needs nothing from it."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _context():
    """A fork server that has imported lerobot (spawned processes where there is none)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


class BackgroundEpisodeWriter:
    """A ``DurableEpisodeWriter`` in a child process (see the module docstring).

    Args:
        root, repo_id, fps, features, resume: as ``DurableEpisodeWriter``; opening errors
            (an existing root without ``resume``, other features) are raised here.
        max_pending: episodes that may be submitted and not yet durable (>= 1).
        on_durable: called with each episode's ``SaveRecord`` once it is durable, on the
            thread that calls ``submit``/``poll``/``wait``.

    Like ``DurableEpisodeWriter`` it has ``root``, ``dataset_id``,
    ``created``, ``start_episodes``, ``num_episodes`` and ``num_frames`` (of durable
    episodes) and a blocking ``save_episode``; ``close()`` waits for every episode.
    """

    def __init__(
        self,
        root,
        repo_id: str,
        fps: int,
        features: dict,
        resume: bool = False,
        max_pending: int = 1,
        on_durable: Callable[[SaveRecord], None] | None = None,
    ):
        if max_pending < 1:
            raise ValueError(f"max_pending={max_pending} must be >= 1")
        self.repo_id, self.fps, self.features = repo_id, int(fps), features
        self.max_pending, self.on_durable = int(max_pending), on_durable
        self.records: list[SaveRecord] = []
        self._news: list[SaveRecord] = []  # durable since the last poll()
        self._in_flight: list[tuple[int, float, float]] = []  # index, submitted at, blocked
        self._failure: str | None = None
        self._closed = False
        context = _context()
        self._conn, child = context.Pipe()
        lifeline, self._lifeline = context.Pipe(duplex=False)  # held open, never written
        self._process = context.Process(
            target=_serve,
            args=(child, lifeline, (root, repo_id, fps, features, resume)),
            name="episode-writer",
            daemon=True,
        )
        with _as_if_from_command_line():
            self._process.start()
        child.close()
        lifeline.close()
        reply = self._receive()
        if reply[0] == "error":
            self._process.join()
            raise _ERRORS.get(reply[1], RuntimeError)(reply[2])
        state = reply[1]
        self.root, self.dataset_id = state["root"], state["dataset_id"]
        self.created, self.start_episodes = state["created"], state["start_episodes"]
        self.num_episodes, self.num_frames = state["num_episodes"], state["num_frames"]
        # A resumed dataset's twin is built now, while the first episode is recorded.
        self._send(("prepare",))

    # ---------------------------------------------------------------- state
    @property
    def pending(self) -> int:
        """Episodes submitted and not yet known to be durable."""
        return len(self._in_flight)

    @property
    def durable_episodes(self) -> int:
        """Episodes in the dataset on disk (earlier sessions' included)."""
        self._collect()
        return self.num_episodes

    @property
    def pid(self) -> int | None:
        return self._process.pid

    # ---------------------------------------------------------------- saving
    def submit(self, frames: dict, task: str, meta: dict) -> int:
        """Hand one episode to the writer (arguments as ``DurableEpisodeWriter.save_episode``)
        and return the index it will have. Blocks while ``max_pending`` episodes are not yet
        durable, then while the frames are pickled to the child."""
        started = time.monotonic()
        self._check_open()
        self._collect()
        while len(self._in_flight) >= self.max_pending:
            self._take(self._receive())
        index = self.num_episodes + len(self._in_flight)
        self._send(("save", frames, task, meta))
        self._in_flight.append((index, started, time.monotonic() - started))
        return index

    def save_episode(self, frames: dict, task: str, meta: dict) -> int:
        """Save one episode and wait until it is durable; returns its index."""
        index = self.submit(frames, task, meta)
        self.wait()
        return index

    def poll(self) -> list[SaveRecord]:
        """The episodes that became durable since the last call (never blocks)."""
        self._collect()
        news, self._news = self._news, []
        return news

    def _collect(self) -> None:
        while self._in_flight and self._conn.poll():
            self._take(self._receive())

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted episode is durable; False on timeout (s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._in_flight:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and (remaining <= 0 or not self._conn.poll(remaining)):
                return False
            self._take(self._receive())
        return True

    def close(self) -> None:
        """Wait for every submitted episode, close the writer and end the child."""
        if self._closed:
            return
        try:
            if self._failure is None:
                self.wait()
        finally:
            self._closed = True
            with contextlib.suppress(DatasetError, OSError):
                self._send(("close",))
                while self._receive()[0] != "closed":
                    pass
            self._process.join(30)
            if self._process.is_alive():
                self._process.kill()
            self._conn.close()
            self._lifeline.close()
        if self._failure is not None:
            raise DatasetError(self._failure)

    def __enter__(self) -> BackgroundEpisodeWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- plumbing
    def _take(self, reply: tuple) -> SaveRecord:
        index, submitted, blocked = self._in_flight.pop(0)
        if reply[0] == "failed":
            self._in_flight.clear()  # nothing after a failed save is written
            self._failure = (
                f"saving episode {index} failed ({reply[1]}: {reply[2]}); the episodes saved "
                "before it are intact: fix the cause (e.g. free disk space), then run again "
                "with --resume"
            )
            raise DatasetError(self._failure)
        _, saved_index, frames, began, durable_at = reply
        self.num_episodes, self.num_frames = saved_index + 1, frames
        record = SaveRecord(index, blocked, durable_at - began, durable_at - submitted, durable_at)
        self.records.append(record)
        self._news.append(record)
        if self.on_durable is not None:
            self.on_durable(record)
        return record

    def _check_open(self) -> None:
        if self._failure is not None:
            raise DatasetError(self._failure)
        if self._closed:
            raise RuntimeError("the episode writer is closed")

    def _send(self, message: tuple) -> None:
        try:
            _send_message(self._conn, message)
        except (BrokenPipeError, ConnectionError, EOFError) as exc:
            raise self._died() from exc

    def _receive(self) -> tuple:
        try:
            return self._conn.recv()
        except (EOFError, ConnectionError) as exc:
            raise self._died() from exc

    def _died(self) -> DatasetError:
        self._process.join(5)
        code = self._process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        self._failure = (
            f"the dataset writer process stopped ({how}); the episodes saved before are "
            "intact: run again with --resume"
        )
        self._in_flight.clear()
        return DatasetError(self._failure)
