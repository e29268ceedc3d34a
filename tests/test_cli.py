"""The command line: help, one-line errors for bad input, and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import robopref_in_process

from robopref.report import format_table, load_summaries

TINY = [
    "env.task=reach-v3",
    "env.max_episode_steps=60",
    "num_envs=1",
    "async_envs=false",
    "progress=false",
    "loop.rounds=1",
    "loop.num_demos=2",
    "loop.rollouts_per_round=2",
    "loop.eval_episodes=2",
    "loop.test_episodes=2",
    "loop.queries_per_round=10",
    "loop.segment_length=20",
    "loop.heldout_pairs=20",
    "loop.validation_episodes=2",
    "loop.average_last=0",
    "train.bc.steps=20",
    "train.reward.steps=5",
    "train.refine.steps=5",
]


def robopref(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "robopref.cli", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_help_lists_subcommands_and_config_groups():
    result = robopref("--help")
    assert result.returncode == 0
    for word in ("demo", "report", "teacher", "oracle", "mistake", "disagreement", "rwr"):
        assert word in result.stdout


def test_unknown_subcommand():
    assert "unknown subcommand 'frobnicate'" in one_error_line(robopref("frobnicate"))


def test_unknown_task_is_one_line_naming_the_fix(tmp_path):
    line = one_error_line(robopref("demo", "env.task=pusj-v3", f"hydra.run.dir={tmp_path}/r"))
    assert "unknown Meta-World task 'pusj-v3'" in line and "push-v3" in line


def test_unknown_config_key_is_one_line(tmp_path):
    line = one_error_line(robopref("demo", "loop.nonsense=3", f"hydra.run.dir={tmp_path}/r"))
    assert "loop.nonsense" in line and "'+'" in line


def test_added_key_unknown_to_the_dataclass_is_one_line(tmp_path):
    line = one_error_line(robopref("demo", "+loop.nonsense=3", f"hydra.run.dir={tmp_path}/r"))
    assert "unknown key(s) loop.nonsense" in line and "valid keys" in line


def test_missing_demo_dataset_is_one_line(tmp_path):
    line = one_error_line(
        robopref("demo", *TINY, f"demos_path={tmp_path}/nope", f"hydra.run.dir={tmp_path}/r")
    )
    assert "not a LeRobotDataset folder" in line


def test_checkpoint_of_another_shape_is_one_line(tmp_path):
    from robopref.policies import BCConfig, BCPolicy

    BCPolicy(7, 4, BCConfig(hidden_sizes=[8])).save(tmp_path / "small")
    line = one_error_line(
        robopref("demo", *TINY, f"policy_checkpoint={tmp_path}/small",
                 f"hydra.run.dir={tmp_path}/r")
    )
    assert "obs/act dims 7/4" in line


def test_report_without_runs_is_one_line(tmp_path):
    assert "no finished run" in one_error_line(robopref("report", str(tmp_path)))


def _summary(task, config, seed, test):
    return {"task": task, "config_name": config, "seed": seed, "test_success_rate": test,
            "test_ci95": [test - 0.1, test + 0.1], "bc_test_success_rate": 0.5,
            "test_improvement": test - 0.5, "bc_success_rate": 0.6,
            "refined_success_rate": 0.7, "reward_accuracy": 0.9, "labels": 100,
            "wall_time_s": 10.0}


def test_report_groups_by_task_and_config_with_an_interval_over_seeds():
    from scipy import stats

    rows = [_summary("push-v3", "", s, 0.6 + 0.1 * s) for s in range(3)]
    rows += [_summary("push-v3", "teacher=mistake", 0, 0.4), _summary("reach-v3", "", 0, 0.9)]
    table = format_table(rows)
    blocks = table.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        "push-v3  config: default", "push-v3  config: teacher=mistake", "reach-v3  config: default"
    ]
    mean_line = blocks[0].splitlines()[-1].split()
    half = stats.t.ppf(0.975, 2) * 0.1 / 3**0.5  # std over seeds 0.1, 3 seeds
    assert mean_line[0] == "mean" and mean_line[2] == "0.70"
    assert f"[{0.7 - half:.2f}," in blocks[0] and f"{0.7 + half:.2f}] (seeds)" in blocks[0]
    assert "mean" not in blocks[1] and "mean" not in blocks[2]  # one seed: no interval


def test_the_final_policy_can_average_the_last_rounds(tmp_path):
    args = [a for a in TINY if not a.startswith(("loop.rounds", "loop.validation", "loop.average"))]
    result = robopref("demo", *args, "loop.rounds=2", "loop.validation_episodes=0",
                      "loop.average_last=2", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["final_policy"] == "average of rounds 1-2"
    assert metrics["selected_round"] is None
    assert metrics["improvement"] == pytest.approx(
        metrics["refined_success_rate"] - metrics["bc_success_rate"]
    )
    assert (tmp_path / "run" / "checkpoints" / "policy_selected" / "config.json").is_file()
    assert metrics["test_episodes"] == 2 and len(metrics["test_ci95"]) == 2
    assert "final policy: average of rounds 1-2" in result.stdout


def test_multirun_sweeps_seeds_and_writes_every_artifact(tmp_path):
    """A tiny end-to-end sweep over two seeds through the real CLI."""
    result = robopref("demo", "--multirun", "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path}/m")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p for p in (tmp_path / "m").iterdir() if p.is_dir() and p.name[0].isdigit())
    assert [r.name for r in runs] == ["0_reach-v3_seed0", "1_reach-v3_seed1"]
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["labels"] <= metrics["queries"] == 10
        assert [r["round"] for r in metrics["rounds"]] == [0, 1]
        assert metrics["selected_round"] in (0, 1)
        assert len(metrics["validation_learned_returns"]) == 2
        chosen = metrics["rounds"][metrics["selected_round"]]["success_rate"]
        assert metrics["refined_success_rate"] == chosen
        for name in ("config.yaml", "success_vs_round.png", "reward_accuracy_vs_labels.png",
                     "checkpoints/policy_bc/model.safetensors",
                     "checkpoints/policy_round1/config.json",
                     "checkpoints/reward_round1/model.safetensors",
                     "checkpoints/policy_selected/config.json", "run.json", "state.json"):
            assert (run / name).is_file(), name
        assert list((run / "tb").rglob("events.out.tfevents*"))
        assert (run / "datasets" / "demos" / "meta" / "info.json").is_file()
        assert (run / "datasets" / "rollouts_round1" / "robopref.json").is_file()
    seeds = [s["seed"] for s in load_summaries([tmp_path / "m"])]
    assert seeds == [0, 1]
    report = robopref("report", str(tmp_path / "m"))
    assert report.returncode == 0 and "mean" in report.stdout


def test_demo_reuses_a_recorded_dataset_and_a_checkpoint(tmp_path):
    """demos_path and policy_checkpoint feed a run from an earlier run's artifacts."""
    first = robopref("demo", *TINY, f"hydra.run.dir={tmp_path}/a")
    assert first.returncode == 0, first.stderr[-3000:]
    second = robopref(
        "demo", *TINY, f"demos_path={tmp_path}/a/datasets/demos",
        f"policy_checkpoint={tmp_path}/a/checkpoints/policy_bc", f"hydra.run.dir={tmp_path}/b",
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert not (tmp_path / "b" / "datasets" / "demos").exists()  # no new demos were collected
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["rounds"][0]["round"] == 0


def test_cfg_job_prints_the_composed_config_with_overrides(capsys):
    # "job" is the value of Hydra's --cfg flag, not an override to check.
    out = robopref_in_process("demo", "refine=ppo", "--cfg", "job", capsys=capsys)
    assert "refine:" in out and "clip" in out
