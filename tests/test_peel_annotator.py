"""Peel-v0's per-step metrics in episodes, and the simulated annotator that answers pairs and
scores whole episodes 0-9 from the task's own quality metrics: synchronously in the loop, over
HTTP through the labelling service, and people's scores through the label database."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from robopref.cli.demo import teacher_group
from robopref.data import Episode, Score, Segment
from robopref.envs.peel import STEP_METRIC_NAMES
from robopref.envs.peel_task import PeelTaskConfig, PeelV0Task
from robopref.label import LabelStore, open_database
from robopref.label.annotators import SimulatedAnnotator, SimulatedAnnotatorConfig
from robopref.label.server import create_app
from robopref.label.source import LabelingSource, LabelingSourceConfig
from robopref.loop import LoopConfig, gather
from robopref.loop.collectors import VecEnvCollector
from robopref.loop.labels import scores_of
from robopref.preferences import PREFERENCE_SOURCES, Query, ScoreQuery, ScriptedTeacher


@pytest.fixture(scope="module")
def peel_task():
    return PeelV0Task(PeelTaskConfig(peel={"episode_steps": 120}))


def peel_teacher(task, **knobs) -> ScriptedTeacher:
    """The finetune CLI's noisy teacher, its units and score mapping taken from ``task``."""
    group = teacher_group({"name": "scripted_teacher", "reward_scale": None,
                           "score_range": None, "score_basis": None, **knobs}, task)
    config, cls = PREFERENCE_SOURCES.from_group(group, "teacher")
    return cls(config)


def test_peel_episodes_carry_per_step_metrics_that_add_up(peel_task):
    env = peel_task.make_vector_env(1)
    expert = peel_task.make_expert({"action_noise": 0.0}, 1)
    [episode] = VecEnvCollector(env, peel_task, progress=False).collect(expert, [7], "demos")
    env.close()
    assert episode.metric_names == STEP_METRIC_NAMES
    assert episode.metrics.shape == (len(episode), len(STEP_METRIC_NAMES))
    m = {name: episode.metric_columns([name])[:, 0] for name in STEP_METRIC_NAMES}
    final = episode.meta["metrics"]
    assert m["removed_gain"].sum() == pytest.approx(final["removed_fraction"], abs=1e-5)
    assert final["removed_fraction"] > 0.05  # the expert is cutting by step 120
    assert m["in_band_fraction"].max() > 0 and m["peak_force_n"].max() > 0
    assert (m["contact_fraction"] >= m["in_band_fraction"]).all()
    # The true reward is defined by the same step metrics.
    over = m["over_force_fraction"] * 25  # 25 physics ticks per 20 Hz control step
    expected = m["removed_gain"] - 2 * m["gouged_gain"] - 0.01 * np.round(over)
    np.testing.assert_allclose(episode.rewards, expected, atol=1e-6)
    assert set(final) >= {"removed_fraction", "gouged_fraction", "peak_contact_force_n",
                          "success"}


def test_metaworld_episodes_record_no_metrics():
    from robopref.envs import TASKS

    config, cls = TASKS.from_group({"name": "metaworld", "task": "reach-v3"}, "env")
    task = cls(config)
    assert task.step_metric_names == () and task.quality_metric_names == ()
    env = task.make_vector_env(1)

    class Still:
        def begin_episodes(self, n):
            pass

        def act(self, obs):
            return np.zeros((len(obs), 4), np.float32)

    from robopref.rollout import collect_episodes

    [episode] = collect_episodes(env, Still(), task.first("train", 1), task.name, 5,
                                 progress=False)
    env.close()
    assert episode.metrics is None and episode.metric_names == ()
    assert "metrics" not in episode.meta


def scored_episodes(removed: list[float], gouged: float = 0.0, length: int = 40) -> dict:
    """Peel-like episodes: their true rewards remove ``removed[i]`` of the layer in total,
    spread evenly, and gouge ``gouged``."""
    out = {}
    for i, total in enumerate(removed):
        rewards = np.full(length, (total - 2 * gouged) / length)
        e = Episode(np.zeros((length, 3)), np.zeros((length, 2)), rewards, np.zeros(length),
                    dataset_id="ds", episode_index=i)
        out[e.id] = e
    return out


def test_episode_scores_follow_peels_quality_metrics(peel_task):
    teacher = peel_teacher(peel_task)
    assert teacher.config.score_basis == "episode"
    assert teacher.config.score_range == (0.0, 200.0)  # removed fraction 0..1 in 0.005 units
    removed = [0.0, 0.25, 0.5, 0.85, 1.0]
    episodes = scored_episodes(removed)
    segments = [Segment(i, 0, 40) for i in episodes]
    got = [s.score for s in teacher.score(segments, episodes)]
    assert got == [0.0, 2.0, 5.0, 8.0, 9.0]
    gouged = teacher.score([Segment("ds:0", 0, 40)], scored_episodes([0.85], gouged=0.2))
    assert gouged[0].score < 8  # gouging costs twice what it removes
    assert isinstance(gouged[0], Score) and gouged[0].source == "scripted_teacher"


def test_the_noisy_teacher_keeps_its_noise_in_reward_units(peel_task):
    removed = list(np.linspace(0, 1, 200))
    episodes = scored_episodes(removed)
    segments = [Segment(i, 0, 40) for i in episodes]
    clean = np.array([s.score for s in peel_teacher(peel_task).score(segments, episodes)])
    noisy = peel_teacher(peel_task, beta=0.5, mistake_prob=0.1, seed=3)
    scores = np.array([s.score for s in noisy.score(segments, episodes)])
    mirrored = np.mean(scores == 9 - clean)
    assert 0.03 < mirrored < 0.2  # ~10% mistakes
    kept = scores != 9 - clean
    # beta 0.5 per 0.005 of the layer is a std of ~2.6 units, a sixtieth of a score bin.
    assert np.mean(np.abs(scores[kept] - clean[kept]) <= 1) > 0.95


@pytest.mark.parametrize("success_bonus", [0.0, 1.0])
def test_http_annotators_score_as_the_loops_teacher(tmp_path, peel_task, success_bonus):
    episodes = scored_episodes(list(np.linspace(0, 1, 12)))
    for e in list(episodes.values())[-3:]:  # the three best succeed over their last 20 ticks
        e.successes[20:] = True
    knobs = {"beta": 0.5, "mistake_prob": 0.1, "seed": 4, "success_bonus": success_bonus}
    expected = [s.score for s in peel_teacher(peel_task, **knobs).score(
        [Segment(i, 0, 40) for i in episodes], episodes)]
    db = open_database(tmp_path / "labels.db")
    store = LabelStore(db)
    store.enqueue_episode_scores([(f"e{i}", Segment(f"ds:{i}", 0, 40)) for i in range(12)])
    token = store.create_annotator("sim")[1]
    teacher = peel_teacher(peel_task, **knobs).config
    with TestClient(create_app(db)) as client:
        answers = SimulatedAnnotator("http://testserver", token, episodes,
                                     SimulatedAnnotatorConfig("sim", teacher=teacher),
                                     client=client).run()
    db.close()
    assert [float(a.score) for a in answers] == expected
    if success_bonus:  # the bonus is seen: 20 successful ticks lift a 0.82 episode's score
        plain = peel_teacher(peel_task, **{**knobs, "success_bonus": 0.0}).score(
            [Segment(i, 0, 40) for i in episodes], episodes)
        assert expected[9] > plain[9].score


def test_people_scores_come_back_as_their_mean(tmp_path):
    source = LabelingSource(LabelingSourceConfig(database=f"sqlite:///{tmp_path / 'l.db'}",
                                                 project="p", answers_wanted=2))
    store = source.store
    a, _ = store.create_annotator("a")
    b, _ = store.create_annotator("b")
    seg = [Segment(f"ds:{i}", 0, 10) for i in range(4)]
    queries = [Query("q0", seg[0], seg[1]), ScoreQuery("s0", seg[2]), ScoreQuery("s1", seg[3])]
    source.submit(queries, [])
    ids = {key: db_id for key, db_id, _ in source.state_dict()["open"]}
    for who, score in ((a, 6), (b, 9)):
        store.submit_label(who, ids["s0"], None, score)
    for who in (a, b):
        store.submit_label(who, ids["s1"], "cannot_tell")
        store.submit_label(who, ids["q0"], "first")
    answers = {x.query_id: x for x in source.collect()}
    assert answers["s0"].score == Score(seg[2], 7.5, 2.0, "people", "a,b")
    assert answers["s1"].score is None and answers["s1"].preference is None
    assert answers["q0"].preference.target == 1.0 and answers["q0"].score is None
    source.close()


def test_a_synchronous_source_answers_pairs_and_scores_in_order(peel_task):
    episodes = scored_episodes([0.05, 0.95])
    first, second = (Segment(i, 0, 40) for i in episodes)
    queries = [ScoreQuery("s0", second), Query("q0", first, second), ScoreQuery("s1", first)]
    answers = gather(peel_teacher(peel_task), queries, episodes, LoopConfig())
    assert [a.query_id for a in answers] == ["s0", "q0", "s1"]
    assert answers[1].preference.target == 0.0  # the second removed more
    assert [s.score for s in scores_of(answers)] == [9.0, 0.0]
