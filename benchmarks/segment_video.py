"""What showing segments to people costs: simulator states in rollouts, and videos.

1. Recording: a 150-step push-v3 expert episode collected and saved with and without its
   simulator states (``Episode.sim_states``, the ``sim.state`` feature): seconds to collect,
   seconds to save, and bytes on disk (the dataset folder, and its Parquet data alone).
2. Rendering: a segment of ``--frames`` frames re-rendered from those states at the video
   cache's default size, then encoded to VP9 WebM: seconds each, and the file's size.

Prints the numbers measured in this run; no thresholds are asserted. Set ``MUJOCO_GL``
(``osmesa`` on CPU, ``egl`` on GPU) first.

    MUJOCO_GL=osmesa .venv/bin/python benchmarks/segment_video.py [--frames 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from robopref.data import save_episodes
from robopref.envs import MetaWorldConfig, MetaWorldEnv
from robopref.envs.metaworld_render import MetaWorldRenderer
from robopref.envs.metaworld_task import MetaWorldTask
from robopref.label.video import DEFAULT_HEIGHT, DEFAULT_SIM_CAMERA, DEFAULT_WIDTH, encode_webm
from robopref.rollout import collect_episodes

STEPS = 150


def folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def collect(task: MetaWorldTask, with_states: bool):
    """One expert episode; without states, the env's ``sim_state`` info is dropped."""
    if not with_states:
        MetaWorldEnv.reset = _dropping(MetaWorldEnv.reset, 1)
        MetaWorldEnv.step = _dropping(MetaWorldEnv.step, 4)
    try:
        vec = task.make_vector_env(1, asynchronous=False)
        try:
            start = time.perf_counter()
            [episode] = collect_episodes(vec, task.make_expert(None, 1), [[0, 3]], task.name,
                                         STEPS, progress=False)
            return episode, time.perf_counter() - start
        finally:
            vec.close()
    finally:
        for name in ("reset", "step"):
            method = getattr(MetaWorldEnv, name)
            setattr(MetaWorldEnv, name, getattr(method, "__wrapped__", method))


def _dropping(method, info_index: int):
    def call(self, *args, **kwargs):
        out = method(self, *args, **kwargs)
        out[info_index].pop("sim_state", None)
        return out

    call.__wrapped__ = method
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    task = MetaWorldTask(MetaWorldConfig("push-v3", max_episode_steps=STEPS))
    with tempfile.TemporaryDirectory() as tmp:
        save_episodes([collect(task, True)[0]], Path(tmp) / "warm-up", fps=task.fps)
        rows = {}
        for i, with_states in enumerate((False, True) * args.repeats):  # interleaved
            episode, collect_s = collect(task, with_states)
            root = Path(tmp) / f"ds-{i}"
            start = time.perf_counter()
            save_episodes([episode], root, fps=task.fps, state_dim=task.state_dim)
            save_s = time.perf_counter() - start
            rows.setdefault(with_states, []).append(
                (collect_s, save_s, folder_bytes(root), folder_bytes(root, "*.parquet")))
        print(f"push-v3, one {STEPS}-step episode (fastest of {args.repeats} runs each):")
        for with_states, runs in rows.items():
            c, s, b, p = np.min(np.array(runs), axis=0)
            label = "with sim.state   " if with_states else "without sim.state"
            print(f"  {label}: collect {c:.3f} s, save {s:.3f} s, folder {b / 1e3:.1f} kB, "
                  f"parquet {p / 1e3:.1f} kB")
        episode = collect(task, True)[0]
        print(f"  sim.state: {episode.sim_states.shape[1]} float64 per frame, "
              f"{episode.sim_states.nbytes / 1e3:.1f} kB raw per episode")

        renderer = MetaWorldRenderer(task.name, DEFAULT_SIM_CAMERA, DEFAULT_HEIGHT, DEFAULT_WIDTH)
        states = episode.sim_states[: args.frames]
        renderer.render([0, 3], states[:1])  # first draw compiles shaders
        times = []
        for i in range(args.repeats):
            start = time.perf_counter()
            frames = renderer.render([0, 3], states)
            drawn = time.perf_counter()
            path = encode_webm(frames, task.fps, Path(tmp) / f"v{i}.webm")
            times.append((drawn - start, time.perf_counter() - drawn))
        renderer.close()
        draw_s, encode_s = np.min(np.array(times), axis=0)
        print(f"{len(states)}-frame segment at {DEFAULT_HEIGHT}x{DEFAULT_WIDTH} "
              f"(camera {DEFAULT_SIM_CAMERA}, fastest of {args.repeats}): render {draw_s:.2f} s "
              f"({1e3 * draw_s / len(states):.0f} ms/frame), encode {encode_s:.2f} s, "
              f"WebM {path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
