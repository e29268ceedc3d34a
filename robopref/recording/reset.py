"""The reset phase between episodes (lerobot-record's ``reset_time_s``): the operator puts
the scene back while the last episode is written in the background.

For ``record.reset_time_s`` seconds the loop keeps running at ``record.fps`` on the wall
clock: the arm follows the teleop while it is enabled (the dead-man) and holds otherwise (no
policy acts, nothing is recorded), and every button read meanwhile is dropped, so an Enter
pressed during the reset does not end the next episode the moment it starts. A countdown is
shown: one line rewritten in place on a terminal, one line per second otherwise (a log file,
a pipe). The next episode starts only after it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np

from robopref.geometry import compose_delta
from robopref.hardware.base import ProtectiveStop
from robopref.recording.timing import LoopTimer

__all__ = ["Countdown", "run_reset"]


class Countdown:
    """Seconds left of a phase on ``stream``: rewritten in place when it is a terminal
    (``tty``, default ``stream.isatty()``), else one line per whole second."""

    def __init__(self, label: str, stream: TextIO | None = None, tty: bool | None = None):
        self.label = label
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if tty is None and callable(isatty) else bool(tty)
        self._shown: int | None = None
        self._text = ""

    def show(self, remaining_s: float) -> None:
        """Show ``remaining_s`` (s), rounded up to whole seconds; only when that changes."""
        seconds = max(0, math.ceil(remaining_s - 1e-9))
        if seconds == self._shown:
            return
        self._shown = seconds
        self._text = f"{self.label}: {seconds} s left"
        if self.tty:
            self.stream.write("\r\x1b[2K" + self._text)
        else:
            self.stream.write(self._text + "\n")
        self.stream.flush()

    def say(self, message: str) -> None:
        """Print ``message`` on a line of its own (above the countdown on a terminal)."""
        if self.tty and self._shown is not None:
            self.stream.write(f"\r\x1b[2K{message}\n{self._text}")
        else:
            self.stream.write(message + "\n")
        self.stream.flush()

    def done(self, message: str) -> None:
        """End the countdown with ``message``."""
        prefix = "\r\x1b[2K" if self.tty and self._shown is not None else ""
        self.stream.write(prefix + message + "\n")
        self.stream.flush()


def run_reset(
    recorder, seconds: float, countdown: Countdown, poll: Callable[[], None] | None = None
) -> dict:
    """Run the reset phase of ``recorder`` for ``seconds`` (s); returns
    ``{"ticks", "buttons_dropped", "protective_stop"}``. ``poll()`` runs once per tick
    (the session prints the background writer's news there)."""
    cfg, arm, teleop = recorder.config, recorder.arm, recorder.teleop
    ticks = max(1, math.ceil(seconds * cfg.fps - 1e-9))
    timer = LoopTimer(1.0 / cfg.fps, realtime=True, spin_s=cfg.spin_s)
    previous = np.asarray(arm.get_observation().tcp_pose, dtype=np.float64)
    dropped, stopped, done_ticks = 0, False, 0
    end = None
    for _ in range(ticks):
        start = timer.wait()
        end = start + seconds if end is None else end
        observation = arm.get_observation()
        teleop.observe(observation)
        command = teleop.read()
        dropped += len(command.buttons)  # pressed during the reset: not meant for the episode
        delta = np.asarray(command.delta_pose, dtype=np.float64) if command.enabled else None
        try:
            sent = arm.send_action(compose_delta(previous, np.zeros(6) if delta is None else delta))
        except ProtectiveStop as exc:
            countdown.say(f"protective stop during the reset: {exc}")
            stopped = True
            break
        previous = np.asarray(sent, dtype=np.float64)
        done_ticks += 1
        countdown.show(end - time.perf_counter())
        if poll is not None:
            poll()
        timer.done()
    countdown.done(f"reset done ({dropped} button press(es) ignored)" if dropped else "reset done")
    return {"ticks": done_ticks, "buttons_dropped": dropped, "protective_stop": stopped}
