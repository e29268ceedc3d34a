"""Rate and jitter of the recorder's real-time control loop (``robopref.recording``).

Runs ``Recorder.record_episode`` paced on the wall clock, the loop an operator records with:
read the arm through the safety layer, a scripted operator's command, ``send_action``, and
the frame buffered for the dataset. Arms: the in-process fake (``FakeForceArm``) at 100 and
500 Hz, and the MuJoCo arm (``SimForceArm``) at 100 and 250 Hz (its highest accepted rate;
the physics runs at 500 Hz, 5 and 2 physics ticks per command). Prints, per run: achieved
rate, period error (mean, std, |p99|, max), start lateness, tick work time, and missed
deadlines (a tick started > 10% of a period late, or its work overran the next deadline).
No thresholds are asserted; numbers depend on the machine and its load.

    .venv/bin/python benchmarks/control_loop_rate.py [--seconds 3] [--spin-ms 0.5]
        [--rt-priority 50]   # SCHED_FIFO, when the OS allows it (root or CAP_SYS_NICE)
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

import numpy as np

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


def run(arm_name: str, hz: int, seconds: float, spin_s: float) -> dict:
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
        f"{'arm':<5} {'target':>7} {'achieved':>9} {'err mean':>9} {'err std':>8} "
        f"{'|err| p99':>9} {'|err| max':>9} {'late p99':>9} {'work mean':>9} {'missed':>12}"
    )
    print(header)
    print("-" * len(header))
    for arm_name, rates in (("fake", (100, 500)), ("sim", (100, 250))):
        for hz in rates:
            t = run(arm_name, hz, args.seconds, args.spin_ms / 1e3)
            missed = f"{t['missed_deadlines']}/{t['periods']}"
            print(
                f"{arm_name:<5} {hz:>5}Hz {t['achieved_hz']:>7.2f}Hz "
                f"{t['period_error_mean_ms']:>+7.3f}ms {t['period_error_std_ms']:>6.3f}ms "
                f"{t['period_error_p99_ms']:>7.3f}ms {t['period_error_max_ms']:>7.3f}ms "
                f"{t['lateness_p99_ms']:>7.3f}ms {t['work_mean_ms']:>7.3f}ms {missed:>12}"
            )


if __name__ == "__main__":
    main()
