"""Physics steps/s of the simulated force arm: raw ``mujoco.mj_step`` vs ``SimForceArm``.

``SimForceArm`` runs its Cartesian impedance controller in Python every physics tick
(``mj_step1`` + torque + ``mj_step2``), so it is slower than bare ``mj_step`` on the same model;
this measures by how much, and how many Peel-v0 control steps/s (25 physics ticks each at
20 Hz, plus the peel bookkeeping and the observation) the env reaches with its scripted
expert acting. Prints numbers and ratios from this one run; no thresholds are asserted.

    .venv/bin/python benchmarks/sim_arm_steps.py [--commands 400]
"""

from __future__ import annotations

import argparse
import time

import mujoco
import numpy as np

from robopref.envs.peel import PeelConfig, PeelEnv, PeelExpert, PeelExpertConfig
from robopref.hardware.sim import SimArmConfig, SimForceArm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=400, help="arm commands to time")
    args = parser.parse_args()

    arm = SimForceArm(SimArmConfig())
    arm.connect()
    home = arm.get_observation().tcp_pose.copy()
    rng = np.random.default_rng(0)
    targets = home + np.concatenate(
        [rng.uniform(-0.03, 0.03, (args.commands, 3)), np.zeros((args.commands, 3))], axis=1
    )
    ticks = args.commands * arm.ticks_per_command

    # Raw physics: same model, gravity-compensating torque held constant, no Python per tick.
    model, data = arm.model, mujoco.MjData(arm.model)
    data.qpos[:] = arm.config.initial_joint_positions
    mujoco.mj_forward(model, data)
    data.ctrl[:] = data.qfrc_bias
    start = time.perf_counter()
    for _ in range(ticks):
        mujoco.mj_step(model, data)
    raw = ticks / (time.perf_counter() - start)

    start = time.perf_counter()
    for target in targets:
        arm.send_action(target)
        arm.pop_trace()
    controlled = ticks / (time.perf_counter() - start)

    env = PeelEnv(PeelConfig())
    expert = PeelExpert(PeelExpertConfig(), env.config)
    obs, _ = env.reset(seed=0)
    steps = 0
    start = time.perf_counter()
    while steps < args.commands:
        obs, _, terminated, truncated, _ = env.step(expert.act(obs[None])[0])
        steps += 1
        if terminated or truncated:
            obs, _ = env.reset()
            expert.begin_episodes(1)
    env_rate = steps / (time.perf_counter() - start)

    hz = arm.physics_hz
    print(f"raw mujoco.mj_step           {raw:10.0f} physics steps/s ({raw / hz:6.1f}x real time)")
    print(
        f"SimForceArm (controller)     {controlled:10.0f} physics steps/s "
        f"({controlled / hz:6.1f}x real time)"
    )
    print(f"controller overhead          {raw / controlled:10.1f}x slower than raw")
    print(
        f"PeelEnv + expert             {env_rate:10.1f} control steps/s "
        f"({env_rate / env.config.control_hz:6.1f}x real time at {env.config.control_hz:g} Hz)"
    )


if __name__ == "__main__":
    main()
