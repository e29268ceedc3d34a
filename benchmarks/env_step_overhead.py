"""Env steps/s: raw ``mujoco.mj_step`` vs Meta-World's ``env.step`` vs robopref's wrapper.

All three run the same MuJoCo model; one Meta-World step is ``frame_skip`` physics steps plus
reward and observation code. Also compares sync vs async vector envs for batched rollouts.
Prints ratios measured in this one run; no thresholds are asserted.

    .venv/bin/python benchmarks/env_step_overhead.py [--task push-v3] [--steps 3000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import gymnasium as gym
import mujoco
import numpy as np

from robopref.envs import MetaWorldConfig, MetaWorldEnv
from robopref.envs.metaworld_task import MetaWorldTask


def steps_per_second(step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="push-v3")
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    ours = MetaWorldEnv(MetaWorldConfig(args.task, max_episode_steps=500))
    raw = gym.make("Meta-World/MT1", env_name=args.task, seed=0, disable_env_checker=True)
    raw.reset(seed=0)
    ours.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(args.steps, 4)).astype(np.float32)
    frame_skip = ours.unwrapped.frame_skip

    def stepper(env):
        state = {"i": 0}

        def step():
            _, _, term, trunc, _ = env.step(actions[state["i"] % len(actions)])
            state["i"] += 1
            if term or trunc:
                env.reset()

        return step

    model, data = ours.unwrapped.model, ours.unwrapped.data

    def physics():
        for _ in range(frame_skip):
            mujoco.mj_step(model, data)

    results = {}
    for _ in range(2):  # second pass is the measured one (warm caches)
        results = {
            "raw mj_step x frame_skip": steps_per_second(physics, args.steps),
            "Meta-World env.step": steps_per_second(stepper(raw), args.steps),
            "robopref MetaWorldEnv.step": steps_per_second(stepper(ours), args.steps),
        }
    base = results["Meta-World env.step"]
    print(f"task {args.task}, {args.steps} steps each, frame_skip {frame_skip}")
    for name, rate in results.items():
        print(f"  {name:<30} {rate:9.0f} steps/s   ({rate / base:5.2f} x Meta-World)")
    overhead = 1 - results["robopref MetaWorldEnv.step"] / base
    print(f"  wrapper overhead vs Meta-World env.step: {overhead * 100:+.1f}% (target: within 10%)")

    cfg = MetaWorldConfig(args.task, max_episode_steps=150)
    for asynchronous in (False, True):
        vec = MetaWorldTask(cfg).make_vector_env(2, asynchronous=asynchronous)
        vec.reset(seed=0)
        batch = actions[:, None, :].repeat(2, axis=1)
        n = args.steps // 2
        start = time.perf_counter()
        for i in range(n):
            vec.step(batch[i % len(batch)])
        rate = 2 * n / (time.perf_counter() - start)
        vec.close()
        kind = "async" if asynchronous else "sync"
        print(
            f"  {'vector env x2 (' + kind + ')':<30} {rate:9.0f} steps/s   "
            f"({rate / base:5.2f} x Meta-World)"
        )


if __name__ == "__main__":
    main()
