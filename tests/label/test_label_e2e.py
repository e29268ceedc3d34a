"""People end to end, on a tiny Meta-World run, with simulated annotators over real HTTP.

(b) ``robopref demo teacher=people``: the loop enqueues each round's queries into the label
    database and waits; scripted annotators answer over HTTP from a background thread; the
    loop trains on their aggregated answers and finishes its rounds.
(a) ``robopref label enqueue`` from that run folder (disagreement, with its latest reward)
    -> annotators answer over HTTP -> the database rows are the scripted teachers' answers,
    one for one -> ``robopref reward train labels=URL`` in a fresh process, from the database
    alone, matches the held-out accuracy of a reward trained on the same teachers' labels
    directly (no database), within 3 points, on the same held-out pairs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
from labelkit import label_rows

from robopref.label import LabelStore, open_database
from robopref.label.annotators import SimulatedAnnotatorConfig, run_annotators
from robopref.label.datasets import DatasetResolver
from robopref.preferences import ScriptedTeacher, TeacherConfig

# A Meta-World run small enough for 2 cores: 50-step episodes, one refinement round.
TINY = [
    "env.task=reach-v3", "env.max_episode_steps=50", "progress=false", "tensorboard=false",
    "loop.rounds=2", "loop.num_demos=4", "loop.rollouts_per_round=6",
    "loop.queries_per_round=12", "loop.eval_episodes=2", "loop.test_episodes=0",
    "loop.heldout_pairs=50", "loop.segment_length=10", "loop.average_last=1",
    "loop.validation_episodes=0", "train.bc.steps=50", "train.reward.steps=30",
    "train.refine.steps=20",
]
# Deterministic B-Pref behaviours (Meta-World's reward unit is 10 per step), so each answer
# can be recomputed from the teacher alone.
TEACHERS = {
    "alice": TeacherConfig(reward_scale=10.0),
    "bob": TeacherConfig(reward_scale=10.0, gamma=0.9),
    "carol": TeacherConfig(reward_scale=10.0, equal_threshold=0.5),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(url: str):
    """The label server (uvicorn) on a free loopback port in a thread; yields its address."""
    import uvicorn

    from robopref.label.server import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(url), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _annotators(url: str, names, project: str) -> list[tuple[str, SimulatedAnnotatorConfig]]:
    store = LabelStore(open_database(url))
    try:
        return [(store.create_annotator(name)[1],
                 SimulatedAnnotatorConfig(name=name, teacher=TEACHERS[name], project=project))
                for name in names]
    finally:
        store.db.close()


def _robopref(*args: str) -> None:
    from robopref.cli import main

    argv = sys.argv
    try:
        main(list(args))
    finally:
        sys.argv = argv


@pytest.fixture(scope="module")
def people_run(tmp_path_factory):
    """A two-round ``robopref demo teacher=people`` run, answered over HTTP by two
    annotators (k=2) in a background thread while the loop waits; returns its folder,
    database URL and the wall time."""
    import logging

    # Hydra sets the root logger to INFO in-process; httpx would log every request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    root = tmp_path_factory.mktemp("people")
    url = f"sqlite:///{root / 'labels.db'}"
    annotators = _annotators(url, ["alice", "bob"], "loop")
    stop, failures = threading.Event(), []
    with serving(url) as base:
        def answer() -> None:
            resolver = DatasetResolver()
            while not stop.is_set():
                try:
                    run_annotators(base, annotators, resolver)
                except Exception as exc:  # noqa: BLE001  (reported by the test)
                    failures.append(exc)
                    return
                time.sleep(0.05)  # the queue is empty: wait for the loop's next round

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        started = time.perf_counter()
        try:
            _robopref("demo", *TINY, "teacher=people", f"teacher.database={url}",
                      "teacher.project=loop", "teacher.answers_wanted=2",
                      "loop.label_timeout_s=120", "loop.label_poll_s=0.05",
                      f"hydra.run.dir={root / 'run'}")
        finally:
            stop.set()
            thread.join(timeout=60)
        wall = time.perf_counter() - started
    assert not failures, failures
    return root / "run", url, wall


def test_the_loop_waits_for_people_and_finishes_its_rounds(people_run):
    run, url, wall = people_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and len(metrics["rounds"]) == 3
    assert [r["labels"] for r in metrics["rounds"]] == [0, 12, 24]  # every query answered
    labels = json.loads((run / "labels" / "round1.json").read_text())["preferences"]
    assert {p["source"] for p in labels} == {"people"}
    assert {p["weight"] for p in labels} == {2.0} and {p["annotator"] for p in labels} == {
        "alice,bob"}
    store = LabelStore(open_database(url))
    rows = label_rows(store)
    store.db.close()
    assert len(rows) == 2 * 24 and {r[0] for r in rows} == {
        f"r{k}-q{i:04d}" for k in (1, 2) for i in range(12)}
    state = json.loads((run / "state.json").read_text())["restore"]["source"]
    assert state["open"] == [] and len(state["done"]) == 24  # a resume asks nobody twice
    print(f"\nloop with people: 2 rounds, 24 queries x 2 answers over HTTP, {wall:.1f} s")


def test_enqueue_annotate_and_train_from_the_database_alone(people_run, tmp_path, capsys):
    import numpy as np

    from robopref.data import Preference, load_preferences
    from robopref.label.enqueue import pair_key
    from robopref.label.train import label_accuracy
    from robopref.loop.store import load_run_episodes
    from robopref.rewards import BTEnsemble, EnsembleConfig, preference_accuracy
    from robopref.training import Trainer, TrainerConfig

    run, _, _ = people_run
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    enqueue = ["label", "enqueue", str(run), "--db", url, "--pairs", "240",
               "--segment-length", "10", "--answers", "2", "--project", "e2e",
               "--query", "disagreement", "--candidates", "4", "--seed", "0"]
    _robopref(*enqueue)
    assert "240 new pair queries" in capsys.readouterr().out
    _robopref(*enqueue)  # the same command again: nothing new
    assert "0 new pair queries (240 already there)" in capsys.readouterr().out

    started = time.perf_counter()
    with serving(url) as base:
        answered = run_annotators(base, _annotators(url, sorted(TEACHERS), "e2e"),
                                  DatasetResolver())
    http_s = time.perf_counter() - started

    # The database holds exactly what the annotators said, and each answer is what its
    # scripted teacher says about that pair.
    pool = load_run_episodes(run)
    store = LabelStore(open_database(url))
    said = sorted((a.key, name, a.choice, a.score) for name, got in answered.items()
                  for a in got)
    assert label_rows(store) == said and len(said) == 2 * 240
    pairs = {}
    for name, got in answered.items():
        teacher = ScriptedTeacher(TEACHERS[name])
        for a in got:
            info = store.get_query(a.query_id)
            pairs[a.key] = (info.first, info.second)
            assert a.key == pair_key(info.first, info.second)
            [expected] = teacher.label([pairs[a.key]], pool)
            assert a.choice == expected.label.value, (name, a.key)
    store.db.close()

    # A fresh process trains from the database URL alone.
    out = tmp_path / "reward"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "robopref.cli", "reward", "train", f"labels={url}",
         "project=e2e", "heldout_fraction=0.5", "reward.hidden_sizes=[64,64]",
         "train.reward.steps=200", "progress=false", "device=cpu", f"hydra.run.dir={out}"],
        check=True, cwd=tmp_path, env={**os.environ, "MUJOCO_GL": "osmesa"},
        capture_output=True, text=True, timeout=600,
    )
    train_s = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    heldout = load_preferences(out / "preferences_heldout.json")
    train = load_preferences(out / "preferences_train.json")
    assert metrics["pairs"] == {"labelled": 240, "train": len(train), "heldout": len(heldout),
                                "heldout_fraction": 0.5, "seed": 0}
    assert metrics["labels"]["labels"] == 480 and set(metrics["agreement"]) == set(TEACHERS)

    # The same teachers' answers straight into a reward, no database: each train pair's
    # answers aggregated by the same rule (majority), trained with the same settings. The
    # database path must lose nothing: the two rewards rank segments alike.
    from robopref.label.export import aggregate_target
    from robopref.preferences import sample_pairs

    who = {}
    for name, got in answered.items():
        for a in got:
            who.setdefault(a.key, []).append(name)
    direct = []
    for p in train:
        answers = []
        for name in who[pair_key(p.first, p.second)]:
            [label] = ScriptedTeacher(TEACHERS[name]).label([(p.first, p.second)], pool)
            answers.append(label.label.value)
        direct.append(Preference(p.first, p.second, aggregate_target(answers, "majority"),
                                 float(len(answers))))
    trainer = Trainer(TrainerConfig(steps=200, batch_size=32, lr=3e-4, device="cpu",
                                    progress=False), name="reward")
    first = next(iter(pool.values()))
    model = BTEnsemble(first.obs_dim, first.act_dim,
                       EnsembleConfig(hidden_sizes=[64, 64], seed=0), trainer)
    model.fit(direct, pool)
    from_db = BTEnsemble.load(out / "reward", trainer)
    # Scored on 1,000 uniformly drawn pairs (ties of the true return left out), so a gap
    # of 3 points is far above the noise of the estimate (~1.5 points at 0.85).
    uniform = sample_pairs(pool, 10, 1000, np.random.default_rng(123))
    direct_true = preference_accuracy(model, uniform, pool)
    db_true = preference_accuracy(from_db, uniform, pool)
    direct_labels = label_accuracy(model, heldout, pool)
    db_labels = metrics["heldout_accuracy"]
    print(f"\n1000 uniform pairs: true-return accuracy from the database {db_true:.3f}, "
          f"from the teachers directly {direct_true:.3f}; {len(heldout)} held-out labelled "
          f"pairs: label accuracy {db_labels:.3f} vs {direct_labels:.3f}; HTTP answers "
          f"{http_s:.1f} s, fresh-process training {train_s:.1f} s")
    assert abs(db_true - direct_true) <= 0.03
    assert db_true > 0.7 and np.isfinite(direct_labels)
