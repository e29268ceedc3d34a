"""Parquet export and import of the label database: a SQLite database's labels arrive in
PostgreSQL (and SQLite) unchanged, importing twice adds nothing, and a bad file or a
conflicting answer writes nothing at all."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from labelkit import label_rows, new_store, pairs
from sqlalchemy import func, select

from robopref.data import Segment
from robopref.label import Conflict, LabelStore, open_database
from robopref.label.cli import main
from robopref.label.parquet import (
    SCHEMA,
    VERSION_KEY,
    LabelFileError,
    export_parquet,
    export_table,
    import_parquet,
)
from robopref.label.schema import Annotator, Project, QueryRow, SegmentRow


@pytest.fixture
def source(tmp_path):
    """A SQLite store with pairs and scores in two projects, answered by three annotators:
    retired, open and withdrawn queries, cannot_tell, reasons and scores."""
    store = new_store(tmp_path / "source.db")
    ids = store.enqueue_pairs(pairs(6), answers_wanted=2, dataset_paths={"ds": "/data/ds"})
    other = store.enqueue_pairs(pairs(2, prefix="o"), project="other")
    [sid] = store.enqueue_episode_scores([("ep0", Segment("ds:0", 0, 50))], answers_wanted=2)
    a, b, c = (store.create_annotator(name)[0] for name in ("alice", "bob", "carol"))
    for i, qid in enumerate(ids[:4]):
        store.submit_label(a, qid, "first", reason="closer" if i == 0 else None,
                           time_taken_s=1.5 + i)
        store.submit_label(b, qid, ("second", "equal", "cannot_tell", "first")[i],
                           time_taken_s=0.25)
    store.submit_label(c, ids[4], "second", time_taken_s=3.0)  # one of two: still open
    store.submit_label(c, ids[5], "first", time_taken_s=2.0)
    store.withdraw(ids[5])
    store.submit_label(a, sid, None, score=7, time_taken_s=4.0)
    store.submit_label(c, sid, "cannot_tell", time_taken_s=1.0)
    store.submit_label(b, other[0], "equal", time_taken_s=1.0)
    yield store
    store.db.close()


def counts(store: LabelStore) -> tuple[int, ...]:
    with store.db.transaction() as session:
        return tuple(session.scalar(select(func.count()).select_from(table))
                     for table in (Project, SegmentRow, QueryRow, Annotator))


def statuses(store: LabelStore) -> dict[tuple[str, str], str]:
    with store.db.transaction() as session:
        rows = session.execute(select(Project.name, QueryRow.key, QueryRow.status).join(
            Project, Project.id == QueryRow.project_id))
        return {(p, k): s for p, k, s in rows}


def test_sqlite_to_parquet_to_either_backend_keeps_every_row(source, tmp_path, database_url):
    path = tmp_path / "labels.parquet"
    assert export_parquet(source.db, path) == 13
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp
    table = pq.read_table(path)
    assert table.schema.metadata[VERSION_KEY] == b"1"
    target = new_store(database_url)
    try:
        summary = import_parquet(target.db, path)
        assert (summary.labels, summary.labels_present, summary.annotators) == (13, 0, 3)
        assert (summary.projects, summary.queries) == (2, 8)
        # Identical rows: every column, timestamps to the microsecond, in the same order.
        assert export_table(target.db).equals(export_table(source.db))
        assert label_rows(target) == label_rows(source)
        answered = {k for k in statuses(source) if k[1] != "o1"}  # o1 has no label
        assert statuses(target) == {k: v for k, v in statuses(source).items() if k in answered}
        # Imported annotators exist, with a token nobody holds.
        assert [a.name for a in target.annotators()] == ["alice", "bob", "carol"]
        before = counts(target)
        again = import_parquet(target.db, path)
        assert (again.labels, again.labels_present, again.queries) == (0, 13, 0)
        assert counts(target) == before and label_rows(target) == label_rows(source)
    finally:
        target.db.close()


def test_an_import_merges_into_labels_already_there_and_retires_full_queries(source, tmp_path):
    path = tmp_path / "labels.parquet"
    export_parquet(source.db, path, project="default")
    target = new_store(tmp_path / "target.db")
    ids = target.enqueue_pairs(pairs(6), answers_wanted=2)
    dora = target.create_annotator("dora")[0]
    target.submit_label(dora, ids[4], "first")  # with carol's from the file: two answers
    alice = target.create_annotator("alice")[0]
    target.submit_label(alice, ids[0], "first")  # the same answer the file holds
    summary = import_parquet(target.db, path)
    assert (summary.labels, summary.labels_present, summary.annotators) == (11, 1, 2)
    assert target.get_query(ids[4]).status == "retired"
    # Withdrawn in the file's database; the import keeps the status this database gave it.
    assert statuses(target)[("default", "q5")] == "open"
    assert len(label_rows(target)) == 13  # the file's 12 and dora's
    target.db.close()


def test_a_conflicting_answer_refuses_the_whole_import(source, tmp_path, database_url):
    path = tmp_path / "labels.parquet"
    export_parquet(source.db, path)
    target = new_store(database_url)
    try:
        # The file's last rows are project "other"; bob answered o0 differently here.
        [qid] = target.enqueue_pairs(pairs(1, prefix="o"), project="other")
        bob = target.create_annotator("bob")[0]
        target.submit_label(bob, qid, "first")
        before = (counts(target), label_rows(target))
        with pytest.raises(Conflict, match="differently .*nothing was imported"):
            import_parquet(target.db, path)
        assert (counts(target), label_rows(target)) == before
    finally:
        target.db.close()


def _write(table: pa.Table, path, version: bytes = b"1") -> None:
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: version}), path)


def test_bad_files_are_refused_with_one_line_and_nothing_written(source, tmp_path):
    good = tmp_path / "good.parquet"
    export_parquet(source.db, good)
    table = pq.read_table(good)
    bad = tmp_path / "bad.parquet"
    choices = table.column("choice").to_pylist()
    cases = {
        "garbage": lambda: bad.write_bytes(b"not parquet at all"),
        "truncated": lambda: bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
        "foreign": lambda: pq.write_table(pa.table({"x": [1]}), bad),
        "version": lambda: _write(table, bad, b"2"),
        "columns": lambda: _write(table.drop_columns(["annotator"]), bad),
        "choice": lambda: _write(table.set_column(
            SCHEMA.get_field_index("choice"), "choice",
            pa.array(["maybe"] + choices[1:], pa.string())), bad),
        "twice": lambda: _write(pa.concat_tables([table, table.slice(0, 1)]), bad),
    }
    expected = {"garbage": "not a readable", "truncated": "not a readable",
                "foreign": "not a robopref label export", "version": "version 2",
                "columns": "lacks the columns annotator", "choice": "row 0 .*choice 'maybe'",
                "twice": "answers query 'q0' twice"}
    target = new_store(tmp_path / "target.db")
    for name, write in cases.items():
        write()
        with pytest.raises(LabelFileError, match=expected[name]) as info:
            import_parquet(target.db, bad)
        assert "\n" not in str(info.value), name
        assert counts(target) == (0, 0, 0, 0) and label_rows(target) == [], name
    with pytest.raises(LabelFileError, match="no labels of project 'nope': it has default"):
        import_parquet(target.db, good, project="nope")
    assert import_parquet(target.db, good, project="other").labels == 1
    target.db.close()


def test_the_cli_exports_and_imports(source, tmp_path, capsys):
    path, target = tmp_path / "out" / "labels.parquet", tmp_path / "target.db"
    main(["export", "--parquet", str(path), "--db", source.db.url])
    assert "wrote 13 labels" in capsys.readouterr().err
    main(["import", str(path), "--db", str(target)])
    assert "imported 13 labels (0 already present)" in capsys.readouterr().err
    main(["import", str(path), "--db", str(target)])
    assert "imported 0 labels (13 already present)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(tmp_path / "missing.parquet"), "--db", str(target)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "does not exist" in err and "\n" not in err
    check = LabelStore(open_database(target))
    assert label_rows(check) == label_rows(source)
    check.db.close()
