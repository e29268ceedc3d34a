"""Runs that resume: SIGKILL at a random instant inside each step of a round, resume, and end
with what an uninterrupted run of the same seed ends with."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import without_wall_times

STEPS = ("rollout", "select", "label", "reward", "refine", "evaluate")
PAUSE_S = 0.6
TINY = [
    "env.task=reach-v3",
    "env.max_episode_steps=40",
    "progress=false",
    "tensorboard=false",
    "loop.rounds=2",
    "loop.num_demos=2",
    "loop.rollouts_per_round=3",
    "loop.eval_episodes=2",
    "loop.test_episodes=3",
    "loop.queries_per_round=8",
    "loop.segment_length=10",
    "loop.heldout_pairs=20",
    "loop.validation_episodes=0",
    "loop.average_last=2",
    "train.bc.steps=30",
    "train.reward.steps=20",
    "train.refine.steps=20",
]


def start(args: list[str], pause: bool) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "osmesa"}
    if pause:
        env["ROBOPREF_TEST_STEP_PAUSE_S"] = str(PAUSE_S)
    return subprocess.Popen(
        [sys.executable, "-m", "robopref.cli", "demo", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def state(run: Path) -> dict:
    try:
        return json.loads((run / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def kill_inside(proc: subprocess.Popen, run: Path, step: str, rng: random.Random) -> None:
    """Wait until ``step`` is in progress, SIGKILL at a random instant before it commits."""
    deadline = time.monotonic() + 300
    while state(run).get("current") != step:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert step not in state(run).get("completed", {}), f"{step} finished unseen"
        assert time.monotonic() < deadline, f"{step} never started"
        time.sleep(0.005)
    # The step's work happens between two pauses of PAUSE_S, so any instant up to 2 * PAUSE_S
    # after it started lies inside it, before its commit.
    time.sleep(rng.uniform(0.0, 2 * PAUSE_S))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    after = state(run)
    assert step not in after["completed"] and after["current"] == step, step


def counts(run: Path) -> dict:
    from robopref.data import load_episodes, load_preferences

    episodes = sum(len(load_episodes(d)) for d in sorted((run / "datasets").iterdir()))
    labels = sum(len(load_preferences(f)) for f in (run / "labels").glob("round*.json"))
    return {"episodes": episodes, "labels": labels}


def test_kill_at_random_inside_every_step_of_a_round_then_resume(tmp_path):
    rng = random.Random(20261202)
    reference = start([*TINY, f"hydra.run.dir={tmp_path}/reference"], pause=False)
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]

    run = tmp_path / "killed"
    proc = start([*TINY, f"hydra.run.dir={run}"], pause=True)
    for step in STEPS:
        kill_inside(proc, run, f"round1/{step}", rng)
        proc = start(["--resume", str(run)], pause=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "resuming" in out

    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    got = json.loads((run / "metrics.json").read_text())
    assert without_wall_times(got) == without_wall_times(expected)
    assert counts(run) == counts(tmp_path / "reference")
    assert got["status"] == "finished" and got["labels"] == expected["labels"] > 0
    leftovers = [p for p in run.rglob(".*")]
    assert leftovers == [], leftovers  # no temporary files left

    changed = subprocess.run(
        [sys.executable, "-m", "robopref.cli", "demo", "--resume", str(run), "loop.rounds=3"],
        capture_output=True, text=True, timeout=300,
    )
    assert changed.returncode == 2
    lines = [line for line in changed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "config differs at 'loop.rounds'" in lines[0], changed.stderr


def test_resume_of_another_format_version_is_refused(tmp_path):
    from robopref.errors import RobopError
    from robopref.loop import RunStore

    store = RunStore(tmp_path)
    store.open({"seed": 0}, {})
    payload = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**payload, "format_version": 99}))
    with pytest.raises(RobopError, match="format version 99"):
        RunStore(tmp_path).open({"seed": 0}, {})
