"""The scripted B-Pref teacher: exact behaviour of each knob, and the PreferenceSource contract."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import eid, make_episode, named

from robopref.data import Episode, Label, Preference, Segment
from robopref.errors import ConfigError
from robopref.preferences import (
    PREFERENCE_SOURCES,
    TEACHER_PRESETS,
    PreferenceSource,
    Query,
    ScriptedTeacher,
    TeacherConfig,
    sample_pairs,
)
from robopref.preferences.delayed import DelayedTeacher, DelayedTeacherConfig


def _episode_with_rewards(rewards) -> Episode:
    rewards = np.asarray(rewards, dtype=np.float32)
    T = len(rewards)
    return Episode(np.zeros((T, 2)), np.zeros((T, 1)), rewards, np.zeros(T, bool))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _within_4_se(hits: int, n: int, p: float) -> bool:
    se = math.sqrt(p * (1 - p) / n)
    return abs(hits / n - p) <= 4 * se


# --------------------------------------------------------------------------- oracle


@pytest.mark.parametrize(
    ("ra", "rb", "expected"),
    [
        (1.0, 0.0, Label.FIRST),
        (0.0, 1.0, Label.SECOND),
        (1e-9, 0.0, Label.FIRST),
        (-5.0, -5.0 + 1e-6, Label.SECOND),
        (3.25, 3.25, Label.EQUAL),
        (0.0, 0.0, Label.EQUAL),
    ],
)
def test_oracle_judge(ra, rb, expected):
    assert ScriptedTeacher().judge(ra, rb) is expected


def test_oracle_label_prefers_higher_true_return():
    eps = named(
        _episode_with_rewards([1.0, 2.0, 3.0, 4.0]),  # segments [0,2) = 3, [2,4) = 7
        _episode_with_rewards([5.0, 2.0, 0.0, 0.0]),  # segments [0,2) = 7, [2,4) = 0
    )
    pairs = [
        (Segment(eid(0), 0, 2), Segment(eid(0), 2, 4)),
        (Segment(eid(0), 2, 4), Segment(eid(1), 2, 4)),
        (Segment(eid(0), 2, 4), Segment(eid(1), 0, 2)),
    ]
    prefs = ScriptedTeacher().label(pairs, eps)
    assert [p.label for p in prefs] == [Label.SECOND, Label.FIRST, Label.EQUAL]
    for p in prefs:
        assert p.source == "scripted_teacher"
        assert p.annotator == "script"
        assert p.weight == 1.0 and p.target in (0.0, 0.5, 1.0)


def test_oracle_on_random_pairs_matches_true_return_order(episodes):
    pairs = sample_pairs(episodes, 5, 200, np.random.default_rng(0))
    prefs = ScriptedTeacher().label(pairs, episodes)
    for (a, b), pref in zip(pairs, prefs, strict=True):
        ra, rb = (s.rewards(episodes).astype(np.float64).sum() for s in (a, b))
        expected = Label.EQUAL if ra == rb else (Label.FIRST if ra > rb else Label.SECOND)
        assert pref.label is expected


def test_success_bonus_prefers_the_segment_that_reached_the_goal():
    # Segment a approaches faster (more dense reward) but never succeeds; b ends inside the
    # success region for two steps. Without a bonus the dense reward decides; with one, success.
    a = _episode_with_rewards([9.6, 9.7, 9.8, 9.8])
    b = Episode(np.zeros((4, 2)), np.zeros((4, 1)), np.asarray([9.0, 9.2, 10.0, 10.0], np.float32),
                np.asarray([False, False, True, True]))
    eps = named(a, b)
    pair = [(Segment(eid(0), 0, 4), Segment(eid(1), 0, 4))]
    assert ScriptedTeacher().label(pair, eps)[0].label is Label.FIRST
    with_bonus = ScriptedTeacher(TeacherConfig(success_bonus=1.0, reward_scale=10.0))
    assert with_bonus.label(pair, eps)[0].label is Label.SECOND
    judged = with_bonus.judged_rewards(pair[0][1], eps)
    np.testing.assert_allclose(judged, [9.0, 9.2, 20.0, 20.0])
    # Episode scores see the same bonus: b's per-step mean rises from 0.955 to 1.455 (x10).
    scorer = ScriptedTeacher(TeacherConfig(success_bonus=1.0, reward_scale=10.0,
                                           score_range=(0.0, 2.0)))
    assert [s.score for s in scorer.score([pair[0][1]], eps)] == [7]
    plain = ScriptedTeacher(TeacherConfig(reward_scale=10.0, score_range=(0.0, 2.0)))
    assert [s.score for s in plain.score([pair[0][1]], eps)] == [4]


# --------------------------------------------------------------------------- myopic


def test_myopic_segment_return_is_hand_computed_discounted_sum():
    teacher = ScriptedTeacher(TeacherConfig(gamma=0.9))
    rewards = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    expected = 0.9**3 * 1.0 + 0.9**2 * 2.0 + 0.9 * 3.0 + 4.0  # = 9.049, last step undiscounted
    assert teacher.segment_return(rewards) == pytest.approx(expected, abs=1e-12)
    assert teacher.segment_return(np.array([7.0], np.float32)) == pytest.approx(7.0)
    assert ScriptedTeacher().segment_return(rewards) == pytest.approx(10.0)


def test_myopic_teacher_favours_late_reward():
    eps = named(_episode_with_rewards([10.0, 0.0, 0.0, 0.0]), _episode_with_rewards([0, 0, 0, 8.0]))
    pair = [(Segment(eid(0), 0, 4), Segment(eid(1), 0, 4))]
    # Undiscounted 10 vs 8; discounted 0.5^3 * 10 = 1.25 vs 8.
    assert ScriptedTeacher().label(pair, eps)[0].label is Label.FIRST
    assert ScriptedTeacher(TeacherConfig(gamma=0.5)).label(pair, eps)[0].label is Label.SECOND


# --------------------------------------------------------------------------- skip / equal


@pytest.mark.parametrize(
    ("ra", "rb", "skipped"),
    [
        (4.0, 3.0, True),
        (4.999, 4.999, True),
        (-100.0, 4.999, True),
        (5.0, 1.0, False),  # max equals the threshold: answered
        (1.0, 5.0, False),
        (5.0, 5.0, False),
        (20.0, -20.0, False),
    ],
)
def test_skip_exactly_when_both_returns_below_threshold(ra, rb, skipped):
    label = ScriptedTeacher(TeacherConfig(skip_threshold=5.0)).judge(ra, rb)
    assert (label is None) is skipped


def test_skip_comes_before_equal():
    teacher = ScriptedTeacher(TeacherConfig(skip_threshold=5.0, equal_threshold=1.0))
    assert teacher.judge(2.0, 2.0) is None
    assert teacher.judge(5.0, 5.0) is Label.EQUAL


def test_skip_label_returns_none_entries():
    eps = named(_episode_with_rewards([1.0, 1.0, 10.0, 10.0]))
    pairs = [
        (Segment(eid(0), 0, 1), Segment(eid(0), 1, 2)),
        (Segment(eid(0), 0, 2), Segment(eid(0), 2, 4)),
    ]
    out = ScriptedTeacher(TeacherConfig(skip_threshold=5.0)).label(pairs, eps)
    assert out[0] is None
    assert out[1].label is Label.SECOND


@pytest.mark.parametrize(
    ("ra", "rb", "expected"),
    [
        (1.5, 1.0, Label.EQUAL),  # |diff| = 0.5 < 1
        (1.0, 1.75, Label.EQUAL),
        (2.0, 1.0, Label.FIRST),  # |diff| = 1 exactly: not equal
        (1.0, 2.0, Label.SECOND),
        (-3.0, -3.0, Label.EQUAL),
    ],
)
def test_equal_threshold_boundary(ra, rb, expected):
    assert ScriptedTeacher(TeacherConfig(equal_threshold=1.0)).judge(ra, rb) is expected


# --------------------------------------------------------------------------- stochastic, mistake


@pytest.mark.parametrize(("beta", "diff"), [(0.5, 2.0), (0.5, -1.0), (1.0, 0.0), (0.05, 30.0)])
def test_stochastic_choice_frequency_matches_sigmoid(beta, diff):
    teacher = ScriptedTeacher(TeacherConfig(beta=beta, seed=123))
    n = 20000
    labels = [teacher.judge(diff, 0.0) for _ in range(n)]
    assert set(labels) <= {Label.FIRST, Label.SECOND}
    hits = sum(label is Label.FIRST for label in labels)
    p = _sigmoid(beta * diff)
    assert _within_4_se(hits, n, p), (hits / n, p)


def test_stochastic_choice_depends_only_on_difference():
    a = ScriptedTeacher(TeacherConfig(beta=0.3, seed=7))
    b = ScriptedTeacher(TeacherConfig(beta=0.3, seed=7))
    assert [a.judge(12.0, 10.0) for _ in range(200)] == [b.judge(2.0, 0.0) for _ in range(200)]


def test_stochastic_teacher_is_reproducible_per_seed():
    def run(seed):
        teacher = ScriptedTeacher(TeacherConfig(beta=1.0, seed=seed))
        return [teacher.judge(0.3, 0.0) for _ in range(100)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_stochastic_extreme_differences_do_not_overflow():
    teacher = ScriptedTeacher(TeacherConfig(beta=10.0))
    assert all(teacher.judge(1e6, 0.0) is Label.FIRST for _ in range(50))
    assert all(teacher.judge(-1e6, 0.0) is Label.SECOND for _ in range(50))


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_mistake_flip_frequency_matches_eps(eps):
    teacher = ScriptedTeacher(TeacherConfig(mistake_prob=eps, seed=5))
    n = 20000
    labels = [teacher.judge(1.0, 0.0) for _ in range(n)]
    assert set(labels) <= {Label.FIRST, Label.SECOND}
    flips = sum(label is Label.SECOND for label in labels)
    assert _within_4_se(flips, n, eps), (flips / n, eps)


def test_mistakes_never_touch_equal_answers():
    teacher = ScriptedTeacher(TeacherConfig(mistake_prob=1.0, equal_threshold=0.5))
    assert teacher.judge(2.0, 2.0) is Label.EQUAL
    assert teacher.judge(2.0, 1.8) is Label.EQUAL
    assert teacher.judge(2.0, 1.0) is Label.SECOND  # always flipped
    assert ScriptedTeacher(TeacherConfig(mistake_prob=1.0)).judge(0.0, 0.0) is Label.EQUAL


# --------------------------------------------------------------------------- errors


def test_label_with_nan_rewards_raises():
    nan_ep = _episode_with_rewards([np.nan] * 4)
    good_ep = _episode_with_rewards([1.0] * 4)
    pairs = [(Segment(eid(1), 0, 2), Segment(eid(0), 0, 2))]
    with pytest.raises(ValueError, match="ground-truth rewards"):
        ScriptedTeacher().label(pairs, named(nan_ep, good_ep))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta": 0.0},
        {"beta": -1.0},
        {"gamma": 0.0},
        {"gamma": 1.01},
        {"gamma": -0.5},
        {"equal_threshold": -0.1},
        {"mistake_prob": -0.01},
        {"mistake_prob": 1.01},
        {"success_bonus": -1.0},
        {"success_bonus": math.nan},
    ],
)
def test_teacher_config_validation(kwargs):
    with pytest.raises(ConfigError):
        TeacherConfig(**kwargs)


def test_teacher_config_accepts_boundaries():
    TeacherConfig(gamma=1.0, mistake_prob=0.0, equal_threshold=0.0)
    TeacherConfig(gamma=1e-3, mistake_prob=1.0, beta=1e-6)


def test_teacher_is_registered():
    assert PREFERENCE_SOURCES.lookup("scripted_teacher") == (TeacherConfig, ScriptedTeacher)
    assert set(TEACHER_PRESETS) == {"oracle", "stochastic", "myopic", "skip", "equal", "mistake"}


# --------------------------------------------------------------------------- contract


def answers(source: PreferenceSource, pairs, episodes) -> list:
    """One entry per pair (a Preference or None), from a synchronous source's ``label`` or an
    asynchronous source's ``submit`` + ``collect`` (polled until nothing is pending)."""
    if not source.asynchronous:
        return source.label(pairs, episodes)
    queries = [Query(f"q{i}", a, b) for i, (a, b) in enumerate(pairs)]
    source.submit(queries, episodes)
    got = {}
    for _ in range(10_000):
        got.update({a.query_id: a.preference for a in source.collect()})
        if source.pending() == 0:
            break
    assert source.pending() == 0, "an asynchronous source never answered"
    return [got.get(q.id) for q in queries]


class PreferenceSourceContract:
    """Behaviour every PreferenceSource must show; subclasses provide ``make_source``.

    ``make_source`` returns a zero-argument factory of fresh sources. Synchronous and
    asynchronous sources are driven alike through ``answers``.
    """

    @pytest.fixture
    def make_source(self):
        raise NotImplementedError

    @pytest.fixture
    def query_episodes(self) -> list[Episode]:
        # Meta-World-like scale: per-step reward in [0, 10].
        return named(
            *[
                make_episode(60, obs_dim=3, act_dim=2, seed=s, reward_fn=_uniform_reward(s))
                for s in range(6)
            ]
        )

    @pytest.fixture
    def queries(self, query_episodes):
        pairs = sample_pairs(query_episodes, 10, 60, np.random.default_rng(1))
        pairs += sample_pairs(query_episodes, 3, 20, np.random.default_rng(2))
        return pairs

    def test_is_a_preference_source_with_a_name(self, make_source):
        source = make_source()
        assert isinstance(source, PreferenceSource)
        assert isinstance(source.name, str) and source.name

    def test_one_entry_per_query(self, make_source, queries, query_episodes):
        out = answers(make_source(), queries, query_episodes)
        assert isinstance(out, list)
        assert len(out) == len(queries)

    def test_entries_are_none_or_preferences_on_the_queried_segments(
        self, make_source, queries, query_episodes
    ):
        source = make_source()
        out = answers(source, queries, query_episodes)
        for (a, b), entry in zip(queries, out, strict=True):
            if entry is None:
                continue
            assert isinstance(entry, Preference)
            assert entry.first == a and entry.second == b
            assert 0.0 <= entry.target <= 1.0 and entry.weight >= 0
            assert entry.label is None or entry.label in set(Label)
            assert entry.source == source.name

    def test_empty_query_list(self, make_source, query_episodes):
        assert answers(make_source(), [], query_episodes) == []

    def test_single_query_calls_are_consistent_in_length(
        self, make_source, queries, query_episodes
    ):
        source = make_source()
        for pair in queries[:5]:
            assert len(answers(source, [pair], query_episodes)) == 1

    def test_state_round_trip_reproduces_the_answers(self, make_source, queries, query_episodes):
        import json

        source = make_source()
        answers(source, queries[:10], query_episodes)
        saved = json.loads(json.dumps(source.state_dict()))  # what a run store keeps
        expected = answers(source, queries[10:30], query_episodes)
        resumed = make_source()
        resumed.load_state_dict(saved)
        if source.asynchronous:
            answers(resumed, queries[:10], query_episodes)  # the queries it already had
        assert answers(resumed, queries[10:30], query_episodes) == expected


def _uniform_reward(seed):
    def reward(obs, act):
        return np.random.default_rng(1000 + seed).uniform(0.0, 10.0, size=len(obs))

    return reward


class TestDelayedTeacher(PreferenceSourceContract):
    @pytest.fixture(params=["prompt", "late"])
    def make_source(self, request):
        late = request.param == "late"
        config = DelayedTeacherConfig(
            reward_scale=10.0, mistake_prob=0.1, delay_collects=3,
            late_fraction=0.5 if late else 0.0, late_delay_collects=20,
        )
        return lambda: DelayedTeacher(config)


class TestScriptedTeacherPresets(PreferenceSourceContract):
    @pytest.fixture(params=sorted(TEACHER_PRESETS))
    def make_source(self, request):
        # Meta-World's reward unit: presets are in multiples of the task's reward_scale.
        config = dataclasses.replace(TEACHER_PRESETS[request.param], reward_scale=10.0)
        return lambda: ScriptedTeacher(config)


def test_presets_behave_differently_on_the_contract_queries():
    """The presets are not all the oracle in disguise: skip skips, equal says EQUAL."""
    eps = named(
        *[
            make_episode(60, obs_dim=3, act_dim=2, seed=s, reward_fn=_uniform_reward(s))
            for s in range(6)
        ]
    )
    pairs = sample_pairs(eps, 10, 200, np.random.default_rng(1))
    out = {
        name: ScriptedTeacher(dataclasses.replace(cfg, reward_scale=10.0)).label(pairs, eps)
        for name, cfg in TEACHER_PRESETS.items()
    }
    assert all(p is not None for p in out["oracle"])
    assert any(p is None for p in out["skip"])
    assert any(p is not None and p.label is Label.EQUAL for p in out["equal"])
    oracle = [p.label for p in out["oracle"]]
    for name in ("stochastic", "mistake", "myopic"):
        assert [p.label for p in out[name]] != oracle, name


class _StoreAnsweredSource:
    """People simulated through the LabelStore itself: at every ``collect`` each annotator
    answers up to two open queries with its scripted teacher (``cannot_tell`` where the teacher
    skips), so answers arrive over several polls, as on the labelling page."""

    CHOICE = {Label.FIRST: "first", Label.SECOND: "second", Label.EQUAL: "equal"}

    def __new__(cls, config, annotators):
        from robopref.label.source import LabelingSource

        class Answered(LabelingSource):
            def submit(self, queries, episodes):
                self.pool = dict(episodes if isinstance(episodes, dict) else
                                 {e.id: e for e in episodes})
                super().submit(queries, episodes)

            def collect(self):
                for annotator, teacher in annotators:
                    for info in self.store.upcoming_for(annotator, self.project, limit=2):
                        label = teacher.label([(info.first, info.second)], self.pool)[0]
                        choice = "cannot_tell" if label is None else cls.CHOICE[label.label]
                        self.store.submit_label(annotator, info.id, choice)
                return super().collect()

        return Answered(config)


class TestLabelingSource(PreferenceSourceContract):
    """People through the label database (answers written through the LabelStore)."""

    @pytest.fixture(params=["majority-k1", "soft-k2"])
    def make_source(self, request, tmp_path):
        from robopref.label import LabelStore, open_database
        from robopref.label.source import LabelingSourceConfig

        k = 1 if request.param.endswith("k1") else 2
        config = LabelingSourceConfig(
            database=f"sqlite:///{tmp_path / 'labels.db'}", project="contract",
            answers_wanted=k, aggregation=request.param.split("-")[0],
        )
        db = open_database(config.database)
        store = LabelStore(db)
        annotators = [
            (store.create_annotator("ann")[0],
             ScriptedTeacher(TeacherConfig(reward_scale=10.0, skip_threshold=5.5))),
            (store.create_annotator("bob")[0],
             ScriptedTeacher(TeacherConfig(reward_scale=10.0, mistake_prob=0.3, seed=3))),
        ]
        db.close()
        return lambda: _StoreAnsweredSource(config, annotators)
