"""Label database <-> Parquet: a portable copy of every label, to archive, share or merge.

``export_parquet`` writes one row per label: the query (project, key, kind, answers wanted,
status, times), its segments (stable episode id, frame range ``[start, end)``, the dataset
path hint), and the answer (annotator name, choice, score, reason, ``time_taken_s`` in
seconds, ``created_at`` in UTC). Queries nobody answered are not written. The file's schema
metadata carries :data:`PARQUET_FORMAT_VERSION`; the file appears under its name only
complete (temp file, fsync, rename).

``import_parquet`` re-creates what a file names inside one transaction (all or nothing):
projects, segments and queries are found by their natural keys (project name; episode id
and frame range; project and query key) or created, labels by (query, annotator). It is
idempotent: a label already stored with the same answer (choice and score) is left as it
is, so importing a file twice adds nothing; a different stored answer refuses the whole
import. Annotators the database lacks are created with a random token that is thrown away:
their labels count, but nobody can sign in as them (give a person who should label again a
new annotator). A query the import gives enough answers retires, as a submit would.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from robopref.data.atomic import write_bytes_atomic
from robopref.label.database import Database
from robopref.label.errors import Conflict, LabelDatabaseError, LabelError
from robopref.label.schema import (
    QUERY_KINDS,
    QUERY_STATUSES,
    Annotator,
    LabelRow,
    Project,
    QueryRow,
    SegmentRow,
    utcnow,
)
from robopref.label.store import check_answer, hash_token

PARQUET_FORMAT_VERSION = 1
VERSION_KEY = b"robopref.labels.format_version"
_TS = pa.timestamp("us", tz="UTC")


def _field(name: str, kind: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=nullable)


SCHEMA = pa.schema(
    [
        _field("project", pa.string()),
        _field("query_key", pa.string()),
        _field("kind", pa.string()),
        _field("answers_wanted", pa.int32()),
        _field("query_status", pa.string()),
        _field("query_created_at", _TS),
        _field("query_closed_at", _TS, True),
        _field("first_episode_id", pa.string()),
        _field("first_start", pa.int64()),
        _field("first_end", pa.int64()),
        _field("first_dataset_path", pa.string(), True),
        _field("second_episode_id", pa.string(), True),
        _field("second_start", pa.int64(), True),
        _field("second_end", pa.int64(), True),
        _field("second_dataset_path", pa.string(), True),
        _field("annotator", pa.string()),
        _field("choice", pa.string(), True),
        _field("score", pa.int32(), True),
        _field("reason", pa.string(), True),
        _field("time_taken_s", pa.float64()),
        _field("created_at", _TS),
    ],
    metadata={VERSION_KEY: str(PARQUET_FORMAT_VERSION).encode()},
)
_REQUIRED = [f.name for f in SCHEMA if not f.nullable]


class LabelFileError(LabelError):
    """A Parquet label file that cannot be read or imported."""


@dataclass(frozen=True)
class ImportSummary:
    """What an import added (``labels_present``: labels the database held already)."""

    projects: int
    segments: int
    queries: int
    annotators: int
    labels: int
    labels_present: int


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:240] or type(exc).__name__


def export_table(db: Database, project: str | None = None) -> pa.Table:
    """Every label (of ``project``, or all) as a table of :data:`SCHEMA`, oldest query
    first and, within a query, in the order the answers came."""
    first, second = aliased(SegmentRow), aliased(SegmentRow)
    stmt = (
        select(Project.name, QueryRow, first, second, Annotator.name, LabelRow)
        .select_from(LabelRow)
        .join(QueryRow, QueryRow.id == LabelRow.query_id)
        .join(Project, Project.id == QueryRow.project_id)
        .join(Annotator, Annotator.id == LabelRow.annotator_id)
        .join(first, first.id == QueryRow.first_segment_id)
        .outerjoin(second, second.id == QueryRow.second_segment_id)
        .order_by(QueryRow.id, LabelRow.id)
    )
    if project is not None:
        stmt = stmt.where(Project.name == project)
    rows = []
    with db.transaction() as session:
        for project_name, query, a, b, annotator, label in session.execute(stmt):
            rows.append({
                "project": project_name, "query_key": query.key, "kind": query.kind,
                "answers_wanted": query.answers_wanted, "query_status": query.status,
                "query_created_at": query.created_at, "query_closed_at": query.closed_at,
                "first_episode_id": a.episode_id, "first_start": a.start_frame,
                "first_end": a.end_frame, "first_dataset_path": a.dataset_path,
                "second_episode_id": None if b is None else b.episode_id,
                "second_start": None if b is None else b.start_frame,
                "second_end": None if b is None else b.end_frame,
                "second_dataset_path": None if b is None else b.dataset_path,
                "annotator": annotator, "choice": label.choice, "score": label.score,
                "reason": label.reason, "time_taken_s": label.time_taken_s,
                "created_at": label.created_at,
            })
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def export_parquet(db: Database, path: str | Path, project: str | None = None) -> int:
    """Write every label (of ``project``, or all) to the Parquet file ``path``, atomically;
    returns the number of labels written."""
    table = export_table(db, project)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_bytes_atomic(path, sink.getvalue().to_pybytes())
    return table.num_rows


def read_table(path: str | Path) -> pa.Table:
    """The label table in ``path``, checked for the format version and the columns."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"{path} does not exist: give the file 'robopref label export "
                             "--parquet FILE' wrote")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise LabelFileError(f"{path} is not a readable Parquet file ({_one_line(exc)}): "
                             "export it again with 'robopref label export --parquet'") from None
    metadata = table.schema.metadata or {}
    if VERSION_KEY not in metadata:
        raise LabelFileError(f"{path} is not a robopref label export (no format version in "
                             "its metadata): export with 'robopref label export --parquet'")
    try:
        version = int(metadata[VERSION_KEY])
    except ValueError:
        version = None
    if version != PARQUET_FORMAT_VERSION:
        raise LabelFileError(f"{path} has label-export format version "
                             f"{metadata[VERSION_KEY].decode(errors='replace')}, this robopref "
                             f"reads {PARQUET_FORMAT_VERSION}: use the robopref release that "
                             "wrote it")
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise LabelFileError(f"{path} lacks the columns {', '.join(missing)}: it was edited "
                             "or truncated; export it again")
    try:
        return table.select(SCHEMA.names).cast(SCHEMA)
    except (pa.ArrowException, ValueError) as exc:
        raise LabelFileError(f"{path} has columns of the wrong type ({_one_line(exc)}): it "
                             "was edited by another tool; export it again") from None


def _segments(row: dict) -> list[tuple[str, int, int, str | None]]:
    sides = [("first", row["first_episode_id"], row["first_start"], row["first_end"])]
    if row["second_episode_id"] is not None or row["second_start"] is not None:
        sides.append(("second", row["second_episode_id"], row["second_start"],
                      row["second_end"]))
    out = []
    for side, episode_id, start, end in sides:
        if episode_id is None or start is None or end is None or not 0 <= start < end:
            raise ValueError(f"the {side} segment [{start}, {end}) of {episode_id} is invalid")
        out.append((episode_id, int(start), int(end), row[f"{side}_dataset_path"]))
    return out


def _check_rows(rows: list[dict]) -> None:
    """Refuse a file whose rows break the database's rules, before anything is written."""
    queries: dict[tuple[str, str], tuple] = {}
    answered: set[tuple[str, str, str]] = set()
    for number, row in enumerate(rows):
        try:
            nulls = [name for name in _REQUIRED if row[name] is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)} is empty")
            if row["kind"] not in QUERY_KINDS or row["query_status"] not in QUERY_STATUSES:
                raise ValueError(f"kind '{row['kind']}' or status '{row['query_status']}' "
                                 "is unknown")
            if row["answers_wanted"] < 1:
                raise ValueError(f"answers_wanted is {row['answers_wanted']}")
            segments = _segments(row)
            if len(segments) != (2 if row["kind"] == "pair" else 1):
                raise ValueError(f"a {row['kind']} query with {len(segments)} segments")
            check_answer(row["kind"], row["choice"], row["score"], row["reason"],
                         row["time_taken_s"])
            query = (row["kind"], row["answers_wanted"], [s[:3] for s in segments])
            key = (row["project"], row["query_key"])
            if queries.setdefault(key, query) != query:
                raise ValueError(f"query '{key[1]}' is described differently by another row")
            if (*key, row["annotator"]) in answered:
                raise ValueError(f"{row['annotator']} answers query '{key[1]}' twice")
            answered.add((*key, row["annotator"]))
        except (ValueError, LabelError) as exc:
            raise LabelFileError(f"row {number} of the file is invalid ({_one_line(exc)}): "
                                 "fix or re-export the file; nothing was imported") from None


class _Importer:
    """The rows of one file into one session, finding before creating."""

    def __init__(self, session: Session):
        self.session = session
        self.projects: dict[str, Project] = {}
        self.segments: dict[tuple[str, int, int], SegmentRow] = {}
        self.queries: dict[tuple[str, str], QueryRow] = {}
        self.annotators: dict[str, Annotator] = {}
        self.added = dict.fromkeys(("projects", "segments", "queries", "annotators",
                                    "labels", "labels_present"), 0)

    def _add(self, row, what: str):
        self.session.add(row)
        self.session.flush()
        self.added[what] += 1
        return row

    def project(self, name: str) -> Project:
        if name not in self.projects:
            found = self.session.scalar(select(Project).where(Project.name == name))
            self.projects[name] = found or self._add(Project(name=name, created_at=utcnow()),
                                                     "projects")
        return self.projects[name]

    def segment(self, episode_id: str, start: int, end: int, path: str | None) -> SegmentRow:
        key = (episode_id, start, end)
        if key not in self.segments:
            found = self.session.scalar(select(SegmentRow).where(
                SegmentRow.episode_id == episode_id, SegmentRow.start_frame == start,
                SegmentRow.end_frame == end))
            self.segments[key] = found or self._add(SegmentRow(
                episode_id=episode_id, start_frame=start, end_frame=end, dataset_path=path),
                "segments")
        row = self.segments[key]
        if row.dataset_path is None and path is not None:
            row.dataset_path = path
        return row

    def query(self, row: dict) -> QueryRow:
        key = (row["project"], row["query_key"])
        if key in self.queries:
            return self.queries[key]
        project = self.project(row["project"])
        segments = [self.segment(*s) for s in _segments(row)]
        ids = (segments[0].id, segments[1].id if len(segments) > 1 else None)
        found = self.session.scalar(select(QueryRow).where(
            QueryRow.project_id == project.id, QueryRow.key == row["query_key"]))
        if found is None:
            found = self._add(QueryRow(
                project_id=project.id, key=row["query_key"], kind=row["kind"],
                first_segment_id=ids[0], second_segment_id=ids[1],
                answers_wanted=row["answers_wanted"], status=row["query_status"],
                created_at=row["query_created_at"], closed_at=row["query_closed_at"]),
                "queries")
        elif (found.kind, found.first_segment_id, found.second_segment_id) != (row["kind"],
                                                                               *ids):
            raise Conflict(f"query '{row['query_key']}' of project '{row['project']}' asks "
                           "about other segments in the database than in the file: import "
                           "into another database or rename the project; nothing was imported")
        self.queries[key] = found
        return found

    def annotator(self, name: str) -> Annotator:
        if name not in self.annotators:
            found = self.session.scalar(select(Annotator).where(Annotator.name == name))
            # A token nobody ever sees: the imported labels count, no one signs in as them.
            self.annotators[name] = found or self._add(Annotator(
                name=name, token_hash=hash_token(secrets.token_urlsafe(32)), is_admin=False,
                created_at=utcnow()), "annotators")
        return self.annotators[name]

    def label(self, row: dict) -> None:
        query, annotator = self.query(row), self.annotator(row["annotator"])
        stored = self.session.scalar(select(LabelRow).where(
            LabelRow.query_id == query.id, LabelRow.annotator_id == annotator.id))
        if stored is None:
            self._add(LabelRow(
                query_id=query.id, annotator_id=annotator.id, choice=row["choice"],
                score=row["score"], reason=row["reason"], time_taken_s=row["time_taken_s"],
                created_at=row["created_at"]), "labels")
        elif (stored.choice, stored.score) == (row["choice"], row["score"]):
            self.added["labels_present"] += 1
        else:
            raise Conflict(f"{annotator.name} answered query '{query.key}' differently in the "
                           "database than in the file: resolve it by hand; nothing was imported")

    def retire_complete(self) -> None:
        """Retire open queries the import gave enough answers, as a submit would have."""
        for query in self.queries.values():
            if query.status != "open":
                continue
            answers = self.session.scalar(select(func.count()).select_from(LabelRow).where(
                LabelRow.query_id == query.id))
            if answers >= query.answers_wanted:
                query.status, query.closed_at = "retired", utcnow()


def import_parquet(db: Database, path: str | Path, project: str | None = None,
                   progress: Callable[[list], Iterable] | None = None) -> ImportSummary:
    """Import the labels in ``path`` (only ``project``'s when given) in one transaction.

    ``progress``: optionally wraps the list of rows (e.g. ``tqdm``) to show how far the
    import got.
    """
    table = read_table(path)
    if project is not None:
        names = sorted(set(table.column("project").to_pylist()))
        if project not in names:
            raise LabelFileError(f"{path} holds no labels of project '{project}': it has "
                                 f"{', '.join(names) or 'none'}")
        table = table.filter(pc.equal(table.column("project"), project))
    rows = table.to_pylist()
    _check_rows(rows)
    try:
        with db.transaction() as session:
            importer = _Importer(session)
            for row in rows if progress is None else progress(rows):
                importer.label(row)
            importer.retire_complete()
    except SQLAlchemyError as exc:
        raise LabelDatabaseError(f"importing {path} into {db.url} failed "
                                 f"({_one_line(getattr(exc, 'orig', None) or exc)}); nothing "
                                 "was imported: check the database and try again") from None
    return ImportSummary(**importer.added)
