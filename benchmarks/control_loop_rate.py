"""Rate and jitter of the recorder's real-time control loop (``robopref.recording``).

Runs ``Recorder.record_episode`` paced on the wall clock, the loop an operator records with:
read the arm through the safety layer, a scripted operator's command, ``send_action``, and
the frame buffered for the dataset. Arms: the in-process fake (``FakeForceArm``) at 100 and
500 Hz, and the MuJoCo arm (``SimForceArm``) at 100 and 250 Hz (its highest accepted rate;
the physics runs at 500 Hz, 5 and 2 physics ticks per command). Prints, per run: achieved
rate, period error (mean, std, |p99|, max), start lateness, tick work time, and missed
deadlines (a tick started > 10% of a period late, or its work overran the next deadline).
Each rate runs twice: alone, and right after handing the recorder's background writer (a
process of its own) a 60 s camera episode to save (1,200 frames of 128x96 px encoded to AV1,
Parquet, fsync, the atomic swap), as the recorder does at the end of each episode; ``save``
is the share of the run during which that save was running. No thresholds are asserted;
numbers depend on the machine and its load.

    .venv/bin/python benchmarks/control_loop_rate.py [--seconds 3] [--spin-ms 0.5]
        [--rt-priority 50]   # SCHED_FIFO, when the OS allows it (root or CAP_SYS_NICE)
        [--no-background]    # skip the runs with a save in the background
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time

import numpy as np

from robopref.data.background_writer import BackgroundEpisodeWriter
from robopref.hardware.fake.arm import FakeArmConfig, FakeForceArm
from robopref.hardware.sim import SimArmConfig, SimForceArm
from robopref.hardware.teleop import ScriptedConfig, ScriptedTeleop
from robopref.recording import Recorder, RecorderConfig


def circle(radius_m: float, hz: int):
    """A scripted operator tracing a 1 Hz circle of ``radius_m`` in the horizontal plane."""
    state = {"t": 0}

    def policy(obs):
        state["t"] += 1
        phase = 2 * np.pi * state["t"] / hz
        speed = 2 * np.pi * radius_m / hz  # m per tick
        return np.array([-np.sin(phase) * speed, np.cos(phase) * speed, 0, 0, 0, 0])

    return policy


class BackgroundSave:
    """A camera episode handed to the recorder's ``BackgroundEpisodeWriter`` (a process of
    its own) just before the measured episode, as the recorder hands over the episode it
    just saved: 60 s at 20 Hz, 1,200 frames of 128x96 px encoded to AV1, written while the
    loop runs."""

    FEATURES = {
        "observation.state": {"dtype": "float32", "shape": (24,), "names": None},
        "action": {"dtype": "float32", "shape": (6,), "names": None},
        "observation.images.front": {
            "dtype": "video",
            "shape": (96, 128, 3),
            "names": ["height", "width", "channels"],
        },
    }

    def __init__(self, root: str, frames: int = 1200):
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:96, 0:128]
        # A moving gradient with sensor noise: something like a camera, for the encoder.
        images = np.empty((frames, 96, 128, 3), np.uint8)
        for t in range(frames):
            image = np.stack([(x + 2 * t) % 256, (y * 2 + t) % 256, np.full_like(x, 90)], -1)
            images[t] = np.clip(image + rng.integers(0, 8, (96, 128, 3)), 0, 255)
        self.episode = {
            "observation.state": rng.normal(size=(frames, 24)).astype(np.float32),
            "action": rng.normal(size=(frames, 6)).astype(np.float32),
            "observation.images.front": images,
        }
        self.writer = BackgroundEpisodeWriter(root, "bench/loop", 20, self.FEATURES)
        self.busy = 0.0

    def __enter__(self):
        self.writer.submit(self.episode, "bench", {})
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        ended = time.monotonic()
        self.writer.close()
        # The share of the measured run the save was still running.
        durable_at = self.writer.records[-1].durable_at
        self.busy = min(1.0, (durable_at - self._started) / (ended - self._started))


def run(arm_name: str, hz: int, seconds: float, spin_s: float, background=None) -> dict:
    arm = (
        FakeForceArm(FakeArmConfig(control_hz=float(hz)))
        if arm_name == "fake"
        else SimForceArm(SimArmConfig(control_hz=float(hz)))
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = RecorderConfig(
            root=f"{tmp}/unused", fps=hz, max_episode_s=seconds, realtime=True, spin_s=spin_s
        )
        teleop = ScriptedTeleop(ScriptedConfig(), policy=circle(0.02, hz))
        recorder = Recorder(config, arm, teleop, log=lambda message: None)
        recorder.arm.connect()
        teleop.connect()
        try:
            recorder.record_episode(seed=0)  # warm-up: first-call costs, caches
            with background or contextlib.nullcontext():
                attempt = recorder.record_episode(seed=1)
        finally:
            teleop.disconnect()
            recorder.arm.disconnect()
    return attempt.meta["timing"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--spin-ms", type=float, default=0.5, help="busy-wait before a deadline")
    parser.add_argument("--rt-priority", type=int, default=0, help="SCHED_FIFO priority; 0 = off")
    parser.add_argument("--no-background", action="store_true", help="skip runs with a save")
    args = parser.parse_args()
    scheduling = "default (SCHED_OTHER)"
    if args.rt_priority:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.rt_priority))
            scheduling = f"SCHED_FIFO {args.rt_priority}"
        except (PermissionError, OSError) as exc:
            scheduling = f"default (SCHED_FIFO refused: {exc.strerror})"
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"scheduling {scheduling}, spin {args.spin_ms} ms, {args.seconds} s per run"
    )
    header = (
        f"{'arm':<5} {'target':>7} {'save':>5} {'achieved':>9} {'err mean':>9} {'err std':>8} "
        f"{'|err| p99':>9} {'|err| max':>9} {'late p99':>9} {'work mean':>9} {'missed':>12}"
    )
    print(header)
    print("-" * len(header))
    for arm_name, rates in (("fake", (100, 500)), ("sim", (100, 250))):
        for hz in rates:
            for saving in (False,) if args.no_background else (False, True):
                with tempfile.TemporaryDirectory() as tmp:
                    background = BackgroundSave(f"{tmp}/ds") if saving else None
                    t = run(arm_name, hz, args.seconds, args.spin_ms / 1e3, background)
                missed = f"{t['missed_deadlines']}/{t['periods']}"
                save = f"{100 * background.busy:>3.0f}%" if saving else "   -"
                print(
                    f"{arm_name:<5} {hz:>5}Hz {save:>5} {t['achieved_hz']:>7.2f}Hz "
                    f"{t['period_error_mean_ms']:>+7.3f}ms {t['period_error_std_ms']:>6.3f}ms "
                    f"{t['period_error_p99_ms']:>7.3f}ms {t['period_error_max_ms']:>7.3f}ms "
                    f"{t['lateness_p99_ms']:>7.3f}ms {t['work_mean_ms']:>7.3f}ms {missed:>12}"
                )
    print(
        "save: share of the run during which a 60 s camera episode was being written in the "
        "background (- = none)"
    )


if __name__ == "__main__":
    main()
