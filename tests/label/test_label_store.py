"""The label store's rules: queue order, idempotent enqueue and submit, retiring at k answers,
withdrawal, export with aggregation, agreement, and concurrent writers; each on SQLite and on
PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

import threading

import pytest
from labelkit import label_rows, new_store, pair, pairs

from robopref.data import Segment
from robopref.label import Conflict, InvalidLabel, NotFound, Retired, Unauthorized
from robopref.label.export import (
    aggregate_target,
    agreement,
    export_episode_scores,
    export_preferences,
    progress,
)


@pytest.fixture
def store(database_url):
    store = new_store(database_url)
    yield store
    store.db.close()


def _annotators(store, n):
    return [store.create_annotator(f"a{i}")[0] for i in range(n)]


def test_tokens_authenticate_their_annotator_only(store):
    alice, token = store.create_annotator("alice", admin=True)
    assert store.authenticate(token) == alice and alice.is_admin
    for bad in ("", None, token + "x"):
        with pytest.raises(Unauthorized):
            store.authenticate(bad)
    with pytest.raises(Conflict, match="exists already"):
        store.create_annotator("alice")


def test_enqueue_is_idempotent_per_query_id_and_refuses_a_changed_query(store):
    first = store.enqueue_pairs(pairs(3), answers_wanted=2, dataset_paths={"ds": "/data/ds"})
    assert store.enqueue_pairs(pairs(3)) == first  # a resumed run enqueues again
    assert progress(store.db).queries["open"] == 3
    query = store.get_query(first[0])
    assert (query.key, query.answers_wanted, query.first_dataset_path) == ("q0", 2, "/data/ds")
    assert query.first == pair("q0").first and query.second == pair("q0").second
    with pytest.raises(Conflict, match="other segments"):
        store.enqueue_pairs([pair("q0", i=7)])
    # The same key in another project is another query.
    assert store.enqueue_pairs([pair("q0", i=7)], project="other") != first[:1]
    with pytest.raises(InvalidLabel, match="equal-length"):
        store.enqueue_pairs([pair("bad").__class__("bad", Segment("ds:0", 0, 5),
                                                   Segment("ds:1", 0, 6))])
    with pytest.raises(NotFound):
        store.get_query(999)


def test_next_query_is_the_oldest_open_one_not_yet_answered_by_the_caller(store):
    ids = store.enqueue_pairs(pairs(3), answers_wanted=2)
    alice, bob = _annotators(store, 2)
    assert store.next_query_for(alice).id == ids[0]
    store.submit_label(alice, ids[0], "first")
    assert store.next_query_for(alice).id == ids[1]
    assert store.next_query_for(bob).id == ids[0]  # still open: wants 2 answers
    store.submit_label(alice, ids[1], "second")
    store.submit_label(alice, ids[2], "equal")
    assert store.next_query_for(alice) is None
    assert store.next_query_for(bob, project="nope") is None


def test_double_submit_returns_the_stored_row_and_a_changed_answer_conflicts(store):
    [qid] = store.enqueue_pairs(pairs(1), answers_wanted=1)
    [alice] = _annotators(store, 1)
    label, created = store.submit_label(alice, qid, "first", reason="closer", time_taken_s=2.0)
    # The first answer retired the query; the same answer again is still accepted as a replay.
    again, created_again = store.submit_label(alice, qid, "first", time_taken_s=9.0)
    assert created and not created_again and again == label
    with pytest.raises(Conflict, match="already answered"):
        store.submit_label(alice, qid, "second")
    assert label_rows(store) == [("q0", "a0", "first", None)]


def test_a_query_retires_at_k_answers_and_cannot_tell_counts_but_exports_nothing(store):
    [qid, other] = store.enqueue_pairs(pairs(2), answers_wanted=2)
    a, b, c = _annotators(store, 3)
    store.submit_label(a, qid, "cannot_tell")
    assert store.get_query(qid).status == "open"
    store.submit_label(b, qid, "cannot_tell")
    assert store.get_query(qid).status == "retired"
    with pytest.raises(Retired, match="retired"):
        store.submit_label(c, qid, "first")
    assert export_preferences(store.db) == []
    p = progress(store.db, caller=c)
    assert (p.labels, p.cannot_tell, p.queries["retired"], p.remaining_for_caller) == (2, 2, 1, 1)
    assert store.get_query(other).status == "open"


def test_withdrawn_queries_are_not_served_and_take_no_labels(store):
    [qid] = store.enqueue_pairs(pairs(1), answers_wanted=3)
    a, b = _annotators(store, 2)
    store.submit_label(a, qid, "first")
    assert store.withdraw(qid).status == "withdrawn"
    assert store.withdraw(qid).status == "withdrawn"  # idempotent
    assert store.next_query_for(b) is None
    with pytest.raises(Retired, match="withdrawn"):
        store.submit_label(b, qid, "first")
    # The answer it got before stays and is exported.
    assert [p.target for p in export_preferences(store.db)] == [1.0]


def test_answers_are_checked_against_the_query_kind(store):
    [qid] = store.enqueue_pairs(pairs(1))
    [sid] = store.enqueue_episode_scores([("ep0", Segment("ds:0", 0, 50))])
    [a] = _annotators(store, 1)
    for kwargs in ({"choice": None}, {"choice": "first", "score": 3}, {"choice": "best"}):
        with pytest.raises(InvalidLabel):
            store.submit_label(a, qid, **kwargs)
    for kwargs in ({"choice": "first"}, {"choice": None}, {"choice": None, "score": 10},
                   {"choice": "cannot_tell", "score": 2}):
        with pytest.raises(InvalidLabel):
            store.submit_label(a, sid, **kwargs)
    with pytest.raises(InvalidLabel):
        store.submit_label(a, qid, "first", time_taken_s=-1.0)
    assert label_rows(store) == []  # nothing half-written
    store.submit_label(a, sid, None, score=7)
    assert label_rows(store) == [("ep0", "a0", None, 7)]


def test_export_aggregates_annotators_into_one_weighted_preference(store):
    ids = store.enqueue_pairs(pairs(4), answers_wanted=3)
    a, b, c = _annotators(store, 3)
    answers = {
        ids[0]: ("first", "first", "second"),  # majority first; soft 2/3
        ids[1]: ("equal", "equal", "cannot_tell"),  # two answers count
        ids[2]: ("first", "second", "equal"),  # a three-way tie
    }
    for qid, choices in answers.items():
        for annotator, choice in zip((a, b, c), choices, strict=True):
            store.submit_label(annotator, qid, choice)
    store.submit_label(a, ids[3], "second")  # one answer of three so far: exported, weight 1
    majority = export_preferences(store.db)
    assert [(p.target, p.weight) for p in majority] == [(1.0, 3.0), (0.5, 2.0), (0.5, 3.0),
                                                         (0.0, 1.0)]
    assert majority[0].source == "people" and majority[0].annotator == "a0,a1,a2"
    assert majority[0].first == pair("q0").first and majority[0].second == pair("q0").second
    soft = export_preferences(store.db, method="soft")
    assert [p.target for p in soft] == pytest.approx([2 / 3, 0.5, 0.5, 0.0])
    assert len(export_preferences(store.db, min_answers=2)) == 3
    assert aggregate_target(["first", "equal"]) == 0.75
    with pytest.raises(InvalidLabel):
        aggregate_target(["first"], method="median")


def test_agreement_counts_answers_matching_a_strict_majority(store):
    ids = store.enqueue_pairs(pairs(3), answers_wanted=3)
    a, b, c = _annotators(store, 3)
    for qid, choices in zip(ids, [("first", "first", "second"), ("second", "second", "second"),
                                  ("first", "second", "cannot_tell")], strict=True):
        for annotator, choice in zip((a, b, c), choices, strict=True):
            store.submit_label(annotator, qid, choice)
    stats = agreement(store.db)
    # Query 3 is a tie once cannot_tell is left out: it compares nobody.
    assert {n: (s.agreed, s.compared) for n, s in stats.items()} == {
        "a0": (2, 2), "a1": (2, 2), "a2": (1, 2)}
    assert stats["a2"].rate == 0.5


def test_episode_scores_are_averaged_per_segment(store):
    segment = Segment("ds:3", 0, 120)
    [sid] = store.enqueue_episode_scores([("ep3", segment)], answers_wanted=3)
    a, b, c = _annotators(store, 3)
    store.submit_label(a, sid, None, score=6)
    store.submit_label(b, sid, None, score=9)
    store.submit_label(c, sid, "cannot_tell")
    [score] = export_episode_scores(store.db)
    assert (score.key, score.segment, score.score, score.weight) == ("ep3", segment, 7.5, 2)
    assert store.get_query(sid).status == "retired"
    assert export_preferences(store.db) == []  # scores are not pair preferences


def test_concurrent_annotators_in_separate_connections_leave_exactly_the_expected_rows(
        database_url):
    """Ten writers, each with its own engine (as separate processes would be), answer every
    query twice over; each query wants five answers. Exactly five rows per query must remain:
    none lost, none duplicated, and no query takes a sixth answer."""
    path = database_url
    setup = new_store(path)
    n_queries, k, n_threads = 12, 5, 10
    ids = setup.enqueue_pairs(pairs(n_queries), answers_wanted=k)
    tokens = [setup.create_annotator(f"a{i}")[1] for i in range(n_threads)]
    setup.db.close()
    outcomes: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads, timeout=60)

    def annotate(token: str) -> None:
        store = new_store(path)
        try:
            me = store.authenticate(token)
            barrier.wait()
            results = []
            for qid in ids + ids:  # the second pass replays every answer
                try:
                    _, created = store.submit_label(me, qid, "first", time_taken_s=0.1)
                    results.append("new" if created else "replay")
                except Retired:
                    results.append("retired")
            outcomes[me.name] = results
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)
        finally:
            store.db.close()

    threads = [threading.Thread(target=annotate, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(outcomes) == n_threads
    check = new_store(path)
    rows = label_rows(check)
    per_query = {key: sum(1 for r in rows if r[0] == key) for key in {r[0] for r in rows}}
    assert per_query == {f"q{i}": k for i in range(n_queries)}
    assert len(set((r[0], r[1]) for r in rows)) == len(rows) == n_queries * k
    # What each writer was told matches the rows: every "new" is a row, replays repeat it.
    new = sum(r[:n_queries].count("new") for r in outcomes.values())
    assert new == n_queries * k
    for results in outcomes.values():
        assert results[n_queries:] == ["replay" if r == "new" else "retired"
                                       for r in results[:n_queries]]
    assert all(check.get_query(q).status == "retired" for q in ids)
    check.db.close()
