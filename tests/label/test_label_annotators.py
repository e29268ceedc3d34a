"""Simulated annotators over the HTTP API (FastAPI's TestClient, which is an httpx.Client):
each B-Pref behaviour answers as the scripted teacher does, scores grow with the return,
a bad token is one clear error, transport errors and 5xx are retried, a 409 is skipped."""

from __future__ import annotations

import dataclasses

import httpx
import numpy as np
import pytest
from annotatorkit import make_episodes, teacher_choices
from fastapi.testclient import TestClient
from labelkit import label_rows, pairs

from robopref.data import Episode, Segment
from robopref.errors import ConfigError
from robopref.label import LabelStore, Unauthorized, open_database
from robopref.label.annotators import (
    AnnotatorError,
    SimulatedAnnotator,
    SimulatedAnnotatorConfig,
    episode_score,
    run_annotators,
)
from robopref.label.server import create_app
from robopref.preferences.teacher import TEACHER_PRESETS, ScriptedTeacher, TeacherConfig

BASE = "http://testserver"


@pytest.fixture
def env(tmp_path):
    """(TestClient, store) over a fresh SQLite database."""
    db = open_database(tmp_path / "labels.db")
    store = LabelStore(db)
    with TestClient(create_app(db)) as client:
        yield client, store
    db.close()


def annotate(client, store, episodes, name="a", **config) -> list:
    token = store.create_annotator(name)[1]
    annotator = SimulatedAnnotator(BASE, token, episodes,
                                   SimulatedAnnotatorConfig(name, **config), client=client)
    return annotator.run()


@pytest.mark.parametrize("preset", list(TEACHER_PRESETS))
def test_every_behaviour_answers_as_the_scripted_teacher(env, preset):
    client, store = env
    episodes, queries = make_episodes(120), pairs(60)
    store.enqueue_pairs(queries)
    answers = annotate(client, store, episodes, teacher=preset, seed=7)
    config = SimulatedAnnotatorConfig("a", teacher=preset, seed=7).teacher_config()
    expected = teacher_choices(config, queries, episodes)
    assert [a.key for a in answers] == [q.id for q in queries]  # oldest first
    assert [a.choice for a in answers] == expected
    assert all(a.status == 201 and a.score is None for a in answers)
    assert label_rows(store) == sorted((q.id, "a", c, None) for q, c in zip(
        queries, expected, strict=True))
    # Each behaviour shows where it should (returns of 10 frames lie around 5 here).
    if preset == "skip":
        assert 0 < expected.count("cannot_tell") < len(expected)
    elif preset == "equal":
        assert 0 < expected.count("equal") < len(expected)
    else:
        assert "cannot_tell" not in expected


def test_mistakes_flip_first_and_second_at_about_their_rate(env):
    client, store = env
    episodes, queries = make_episodes(300), pairs(150)
    store.enqueue_pairs(queries)
    teacher = TeacherConfig(mistake_prob=0.3, seed=3)
    answers = annotate(client, store, episodes, teacher=teacher)
    oracle = teacher_choices(TeacherConfig(), queries, episodes)
    flips = sum(a.choice != o for a, o in zip(answers, oracle, strict=True))
    assert {a.choice for a in answers} == {"first", "second"}
    # 150 draws at p = 0.3: the standard deviation of the rate is 0.037.
    assert 0.2 < flips / len(queries) < 0.4


def test_skip_answers_cannot_tell_which_retires_the_query(env):
    client, store = env
    episodes = make_episodes(20)
    ids = store.enqueue_pairs(pairs(10), answers_wanted=1)
    answers = annotate(client, store, episodes, teacher=TeacherConfig(skip_threshold=1e6))
    assert [a.choice for a in answers] == ["cannot_tell"] * 10
    assert all(store.get_query(q).status == "retired" for q in ids)


def test_episode_scores_grow_with_the_return(env):
    client, store = env
    levels = np.linspace(0.0, 1.0, 11)  # per-step reward of each episode
    episodes = {}
    for i, level in enumerate(levels):
        e = Episode(np.zeros((30, 3)), np.zeros((30, 2)), np.full(30, level), np.zeros(30),
                    dataset_id="ds", episode_index=i)
        episodes[e.id] = e
    store.enqueue_episode_scores([(f"e{i}", Segment(f"ds:{i}", 0, 30))
                                  for i in range(len(levels))], answers_wanted=2)
    answers = annotate(client, store, episodes)
    scores = [a.score for a in answers]
    assert all(a.choice is None for a in answers)
    assert scores == sorted(scores) and scores[0] == 0 and scores[-1] == 9
    # A range of 0..2 reward_scale per step halves every score.
    wide = annotate(client, store, episodes, name="b", reward_scale=2.0)
    assert [a.score for a in wide] == [min(9, int(10 * lv / 2)) for lv in levels]


def test_score_noise_follows_the_teacher_knobs():
    rewards = [np.full(10, level) for level in np.linspace(0, 1, 200)]
    noisy = ScriptedTeacher(TeacherConfig(beta=2.0, seed=1))
    scores = np.array([episode_score(noisy, r) for r in rewards])
    clean = np.array([episode_score(ScriptedTeacher(), r) for r in rewards])
    assert (scores != clean).any()
    assert np.corrcoef(scores, clean)[0, 1] > 0.8  # noisy, but still follows the return
    mistaken = ScriptedTeacher(TeacherConfig(mistake_prob=1.0))
    assert [episode_score(mistaken, r) for r in rewards] == list(9 - clean)
    skipper = ScriptedTeacher(TeacherConfig(skip_threshold=5.0))
    assert episode_score(skipper, np.full(10, 0.4)) is None
    assert episode_score(skipper, np.full(10, 0.6)) == 6
    with pytest.raises(ValueError, match="ground-truth rewards"):
        episode_score(ScriptedTeacher(), np.full(10, np.nan))


def test_a_bad_token_is_one_clear_error(env):
    client, store = env
    store.enqueue_pairs(pairs(1))
    annotator = SimulatedAnnotator(BASE, "wrong", make_episodes(2),
                                   SimulatedAnnotatorConfig("a"), client=client)
    with pytest.raises(Unauthorized, match="refused the token .*annotator add") as info:
        annotator.run()
    assert "\n" not in str(info.value)


def test_max_queries_and_project_limit_what_is_answered(env):
    client, store = env
    episodes = make_episodes(20)
    store.enqueue_pairs(pairs(5), project="p1")
    store.enqueue_pairs(pairs(5, prefix="o"), project="p2")
    answers = annotate(client, store, episodes, project="p2", max_queries=3)
    assert [a.key for a in answers] == ["o0", "o1", "o2"]


def _scripted_transport(script: list):
    """A MockTransport answering requests from ``script`` in order: each entry is a
    response, or an exception to raise; records the requests it saw."""
    seen = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    return httpx.MockTransport(handle), seen


QUERY = {"id": 5, "key": "q0", "kind": "pair", "first": {"episode_id": "ds:0", "start": 0,
         "end": 10}, "second": {"episode_id": "ds:1", "start": 0, "end": 10}}


def test_transport_errors_and_5xx_are_retried_with_backoff():
    label = {"id": 1, "choice": "first"}
    transport, seen = _scripted_transport([
        httpx.ConnectError("refused"), httpx.Response(503, json={"detail": "db down"}),
        httpx.Response(200, json=QUERY),
        httpx.ReadTimeout("lost"), httpx.Response(200, json=label),  # stored the first time
        httpx.Response(204),
    ])
    config = SimulatedAnnotatorConfig("a", backoff_s=0.0)
    with httpx.Client(transport=transport) as client:
        answers = SimulatedAnnotator(BASE, "t", make_episodes(2), config, client=client).run()
    assert [(a.query_id, a.status) for a in answers] == [(5, 200)]
    assert [m for m, _ in seen] == ["GET"] * 3 + ["POST"] * 2 + ["GET"]
    transport, _ = _scripted_transport([httpx.ConnectError("refused")] * 3)
    config = dataclasses.replace(config, retries=2)
    with httpx.Client(transport=transport) as client, pytest.raises(
            AnnotatorError, match="failed 3 times .*ConnectError"):
        SimulatedAnnotator(BASE, "t", make_episodes(2), config, client=client).run()


def test_a_query_retired_meanwhile_is_skipped_but_not_served_forever():
    retired = httpx.Response(409, json={"detail": "query 5 is retired"})
    transport, seen = _scripted_transport([httpx.Response(200, json=QUERY), retired,
                                           httpx.Response(204)])
    config = SimulatedAnnotatorConfig("a")
    with httpx.Client(transport=transport) as client:
        assert SimulatedAnnotator(BASE, "t", make_episodes(2), config, client=client).run() == []
    transport, _ = _scripted_transport([httpx.Response(200, json=QUERY), retired,
                                        httpx.Response(200, json=QUERY)])
    with httpx.Client(transport=transport) as client, pytest.raises(
            AnnotatorError, match="served again"):
        SimulatedAnnotator(BASE, "t", make_episodes(2), config, client=client).run()


def test_configs_are_checked():
    for kwargs in ({"teacher": "genius"}, {"score_range": (1.0, 1.0)},
                   {"think_time_s": -1.0}, {"max_queries": -1}, {"reward_scale": 0.0}):
        with pytest.raises(ConfigError):
            SimulatedAnnotatorConfig("a", **kwargs)
    with pytest.raises(ConfigError, match="repeat"):
        run_annotators(BASE, [("t1", SimulatedAnnotatorConfig("a")),
                              ("t2", SimulatedAnnotatorConfig("a"))], {})
    preset = SimulatedAnnotatorConfig("a", teacher="mistake", seed=4, reward_scale=10.0)
    assert preset.teacher_config() == TeacherConfig(mistake_prob=0.1, seed=4, reward_scale=10.0)
