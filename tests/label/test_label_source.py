"""The labelling source: queries into the label database, answers back as people give them.

The PreferenceSource contract runs in tests/test_teacher.py (TestLabelingSource); these are
the rules only people have: k answers aggregated, cannot_tell, late answers, withdrawal,
resume, dataset path hints, and the same on PostgreSQL.
"""

from __future__ import annotations

import json

import pytest
from labelkit import pair, pairs

from robopref.errors import ConfigError
from robopref.label import LabelStore
from robopref.label.source import LabelingSource, LabelingSourceConfig
from robopref.preferences import PREFERENCE_SOURCES


def _source(url: str, **kw) -> LabelingSource:
    paths = kw.pop("dataset_paths", None)
    return LabelingSource(LabelingSourceConfig(database=url, project="p", **kw), paths)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'labels.db'}"


def _annotators(store: LabelStore, *names: str):
    return [store.create_annotator(n)[0] for n in names]


def _answer(store: LabelStore, annotator, source: LabelingSource, key: str, choice: str):
    db_id = source.state_dict()["open"]
    db_id = next(i for k, i, _ in db_id if k == key)
    store.submit_label(annotator, db_id, choice)


def test_people_is_a_registered_source():
    config_cls, impl = PREFERENCE_SOURCES.lookup("people")
    assert (config_cls, impl) == (LabelingSourceConfig, LabelingSource)
    assert impl.asynchronous and not impl.needs_true_rewards and impl.uses_run_folder


@pytest.mark.parametrize(("kw", "message"), [
    ({"database": " "}, "teacher.database"),
    ({"answers_wanted": 0}, "answers_wanted"),
    ({"aggregation": "mean"}, "majority, soft"),
    ({"answers_wanted": 2, "min_answers": 3}, "min_answers"),
    ({"withdraw_after_rounds": -1}, "withdraw_after_rounds"),
])
def test_config_errors_name_the_key(kw, message):
    with pytest.raises(ConfigError, match=message) as info:
        LabelingSourceConfig(**kw)
    assert "\n" not in str(info.value)


def test_k_answers_become_one_weighted_preference_each_query_once(database_url):
    source = _source(database_url, answers_wanted=3, aggregation="soft")
    store = source.store
    a, b, c = _annotators(store, "a", "b", "c")
    queries = pairs(2)
    source.submit(queries, [])
    for who, choice in ((a, "first"), (b, "first")):
        _answer(store, who, source, "q0", choice)
    assert source.collect() == [] and source.pending() == 2  # two of three: not yet
    _answer(store, c, source, "q0", "second")
    for who in (a, b, c):
        _answer(store, who, source, "q1", "cannot_tell")
    got = {x.query_id: x.preference for x in source.collect()}
    assert got["q1"] is None  # answered, trains nothing
    p = got["q0"]
    assert p.target == pytest.approx(2 / 3) and p.weight == 3.0
    assert (p.first, p.second, p.source, p.annotator) == (
        queries[0].first, queries[0].second, "people", "a,b,c")
    assert source.collect() == [] and source.pending() == 0
    source.close()


def test_majority_and_min_answers(url):
    source = _source(url, answers_wanted=3, aggregation="majority", min_answers=2)
    a, b, c = _annotators(source.store, "a", "b", "c")
    source.submit(pairs(2), [])
    for who, choice in ((a, "second"), (b, "second"), (c, "first")):
        _answer(source.store, who, source, "q0", choice)
    for who, choice in ((a, "equal"), (b, "cannot_tell"), (c, "cannot_tell")):
        _answer(source.store, who, source, "q1", choice)
    got = {x.query_id: x.preference for x in source.collect()}
    assert (got["q0"].target, got["q0"].weight) == (0.0, 3.0)
    assert got["q1"] is None  # one counting answer, two needed


def test_late_answers_arrive_in_a_later_collect_and_resume_delivers_nothing_twice(url, tmp_path):
    source = _source(url, dataset_paths=lambda: {"ds": str(tmp_path / "ds")})
    (a,) = _annotators(source.store, "a")
    source.submit(pairs(3), [])
    _answer(source.store, a, source, "q0", "first")
    assert [x.query_id for x in source.collect()] == ["q0"]
    saved = json.loads(json.dumps(source.state_dict()))  # what the run store keeps
    _answer(source.store, a, source, "q1", "second")  # late: after the round moved on
    assert [x.query_id for x in source.collect()] == ["q1"]
    info = source.store.get_query(saved["open"][0][1])
    assert info.first_dataset_path == str(tmp_path / "ds")  # the server's hint
    source.close()

    resumed = _source(url)
    resumed.load_state_dict(saved)
    resumed.submit(pairs(3), [])  # the round again: nothing enqueued twice
    assert [x.query_id for x in resumed.collect()] == ["q1"]  # q0 was delivered before
    assert resumed.pending() == 1
    with pytest.raises(ConfigError, match="teacher.project=p"):
        LabelingSource(LabelingSourceConfig(database=url, project="other")).load_state_dict(saved)


def test_queries_open_too_long_are_withdrawn_with_what_they_got(url):
    source = _source(url, answers_wanted=2, withdraw_after_rounds=2)
    a, b = _annotators(source.store, "a", "b")
    source.submit([pair("r1-0", 0), pair("r1-1", 1)], [])
    _answer(source.store, a, source, "r1-0", "first")
    source.submit([pair("r2-0", 2)], [])
    assert source.collect() == []
    source.submit([pair("r3-0", 3)], [])  # round 3: round 1's queries waited 2 rounds
    got = {x.query_id: x.preference for x in source.collect()}
    assert set(got) == {"r1-0", "r1-1"} and got["r1-1"] is None
    assert (got["r1-0"].target, got["r1-0"].weight) == (1.0, 1.0)
    assert [q.key for q in source.store.upcoming_for(b, limit=5)] == ["r2-0", "r3-0"]
