"""Save time of the recorder's dataset writer against the dataset's size.

Builds one dataset per size (10, 100 and 1,000 camera-less 20-frame episodes: the recorder's
features for a 6-joint arm, with its per-episode metadata), each WITH THE NEW WRITER,
``DurableEpisodeWriter``, opens a recording session on each (``BackgroundEpisodeWriter``: the
writer in a process of its own, as the recorder runs it), then saves episodes in rounds, one
per dataset per round (every size sees the same load of the machine), and prints:

- control loop blocked: what a save costs the recorder's loop (stacking the frames and
  handing them to the writer process, ``BackgroundEpisodeWriter.submit``);
- time to durable: from the episode's end until it is on disk (written, fsynced and
  swapped in); the writer's own time is ``write``;
- session start: opening the dataset to resume (``open``) and the first save, which also
  builds the writer's twin folder (one pass over the dataset's files, once per session).

With ``--old-rev`` it also measures the writer as it was at that commit (lerobot's
``resume`` + ``save_episode`` + ``finalize`` in a hard-linked clone; synchronous: the loop
waited for all of it) at ``--old-sizes`` and prints before/after ratios. Numbers depend on the
machine, its disk and its load; nothing is asserted.

    .venv/bin/python benchmarks/record_save_scaling.py [--sizes 10 100 1000] [--saves 5]
        [--old-rev a8a9b4c --old-sizes 10 100] [--root DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from robopref.data.background_writer import BackgroundEpisodeWriter
from robopref.data.durable_writer import DurableEpisodeWriter

REPO = "bench/scaling"
FPS = 20
N_JOINTS = 6
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": (2 * N_JOINTS + 12,), "names": None},
    "observation.wrench": {"dtype": "float32", "shape": (6,), "names": None},
    "action": {"dtype": "float32", "shape": (6,), "names": None},
    "action.intended": {"dtype": "float32", "shape": (6,), "names": None},
    "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    "intervention": {"dtype": "bool", "shape": (1,), "names": None},
}


def episode_lists(length: int, rng: np.random.Generator) -> dict[str, list]:
    """One episode as the recorder holds it: per feature, a list of per-tick arrays."""
    frames = {}
    for key, spec in FEATURES.items():
        shape = spec["shape"]
        if spec["dtype"] == "bool":
            frames[key] = [np.array([bool(rng.integers(2))]) for _ in range(length)]
        else:
            frames[key] = [rng.normal(size=shape).astype(np.float32) for _ in range(length)]
    return frames


def episode_meta(index: int, length: int) -> dict:
    """Metadata shaped like the recorder's (outcome, timing, counts)."""
    timing = {
        "realtime": True,
        "target_hz": 20.0,
        "periods": length - 1,
        "missed_deadlines": 0,
        **{f"stat_{i}": 0.123456789 * i for i in range(9)},
    }
    return {
        "outcome": "save",
        "seed": index,
        "length": length,
        "duration_s": length / FPS,
        "interventions": 0,
        "intervention_steps": 0,
        "safety_clips": 0,
        "sensor_faults": 0,
        "timing": timing,
    }


def stacked(frames: dict[str, list]) -> dict[str, np.ndarray]:
    return {k: np.stack(v) for k, v in frames.items()}


def build(writer, size: int, length: int, rng, label: str) -> None:
    """Save episodes through ``writer`` itself until the dataset holds ``size``."""
    started = time.perf_counter()
    while writer.num_episodes < size:
        meta = episode_meta(writer.num_episodes, length)
        writer.save_episode(stacked(episode_lists(length, rng)), "bench", meta)
        if writer.num_episodes % 200 == 0 or writer.num_episodes == size:
            elapsed = time.perf_counter() - started
            print(f"  {label}: {writer.num_episodes} episodes ({elapsed:.0f} s)", flush=True)


def save_in_background(writer: BackgroundEpisodeWriter, length: int, rng) -> tuple:
    """One episode through the background writer as the recorder hands it over; returns
    (loop blocked, time to durable) in s, both from the episode's end."""
    lists = episode_lists(length, rng)
    meta = episode_meta(writer.num_episodes, length)
    ended = time.monotonic()
    writer.submit(stacked(lists), "bench", meta)  # what the control loop waits for
    handed = time.monotonic()
    writer.wait()
    return handed - ended, writer.records[-1].durable_at - ended


def save_synchronously(writer, length: int, rng) -> float:
    lists = episode_lists(length, rng)
    meta = episode_meta(writer.num_episodes, length)
    started = time.perf_counter()
    writer.save_episode(stacked(lists), "bench", meta)
    return time.perf_counter() - started


def open_session(root: Path, length: int, rng) -> tuple[BackgroundEpisodeWriter, float, float]:
    """Resume ``root`` as a recording session does: the writer process opens the dataset,
    then builds its twin (one pass over the files) while the first episode would be
    recorded. Returns the writer, the open time and the first save's time to durable (s)."""
    started = time.perf_counter()
    writer = BackgroundEpisodeWriter(root, REPO, FPS, FEATURES, resume=True)
    opened = time.perf_counter() - started
    _, first = save_in_background(writer, length, rng)
    return writer, opened, first


def load_old_writer(rev: str):
    """``DurableEpisodeWriter`` as it was at commit ``rev`` (None if git cannot show it)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:robopref/data/durable_writer.py"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "old_durable_writer.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_durable_writer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DurableEpisodeWriter


def fmt(values: list[float]) -> str:
    return f"{np.median(values) * 1e3:8.1f} {np.max(values) * 1e3:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--saves", type=int, default=5, help="measured saves per size")
    parser.add_argument("--frames", type=int, default=20, help="frames per episode")
    parser.add_argument("--old-rev", default="a8a9b4c", help="commit of the old writer; '' = skip")
    parser.add_argument("--old-sizes", type=int, nargs="*", default=[10, 100])
    parser.add_argument(
        "--root", default=None, help="folder for the datasets (default: a temp one)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tmp = Path(args.root or tempfile.mkdtemp(prefix="save_scaling_"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"{args.frames}-frame camera-less episodes, {args.saves} saves per size, in {tmp}"
    )

    # One dataset per size, each written by the new writer itself; then a recording session
    # on each (the writer in its own process, as the recorder runs it) and rounds of one save
    # per dataset, so every size is measured under the same load of the machine.
    BackgroundEpisodeWriter(tmp / "warm-up", REPO, FPS, FEATURES).close()  # the fork server
    sessions, results = {}, {}
    for size in sorted(args.sizes):
        with DurableEpisodeWriter(tmp / f"new_{size}", REPO, FPS, FEATURES) as writer:
            build(writer, size - 1, args.frames, rng, f"new writer, dataset {size}")
        writer, opened, first = open_session(tmp / f"new_{size}", args.frames, rng)
        sessions[size] = writer
        results[size] = {"blocked": [], "durable": [], "open": opened, "first": first}
    old_writers = {}
    old_class = load_old_writer(args.old_rev) if args.old_rev and args.old_sizes else None
    for size in sorted(args.old_sizes) if old_class else ():
        writer = old_class(tmp / f"old_{size}", REPO, FPS, FEATURES)
        build(writer, size, args.frames, rng, f"old writer ({args.old_rev}), dataset {size}")
        old_writers[size] = writer
    old = {size: [] for size in old_writers}
    for _ in range(args.saves):
        for size, writer in sessions.items():
            blocked, durable = save_in_background(writer, args.frames, rng)
            results[size]["blocked"].append(blocked)
            results[size]["durable"].append(durable)
        for size, writer in old_writers.items():
            old[size].append(save_synchronously(writer, args.frames, rng))
    for size, writer in sessions.items():
        results[size]["save"] = [r.write_s for r in writer.records[1:]]
        writer.close()

    print()
    header = (
        f"{'episodes':>8} | {'loop blocked ms':>17} | {'time to durable ms':>17} | "
        f"{'write ms':>17} | {'open s':>6} | {'1st save s':>10} | {'old save ms':>17} | "
        f"{'old/new':>7}"
    )
    print(header)
    print(
        f"{'':>8} | {'median      max':>17} | {'median      max':>17} | {'median      max':>17} |"
    )
    print("-" * len(header))
    for size, r in results.items():
        before = old.get(size)
        old_cell = fmt(before) if before else f"{'-':>17}"
        ratio = f"{np.median(before) / np.median(r['durable']):6.1f}x" if before else f"{'-':>7}"
        print(
            f"{size:>8} | {fmt(r['blocked'])} | {fmt(r['durable'])} | {fmt(r['save'])} | "
            f"{r['open']:6.2f} | {r['first']:10.2f} | {old_cell} | {ratio}"
        )
    print(
        "\nloop blocked: frames stacked and handed to the writer process; time to durable: from "
        "the episode's end until fsynced and swapped in; write: the writer's own time;\nopen, "
        "1st save: a session resuming the dataset (the first save also builds the twin folder); "
        "old: the previous writer, synchronous\n(the loop waited for the whole save); old/new: "
        "old save / new time to durable."
    )
    if not args.root:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
