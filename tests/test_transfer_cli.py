"""``robopref transfer``: the whole chain on tiny budgets, its outputs, resume, bad input."""

from __future__ import annotations

import json

import pytest
from test_cli import TINY, one_error_line, robopref

TINY_TRANSFER = [
    "source=door-open-v3",
    "target=door-close-v3",
    *[o for o in TINY if not o.startswith("env.task")],
    "pools.episodes=8",
    "pools.segment_length=20",
    "pools.source_pairs=100",
    "labels.nodes=40",
    "labels.pairs=100",
    "labels.reward_train_pairs=60",
    "labels.heldout_pairs=60",
    "labels.reward_seeds=2",
    "transfer.source_nodes=60",
    "transfer.target_nodes=60",
    "transfer.gw.epsilon=0.05",
    "tensorboard=false",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "run"
    result = robopref("transfer", *TINY_TRANSFER, f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_transfer_writes_plan_calibration_and_metrics(finished_run):
    out, result = finished_run
    for name in ("plan.png", "calibration.png", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert metrics["source"] == "door-open-v3" and metrics["target"] == "door-close-v3"
    scores = metrics["labels"]["scores"]
    assert {"plain", "sharpen", "rank", "random_plan", "source_reward", "goal_distance",
            "few_shot", "pooled", "pooled_fused", "pooled_oriented", "goal_relative",
            "goal_relative_fused", "goal_relative_oriented"} <= set(scores) | set(
        metrics["labels"]["not_converged"])
    # The default orients the plan by goal progress (zero-shot) and says which way it read it.
    assert isinstance(metrics["labels"]["orientation"]["plain"]["flip"], bool)
    assert metrics["labels"]["few_shot"]["labels"] == 10
    for s in scores.values():
        assert 0 <= s["accuracy"] <= 1 and 0 <= s["ece"] <= 1
        assert s["pairs"] + metrics["labels"]["oracle_ties"] == 100
    rewards = metrics["rewards"]
    assert len(rewards["gaussian_minus_bt"]) == 2
    for key in ("oracle_subset", "oracle_subset_plus_transfer", "transfer_only", "oracle_all",
                "bt_flipped", "gaussian_flipped"):
        assert 0 <= rewards[key] <= 1
    for teacher in ("oracle", "transfer"):
        run = metrics["refinement"][teacher]
        assert run["status"] == "finished" and run["test_episodes"] == 2
        assert (out / f"refine_{teacher}" / "metrics.json").exists()
    transfer_labels = json.loads((out / "refine_transfer" / "run.json").read_text())
    assert transfer_labels["config"]["teacher"]["name"] == "transfer"
    assert "labels plain" in result.stdout


def test_a_finished_transfer_resumes_without_recomputing(finished_run):
    out, _ = finished_run
    before = json.loads((out / "metrics.json").read_text())
    result = robopref("transfer", "--resume", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[transfer]" not in result.stdout  # no step ran again
    after = json.loads((out / "metrics.json").read_text())
    assert after["labels"] == before["labels"] and after["rewards"] == before["rewards"]


def test_transfer_refuses_one_task_as_both_ends(tmp_path):
    line = one_error_line(robopref("transfer", "source=reach-v3", "target=reach-v3",
                                   f"hydra.run.dir={tmp_path / 'r'}"))
    assert "transfer needs two tasks" in line


def test_transfer_resume_needs_a_transfer_run_folder(tmp_path):
    line = one_error_line(robopref("transfer", "--resume", str(tmp_path)))
    assert "not a robopref transfer run folder" in line
