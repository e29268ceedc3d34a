"""One PreferenceLoop for every task: Meta-World and Peel-v0 through the same CLI, demos from a
recording, and an asynchronous label source whose late answers join the next round."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_episodes, robopref_in_process

PEEL_TINY = [
    "env=peel",
    "+env.peel.episode_steps=40",
    "progress=false",
    "tensorboard=false",
    "loop.rounds=1",
    "loop.num_demos=2",
    "loop.rollouts_per_round=2",
    "loop.queries_per_round=6",
    "loop.eval_episodes=1",
    "loop.test_episodes=2",
    "loop.heldout_pairs=10",
    "loop.segment_length=10",
    "loop.average_last=1",
    "loop.validation_episodes=0",
    "train.bc.steps=20",
    "train.reward.steps=5",
    "train.refine.steps=5",
]


cli = robopref_in_process


def test_peel_runs_the_same_loop_on_the_simulated_force_arm(tmp_path, capsys):
    out = cli("demo", *PEEL_TINY, f"hydra.run.dir={tmp_path}/run", capsys=capsys)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["task"] == "peel-v0" and metrics["status"] == "finished"
    assert metrics["labels"] == 6 and metrics["test_episodes"] == 2
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["task"]["action_units"] == "m, rad per tick"
    assert run["task"]["state_dim"] == 24
    from robopref.data import load_episodes

    rollouts = load_episodes(tmp_path / "run" / "datasets" / "rollouts_round1")
    high = np.array([0.01] * 3 + [0.05] * 3)  # Peel-v0's step limits (m, rad per tick)
    assert all(np.all(np.abs(e.actions) <= high + 1e-6) for e in rollouts)
    assert all(e.meta["variation"] < 1_000_000 for e in rollouts)  # train scenes only
    assert "peel-v0" in out


def test_peel_demos_from_a_recording_enter_the_loop(tmp_path, capsys):
    cli(
        "record", "hardware=sim", "teleop=scripted", "sensor=sim", "task=peel",
        "record.num_episodes=2", "record.max_episode_s=2", "record.realtime=false",
        "progress=false", f"record.root={tmp_path}/rec", f"hydra.run.dir={tmp_path}/session",
        capsys=capsys,
    )
    cli("demo", *PEEL_TINY, f"demos_path={tmp_path}/rec", f"hydra.run.dir={tmp_path}/run",
        capsys=capsys)
    store = json.loads((tmp_path / "run" / "datasets.json").read_text())
    assert "../rec" in store.values()  # named by relative path, not copied
    assert not (tmp_path / "run" / "datasets" / "demos").exists()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "finished"


def test_recorded_demos_of_another_task_are_refused_in_one_line(tmp_path, capsys):
    from robopref.data import save_episodes

    save_episodes(make_episodes(1, T=50, obs_dim=5, act_dim=2), tmp_path / "ds", fps=20)
    with pytest.raises(SystemExit) as info:
        cli("demo", *PEEL_TINY, f"demos_path={tmp_path}/ds", f"hydra.run.dir={tmp_path}/r",
            capsys=capsys)
    assert info.value.code == 2
    assert "obs/act dims 5/2" in capsys.readouterr().err


# -- asynchronous sources -------------------------------------------------------------------
def _queries(n: int, offset: int = 0):
    from robopref.preferences import Query, sample_pairs

    episodes = make_episodes(4, T=20)
    pairs = sample_pairs(episodes, 5, n, np.random.default_rng(offset))
    return [Query(f"q{offset + i}", a, b) for i, (a, b) in enumerate(pairs)], episodes


def _config(**kw):
    from robopref.loop import LoopConfig

    return LoopConfig(label_poll_s=0.001, **kw)


def test_async_answers_arrive_later_and_late_ones_join_the_next_round():
    from robopref.loop import gather
    from robopref.preferences.delayed import DelayedTeacher, DelayedTeacherConfig

    source = DelayedTeacher(
        DelayedTeacherConfig(delay_collects=2, late_fraction=0.5, late_delay_collects=50)
    )
    queries, episodes = _queries(20)
    first = gather(source, queries, episodes, _config(label_timeout_s=0.05, min_labels=1))
    assert 0 < len(first) < 20 and source.pending() == 20 - len(first)
    later, _ = _queries(5, offset=100)
    second = gather(source, later, episodes, _config(label_timeout_s=5.0, min_labels=1))
    ids = {a.query_id for a in second}
    assert {q.id for q in later} <= ids  # this round's queries, all answered
    assert ids & {q.id for q in queries}  # and the late answers to last round's
    assert len(first) + len(second) == 25 and source.pending() == 0
    again = gather(source, queries[:3], episodes, _config(label_timeout_s=0.01, min_labels=0))
    assert again == []  # submitting a query twice (a resumed run) asks nobody twice


def test_below_the_minimum_at_the_timeout_stops_or_waits_by_config():
    from robopref.loop import LabelTimeout, gather
    from robopref.preferences.delayed import DelayedTeacher, DelayedTeacherConfig

    queries, episodes = _queries(6)
    silent = DelayedTeacher(DelayedTeacherConfig(unanswered_fraction=1.0))
    with pytest.raises(LabelTimeout, match="--resume"):
        gather(silent, queries, episodes,
               _config(label_timeout_s=0.02, min_labels=3, on_label_timeout="stop"))
    slow = DelayedTeacher(DelayedTeacherConfig(delay_collects=200))
    answers = gather(slow, queries, episodes,
                     _config(label_timeout_s=0.01, min_labels=6, on_label_timeout="wait"))
    assert len(answers) == 6  # it kept waiting past the timeout until the minimum arrived


def test_the_loop_trains_on_an_asynchronous_source_and_counts_answers_received(tmp_path, capsys):
    args = [a for a in PEEL_TINY if not a.startswith(("env", "+env", "loop.rounds"))]
    cli("demo", "env.task=reach-v3", "env.max_episode_steps=30", *args, "loop.rounds=2",
        "loop.average_last=2", "teacher=delayed", "teacher.late_fraction=0.5",
        "teacher.delay_collects=1", "loop.label_timeout_s=0.2", "loop.label_poll_s=0.01",
        f"hydra.run.dir={tmp_path}/run", capsys=capsys)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    per_round = [r["labels"] for r in metrics["rounds"]]
    assert metrics["queries"] == 12 and 0 < per_round[1] < 6  # late answers missed round 1
    assert metrics["labels"] == per_round[2] <= 12


def test_a_run_that_fails_says_so_in_its_metrics(tmp_path, capsys, monkeypatch):
    from robopref.errors import RobopError
    from robopref.loop import preference_loop

    def broken_source(*args, **kwargs):
        raise RobopError("the label source broke: fix it and resume")

    monkeypatch.setattr(preference_loop, "gather", broken_source)
    with pytest.raises(SystemExit):
        cli("demo", *PEEL_TINY, f"hydra.run.dir={tmp_path}/run", capsys=capsys)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert metrics["reason"] == "the label source broke: fix it and resume"
    assert metrics["rounds"][0]["round"] == 0  # the finished round 0 is kept
