"""``robopref finetune``: rounds of preference finetuning on an arm through the safety layer,
in the one PreferenceLoop. A whole round on the simulated arm (Peel-v0), one on the fake UR
arm (its ur_rtde API driven), the safety event logs read back, the round report, and a run
killed inside its steps that resumes to the uninterrupted run's result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import robopref_in_process, without_wall_times

from robopref.loop.arm_rollouts import FAULT_EVENTS

TINY = [
    "finetune.episode_steps=30",
    "loop.rounds=1",
    "loop.rollouts_per_round=3",
    "loop.queries_per_round=6",
    "loop.segment_length=10",
    "loop.eval_episodes=2",
    "loop.test_episodes=2",
    "loop.heldout_pairs=10",
    "train.reward.steps=10",
    "train.refine.steps=10",
    "progress=false",
]
PEEL = ["hardware=sim", "task=peel", "loop.scores_per_round=2", *TINY]
UR = ["hardware=ur", "hardware.simulate=true", "hardware.host=192.0.2.10", "task=reach",
      "reward=bt_ensemble", "teacher=oracle", "loop.scores_per_round=0", *TINY]


def still_base(path: Path, obs_dim: int) -> Path:
    """A BC checkpoint whose mean action is zero: the arm holds still (up to exploration),
    so a round runs its mechanics without touching the fruit hard."""
    from robopref.policies import BCConfig, BCPolicy

    torch.manual_seed(0)
    policy = BCPolicy(obs_dim, 6, BCConfig(hidden_sizes=[16, 16], action_low=-0.05,
                                           action_high=0.05))
    with torch.no_grad():
        policy.net[-1].weight.zero_()
        policy.net[-1].bias.zero_()
    return policy.save(path)


def safety_events(run: Path) -> list[dict]:
    path = run / "safety" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_round_on_the_simulated_arm_labels_scores_refines_and_reports(tmp_path, capsys):
    from robopref.data import load_episodes, load_scores
    from robopref.envs.peel import STEP_METRIC_NAMES

    base = still_base(tmp_path / "base", 35)
    run = tmp_path / "run"
    # The scripted operator presses "save" on its read 100: after round 0's two 30-tick
    # evaluation episodes, that is tick 10 of the second rollout, which it stops.
    robopref_in_process("finetune", *PEEL, f"base={base}", "+teleop.buttons_schedule={100: save}",
                        f"hydra.run.dir={run}", capsys=capsys)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["task"] == "peel-v0"
    assert metrics["labels"] == 6 + 2  # pair answers and episode scores together
    assert metrics["test_episodes"] == 2

    rollouts = load_episodes(run / "datasets" / "rollouts_round1")
    assert [len(e) for e in rollouts] == [30, 10, 30]
    assert [e.meta["stopped"] for e in rollouts] == [False, True, False]
    assert rollouts[1].meta["stop_reason"] == "save"
    assert all(e.metric_names == STEP_METRIC_NAMES and np.isfinite(e.rewards).all()
               for e in rollouts)
    assert all(e.meta["variation"] < 1_000_000 for e in rollouts)  # train scenes only
    scores = load_scores(run / "scores" / "round1.json")
    assert [s.segment.episode_id for s in scores] == [e.id for e in rollouts[:2]]

    round1 = metrics["rounds"][1]
    assert round1["extra"]["eval_split"] == "test"
    assert (round1["extra"]["pairs"], round1["extra"]["scores"]) == (6, 2)
    quality = round1["extra"]["quality"]
    assert {"removed_fraction", "gouged_fraction", "peak_contact_force_n", "success"} <= set(
        quality)
    assert len(quality["removed_fraction"]["ci95"]) == 2
    reward = round1["extra"]["reward"]
    for name in ("removed_gain", "in_band_fraction", "peak_force_n", "learned"):
        assert f"contribution/{name}" in reward and reward[f"weight/{name}"] > 0

    report = run / "report"
    page = (report / "index.html").read_text()
    assert "round 1" in page and "base_vs_refined.webm" in page and "cdn" not in page.lower()
    assert json.loads((report / "report.json").read_text())["format_version"] == 1
    for name in ("quality.png", "labels.png", "reward.png", "base_vs_refined.webm"):
        assert (report / "round1" / name).stat().st_size > 1000, name
    import av

    with av.open(str(report / "round1" / "base_vs_refined.webm")) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 30 and frames[0].shape[1] > 2 * frames[0].shape[0]  # side by side

    # No rollout met a protective stop or a refused command; clips are allowed and counted.
    events = safety_events(run)
    assert not [e for e in events if e["kind"] in FAULT_EVENTS]
    assert all(e.meta["safety"]["faults"] == 0 for e in rollouts)
    assert {e["collection"].split()[0] for e in events} <= {"eval", "rollouts_round1", "test",
                                                            "film"}


def test_a_round_on_the_fake_ur_arm_drives_its_rtde_api(tmp_path):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from robopref.cli.finetune import build_finetune
    from robopref.data import load_episodes

    base = still_base(tmp_path / "base", 27)  # 6 joints: 2*6 + 12 arm features + 3 target
    # The scripted operator stops the first rollout at its tick 5 (after 2 x 20 eval ticks).
    overrides = [*UR, "finetune.episode_steps=20", f"base={base}",
                 "+teleop.buttons_schedule={45: discard}"]
    with initialize_config_module("robopref.configs", version_base=None):
        cfg = OmegaConf.to_container(compose("finetune", overrides=overrides), resolve=True)
    loop, closers = build_finetune(cfg, tmp_path / "run")
    ur = loop.collector.arm.arm
    try:
        summary = loop.run()
    finally:
        for close in closers:
            close()
    assert type(ur).__name__ == "URArm" and ur.config.simulate
    robot = ur.rtde.robot("192.0.2.10")
    commanded = robot.count("servoL")
    # 2 eval + 3 rollouts (one stopped at 5) + 2 eval + 2 x 2 test episodes of 20 ticks,
    # plus the reach task's homing moves between episodes.
    assert commanded >= 20 * (2 + 2 + 2 + 4) + 5
    assert robot.count("kickWatchdog") == commanded  # every command kicks the RTDE watchdog
    assert robot.count("setWatchdog") >= 1 and robot.count("getActualTCPPose") > commanded
    assert summary["status"] == "finished" and summary["labels"] == 6
    rollouts = load_episodes(tmp_path / "run" / "datasets" / "rollouts_round1")
    assert [len(e) for e in rollouts] == [5, 20, 20]
    assert rollouts[0].meta["stop_reason"] == "discard"  # kept, marked
    assert rollouts[0].observations.shape[1] == 27
    assert not [e for e in safety_events(tmp_path / "run") if e["kind"] in FAULT_EVENTS]


class PressDown:
    """Drives the knife straight down at the step limit: into the fruit, past the force limit."""

    def begin_episodes(self, n):
        pass

    def act(self, obs):
        return np.tile(np.array([0, 0, -0.01, 0, 0, 0], np.float32), (len(obs), 1))


def arm_collector(tmp_path, on_stop: str):
    from robopref.envs.peel import PeelConfig, PeelTask
    from robopref.hardware import make_arm
    from robopref.hardware.safety import SafeArm, SafetyConfig
    from robopref.hardware.teleop import ScriptedConfig, ScriptedTeleop
    from robopref.loop.arm_rollouts import ArmCollector, ArmRolloutConfig

    arm = SafeArm(make_arm("sim", control_hz=20), SafetyConfig())
    arm.connect()
    task = PeelTask(PeelConfig(episode_steps=60))
    collector = ArmCollector(ArmRolloutConfig(episode_steps=60, on_protective_stop=on_stop),
                             arm, ScriptedTeleop(ScriptedConfig()), task=task,
                             metric_names=("removed_gain",),
                             events_path=tmp_path / "events.jsonl", progress=False)
    return collector, arm


@pytest.mark.parametrize("on_stop", ["recover", "stop"])
def test_a_protective_stop_is_kept_marked_and_stops_or_recovers(tmp_path, on_stop):
    from robopref.loop import RunStopped

    collector, arm = arm_collector(tmp_path, on_stop)
    folder = tmp_path / "rollouts"
    try:
        if on_stop == "stop":
            with pytest.raises(RunStopped, match="protective stop") as info:
                collector.collect(PressDown(), [3, 4], "rollouts_round1", folder)
            assert "\n" not in str(info.value)
            episodes = [3]
        else:
            episodes = collector.collect(PressDown(), [3, 4], "rollouts_round1", folder)
    finally:
        collector.close()
        arm.disconnect()
    from robopref.data import load_episodes

    kept = load_episodes(folder)
    assert len(kept) == len(episodes)
    for episode in kept:  # each pressed until the safety layer stopped it, and was kept
        assert episode.meta["stop_reason"] == "protective_stop" and episode.meta["stopped"]
        assert 1 < len(episode) < 60 and episode.meta["safety"]["faults"] == 1
    stops = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()
             if '"protective_stop"' in line]
    assert [s["attempt"] for s in stops] == list(range(len(episodes)))
    assert all(s["detail"]["reason"] == "force_limit" for s in stops)


def test_the_residual_bound_is_in_the_tasks_action_units():
    from robopref.cli.finetune import residual_bound
    from robopref.envs.peel_task import PeelTaskConfig, PeelV0Task

    task = PeelV0Task(PeelTaskConfig())
    group = {"name": "rwr", "residual": True,
             "residual_policy": {"max_residual": None, "max_residual_fraction": 0.2}}
    bound = residual_bound(group, task)["residual_policy"]["max_residual"]
    np.testing.assert_allclose(bound, [0.002] * 3 + [0.01] * 3)  # m, rad per tick
    fixed = {**group, "residual_policy": {"max_residual": 0.001}}
    assert residual_bound(fixed, task) == fixed


def test_loop_settings_of_finetuning_are_validated():
    from robopref.errors import ConfigError
    from robopref.loop import LoopConfig

    for bad, key in (({"eval_split": "holdout"}, "eval_split"),
                     ({"scores_per_round": -1}, "scores_per_round"),
                     ({"num_demos": -1}, "num_demos")):
        with pytest.raises(ConfigError, match=key) as info:
            LoopConfig(**bad)
        assert "\n" not in str(info.value)
    assert LoopConfig(num_demos=0, eval_split="test").scores_per_round == 0


def test_the_report_page_escapes_what_it_shows():
    from robopref.loop.round_report import render_html

    rounds = [{"round": 0, "success_rate": 0.5, "reward_accuracy": float("nan"), "labels": 0,
               "queries": 0, "wall_time_s": 1.0,
               "extra": {"quality": {"<b>x</b>": {"mean": 1.0, "ci95": [0.5, 1.5]}}}}]
    page = render_html("<script>alert(1)</script>", rounds,
                       [{"round": 0, "plots": ['a"b.png'], "video": None}])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and 'src="a&quot;b.png"' in page


def test_bad_finetune_settings_are_one_line(tmp_path, capsys):
    base = still_base(tmp_path / "base", 35)
    cases = [
        (["task=peel", "hardware=ur", "hardware.simulate=true", "hardware.host=h"],
         "task=peel needs hardware=sim"),
        (["task=peel", "reward=bt_ensemble"], "loop.scores_per_round=0"),
        (["task=reach", "base=" + str(base)], "takes 35-dim observations"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as info:
            robopref_in_process("finetune", *TINY, f"base={base}", *extra,
                                f"hydra.run.dir={tmp_path}/bad", capsys=capsys)
        assert info.value.code == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err


# -- kill and resume -------------------------------------------------------------------------
PAUSE_S = 0.6


def start(args: list[str], pause: bool) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "osmesa"}
    if pause:
        env["ROBOPREF_TEST_STEP_PAUSE_S"] = str(PAUSE_S)
    return subprocess.Popen([sys.executable, "-m", "robopref.cli", "finetune", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def state(run: Path) -> dict:
    try:
        return json.loads((run / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def wait_for(proc, condition, what: str) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def durable_episodes(folder: Path) -> int:
    try:
        return len(json.loads((folder / "robopref.json").read_text())["episodes"])
    except (OSError, json.JSONDecodeError, KeyError):
        return 0


@pytest.mark.slow  # ~3.5 min on 2 cores: four process starts, each importing torch/lerobot
def test_killed_inside_the_rollouts_and_the_report_it_resumes_to_the_same_result(tmp_path):
    base = still_base(tmp_path / "base", 35)
    args = [*PEEL, f"base={base}", "tensorboard=false"]
    reference = start([*args, f"hydra.run.dir={tmp_path}/reference"], pause=False)
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]

    run = tmp_path / "killed"
    proc = start([*args, f"hydra.run.dir={run}"], pause=True)
    # Killed after the first rollout episode is durable, before the step commits.
    folder = run / "datasets" / "rollouts_round1"
    wait_for(proc, lambda: durable_episodes(folder) >= 1, "no rollout became durable")
    kill(proc)
    assert state(run)["current"] == "round1/rollout"
    proc = start(["--resume", str(run)], pause=True)
    wait_for(proc, lambda: state(run).get("current") == "round1/report", "report never began")
    time.sleep(PAUSE_S)  # inside the report step, before its commit
    kill(proc)
    assert "round1/report" not in state(run)["completed"]
    proc = start(["--resume", str(run)], pause=False)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]

    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    got = json.loads((run / "metrics.json").read_text())
    assert without_wall_times(got) == without_wall_times(expected)
    assert got["status"] == "finished" and got["labels"] == 8
    assert durable_episodes(folder) == 3
    assert (run / "report" / "round1" / "base_vs_refined.webm").exists()
    assert [p for p in run.rglob(".*")] == []  # no temporary files left
