"""Fixed-rate loop pacing and its statistics (rate, period error, lateness, work; s and ms)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["LoopTimer", "timing_stats"]


class LoopTimer:
    """Paces a loop at ``period_s`` with ``time.perf_counter`` deadlines and measures it.

    ``wait()`` blocks until the next deadline: ``sleep`` to within ``spin_s`` of it, then a
    short busy-wait (OS sleeps overshoot by 50-100 us, far more on a loaded machine; the spin
    absorbs the usual part). ``done()`` marks the end of the tick's work.

    A deadline is missed when a tick starts more than ``tolerance`` periods after it (the OS
    woke the loop late) or when a tick's work runs past the next deadline (an overrun). After
    an overrun the schedule skips the deadlines already past instead of bursting to catch up,
    keeping its phase. With ``realtime=False`` nothing waits (a synchronous simulation runs as
    fast as it can) and the statistics describe that.
    """

    def __init__(
        self,
        period_s: float,
        realtime: bool = True,
        spin_s: float = 0.0005,
        tolerance: float = 0.1,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.period_s, self.realtime, self.spin_s = float(period_s), realtime, float(spin_s)
        self.tolerance = float(tolerance)
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None
        self.starts: list[float] = []
        self.lateness: list[float] = []
        self.work: list[float] = []
        self.missed = 0

    def wait(self) -> float:
        """Block until the next tick is due; returns the tick's start time (s)."""
        if self._next is None:
            self._next = self._clock()
        elif self.realtime:
            remaining = self._next - self._clock()
            if remaining > self.spin_s:
                self._sleep(remaining - self.spin_s)
            while self._clock() < self._next:
                pass
        start = self._clock()
        if self.realtime:
            late = start - self._next
            self.lateness.append(late)
            self.missed += late > self.tolerance * self.period_s
        self.starts.append(start)
        self._next += self.period_s
        return start

    def done(self) -> None:
        """The tick's work is finished: count an overrun and re-phase after one."""
        if self._next is None:
            return
        now = self._clock()
        self.work.append(now - self.starts[-1])
        if not self.realtime:
            return
        if now > self._next:
            self.missed += 1
            self._next += (int((now - self._next) // self.period_s) + 1) * self.period_s

    def stats(self) -> dict:
        return timing_stats(
            np.diff(self.starts),
            self.period_s,
            self.missed,
            self.realtime,
            self.lateness,
            self.work,
        )


def timing_stats(
    periods_s: np.ndarray,
    period_s: float,
    missed: int,
    realtime: bool,
    lateness_s: np.ndarray | list | None = None,
    work_s: np.ndarray | list | None = None,
) -> dict:
    """Rate and jitter of a loop from its measured tick periods ``periods_s (n,)`` (s).

    Period error is ``periods_s - period_s`` per tick, reported in ms: mean and std of the
    signed error, p99 and max of its absolute value. ``achieved_hz`` is ticks per second;
    ``lateness`` (ms) is how long after its deadline each tick started; ``work`` (ms) how long
    each tick's own work took (the headroom left is the period minus that). Values with no
    samples are ``None`` (strict JSON has no NaN).
    """

    def stat(values: np.ndarray, fn) -> float | None:
        return float(fn(values)) if len(values) else None

    periods = np.asarray(periods_s, dtype=np.float64)
    late = np.asarray([] if lateness_s is None else lateness_s, dtype=np.float64) * 1e3
    work = np.asarray([] if work_s is None else work_s, dtype=np.float64) * 1e3
    error = (periods - period_s) * 1e3
    return {
        "realtime": bool(realtime),
        "target_hz": 1.0 / period_s,
        "periods": int(len(periods)),
        "missed_deadlines": int(missed),
        "achieved_hz": stat(periods, lambda p: len(p) / p.sum()),
        "period_error_mean_ms": stat(error, np.mean),
        "period_error_std_ms": stat(error, np.std),
        "period_error_p99_ms": stat(np.abs(error), lambda e: np.percentile(e, 99)),
        "period_error_max_ms": stat(np.abs(error), np.max),
        "lateness_p99_ms": stat(late, lambda e: np.percentile(e, 99)),
        "lateness_max_ms": stat(late, np.max),
        "work_mean_ms": stat(work, np.mean),
        "work_p99_ms": stat(work, lambda e: np.percentile(e, 99)),
    }
