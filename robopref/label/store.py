"""The label store: every operation on the label database, each in one transaction.

Used by the HTTP server, the CLI and (later) the loop's labelling source alike, so the rules
live here once: who may answer what, when a query retires, what a repeated submit means.
Statements are built with SQLAlchemy expressions only; no SQL is assembled from strings.

Results are frozen dataclasses, not ORM rows, so nothing outside this module holds a
session or triggers a lazy load after its transaction ended.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from robopref.data import Segment
from robopref.label.database import Database
from robopref.label.errors import Conflict, InvalidLabel, NotFound, Retired, Unauthorized
from robopref.label.schema import (
    CHOICES,
    MAX_REASON_CHARS,
    MAX_SCORE,
    Annotator,
    LabelRow,
    Project,
    QueryRow,
    SegmentRow,
    utcnow,
)

if TYPE_CHECKING:
    # Only for annotations: robopref.preferences imports torch, which the server never needs.
    from robopref.preferences.base import Query

T = TypeVar("T")
DEFAULT_PROJECT = "default"
# Unique-constraint races (two processes creating the same segment or label at once) are
# resolved by retrying the whole transaction, which then finds the other's row.
RETRIES = 3


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a bearer token: what the database stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AnnotatorInfo:
    id: int
    name: str
    is_admin: bool


@dataclass(frozen=True)
class QueryInfo:
    """A query as the page and the loop see it; ``second`` is ``None`` for a score request."""

    id: int
    key: str
    project: str
    kind: str
    first: Segment
    second: Segment | None
    first_dataset_path: str | None
    second_dataset_path: str | None
    answers_wanted: int
    answers: int
    status: str
    created_at: datetime

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "key": self.key,
            "project": self.project,
            "kind": self.kind,
            "first": {**self.first.to_json(), "dataset_path": self.first_dataset_path},
            "second": None
            if self.second is None
            else {**self.second.to_json(), "dataset_path": self.second_dataset_path},
            "answers_wanted": self.answers_wanted,
            "answers": self.answers,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class LabelInfo:
    id: int
    query_id: int
    annotator: str
    choice: str | None
    score: int | None
    reason: str | None
    time_taken_s: float
    created_at: datetime

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "query_id": self.query_id,
            "annotator": self.annotator,
            "choice": self.choice,
            "score": self.score,
            "reason": self.reason,
            "time_taken_s": self.time_taken_s,
            "created_at": self.created_at.isoformat(),
        }


def _dataset_id(episode_id: str) -> str:
    return episode_id.rpartition(":")[0]


def _label_info(row: LabelRow, annotator_name: str) -> LabelInfo:
    return LabelInfo(
        row.id, row.query_id, annotator_name, row.choice, row.score, row.reason,
        row.time_taken_s, row.created_at,
    )


def check_answer(kind: str, choice: str | None, score: int | None, reason: str | None,
                 time_taken_s: float) -> None:
    """Refuse an answer that does not fit a query of ``kind`` (the server's schema checks
    types; these are the rules that depend on the query)."""
    if choice is not None and choice not in CHOICES:
        raise InvalidLabel(f"choice '{choice}' is unknown: use one of {', '.join(CHOICES)}")
    if score is not None and not (isinstance(score, int) and 0 <= score <= MAX_SCORE):
        raise InvalidLabel(f"score {score!r} is out of range: give an integer 0..{MAX_SCORE}")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise InvalidLabel(f"reason has {len(reason)} characters: shorten it to "
                           f"{MAX_REASON_CHARS}")
    if not (math.isfinite(time_taken_s) and time_taken_s >= 0):
        raise InvalidLabel(f"time_taken_s {time_taken_s!r} is invalid: give seconds >= 0")
    if kind == "pair":
        if choice is None:
            raise InvalidLabel("a pair query needs a choice: first, second, equal or cannot_tell")
        if score is not None:
            raise InvalidLabel("a pair query takes no score: send the choice alone")
    elif choice not in (None, "cannot_tell"):
        raise InvalidLabel("an episode-score query takes a score 0..9 (or choice cannot_tell)")
    elif choice is None and score is None:
        raise InvalidLabel("an episode-score query needs a score 0..9 or choice cannot_tell")
    elif choice == "cannot_tell" and score is not None:
        raise InvalidLabel("choice cannot_tell takes no score: send one or the other")


class LabelStore:
    """Operations on one open :class:`Database`."""

    def __init__(self, database: Database):
        self.db = database

    # -- plumbing ----------------------------------------------------------------------
    def _run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction, retrying when a concurrent writer won a race."""
        for attempt in range(RETRIES):
            try:
                with self.db.transaction() as session:
                    return work(session)
            except IntegrityError:
                if attempt == RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _project(self, session: Session, name: str, create: bool) -> Project | None:
        project = session.scalar(select(Project).where(Project.name == name))
        if project is None and create:
            project = Project(name=name, created_at=utcnow())
            session.add(project)
            session.flush()
        return project

    def _segment(self, session: Session, segment: Segment, path: str | None) -> SegmentRow:
        row = session.scalar(
            select(SegmentRow).where(
                SegmentRow.episode_id == segment.episode_id,
                SegmentRow.start_frame == segment.start,
                SegmentRow.end_frame == segment.end,
            )
        )
        if row is None:
            row = SegmentRow(episode_id=segment.episode_id, start_frame=segment.start,
                             end_frame=segment.end, dataset_path=path)
            session.add(row)
            session.flush()
        elif row.dataset_path is None and path is not None:
            row.dataset_path = path
        return row

    def _query_info(self, session: Session, row: QueryRow) -> QueryInfo:
        return self._query_infos(session, [row])[0]

    def _query_infos(self, session: Session, rows: list[QueryRow]) -> list[QueryInfo]:
        """Query records of ``rows``: three reads in all (segments, answer counts, projects),
        whatever the number of rows, since ``/api/next`` builds several per call."""
        if not rows:
            return []
        segment_ids = {r.first_segment_id for r in rows} | {
            r.second_segment_id for r in rows if r.second_segment_id is not None
        }
        found = session.scalars(select(SegmentRow).where(SegmentRow.id.in_(segment_ids)))
        segments = {s.id: s for s in found}
        query_ids = [r.id for r in rows]
        counts = dict(session.execute(
            select(LabelRow.query_id, func.count()).where(LabelRow.query_id.in_(query_ids))
            .group_by(LabelRow.query_id)
        ).all())
        projects = dict(session.execute(
            select(Project.id, Project.name).where(Project.id.in_({r.project_id for r in rows}))
        ).all())

        def segment(s: SegmentRow) -> Segment:
            return Segment(s.episode_id, s.start_frame, s.end_frame)

        infos = []
        for row in rows:
            first = segments[row.first_segment_id]
            second = None if row.second_segment_id is None else segments[row.second_segment_id]
            infos.append(QueryInfo(
                row.id, row.key, projects[row.project_id], row.kind, segment(first),
                None if second is None else segment(second), first.dataset_path,
                None if second is None else second.dataset_path, row.answers_wanted,
                counts.get(row.id, 0), row.status, row.created_at,
            ))
        return infos

    def _get_query(self, session: Session, query_id: int, lock: bool = False) -> QueryRow:
        stmt = select(QueryRow).where(QueryRow.id == query_id)
        if lock:
            # PostgreSQL: serialise submits to one query, so the answer count that retires it
            # is exact. SQLite's BEGIN IMMEDIATE already serialises all writers.
            stmt = stmt.with_for_update()
        row = session.scalar(stmt)
        if row is None:
            raise NotFound(f"query {query_id} does not exist: ask GET /api/next for an open one")
        return row

    # -- annotators --------------------------------------------------------------------
    def create_annotator(self, name: str, admin: bool = False) -> tuple[AnnotatorInfo, str]:
        """Add an annotator; returns it and its bearer token, the only time the token exists
        in plain text (the database keeps its hash)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidLabel("annotator name must be 1-100 characters: pick another")
        token = secrets.token_urlsafe(32)

        def work(session: Session) -> AnnotatorInfo:
            if session.scalar(select(Annotator.id).where(Annotator.name == name)) is not None:
                raise Conflict(f"annotator '{name}' exists already: pick another name")
            row = Annotator(name=name, token_hash=hash_token(token), is_admin=admin,
                            created_at=utcnow())
            session.add(row)
            session.flush()
            return AnnotatorInfo(row.id, row.name, row.is_admin)

        return self._run(work), token

    def authenticate(self, token: str | None) -> AnnotatorInfo:
        """The annotator holding ``token``; :class:`Unauthorized` for none or an unknown one."""
        if not token:
            raise Unauthorized("no token: send 'Authorization: Bearer <token>' (an admin "
                               "creates one with 'robopref label annotator add NAME')")
        with self.db.transaction() as session:
            row = session.scalar(select(Annotator).where(Annotator.token_hash == hash_token(token)))
            if row is None:
                raise Unauthorized("unknown token: check it, or ask an admin for a new one "
                                   "('robopref label annotator add NAME')")
            return AnnotatorInfo(row.id, row.name, row.is_admin)

    def annotators(self) -> list[AnnotatorInfo]:
        with self.db.transaction() as session:
            rows = session.scalars(select(Annotator).order_by(Annotator.id))
            return [AnnotatorInfo(r.id, r.name, r.is_admin) for r in rows]

    # -- queue -------------------------------------------------------------------------
    def enqueue_pairs(self, queries: Iterable[Query], project: str = DEFAULT_PROJECT,
                      answers_wanted: int = 1,
                      dataset_paths: Mapping[str, str] | None = None) -> list[int]:
        """Add pair queries; idempotent per ``Query.id`` within ``project`` (a resumed run
        enqueues again and gets the same database ids back). Returns the database ids."""
        items = [(q.id, "pair", q.first, q.second) for q in queries]
        for key, _, first, second in items:
            if len(first) != len(second):
                raise InvalidLabel(f"query {key} pairs segments of {len(first)} and "
                                   f"{len(second)} frames: cut equal-length segments")
        return self._enqueue(items, project, answers_wanted, dataset_paths or {})

    def enqueue_episode_scores(self, items: Iterable[tuple[str, Segment]],
                               project: str = DEFAULT_PROJECT, answers_wanted: int = 1,
                               dataset_paths: Mapping[str, str] | None = None) -> list[int]:
        """Ask for a 0-9 score of each ``(key, segment)``; idempotent per key like pairs."""
        rows = [(key, "episode_score", segment, None) for key, segment in items]
        return self._enqueue(rows, project, answers_wanted, dataset_paths or {})

    def _enqueue(self, items, project_name, answers_wanted, paths) -> list[int]:
        if answers_wanted < 1:
            raise InvalidLabel(f"answers_wanted is {answers_wanted}: ask for at least 1")

        def work(session: Session) -> list[int]:
            project = self._project(session, project_name, create=True)
            ids = []
            for key, kind, first, second in items:
                key = str(key)
                a = self._segment(session, first, paths.get(_dataset_id(first.episode_id)))
                b = None if second is None else self._segment(
                    session, second, paths.get(_dataset_id(second.episode_id))
                )
                row = session.scalar(select(QueryRow).where(
                    QueryRow.project_id == project.id, QueryRow.key == key))
                if row is None:
                    row = QueryRow(project_id=project.id, key=key, kind=kind,
                                   first_segment_id=a.id,
                                   second_segment_id=None if b is None else b.id,
                                   answers_wanted=answers_wanted, status="open",
                                   created_at=utcnow())
                    session.add(row)
                    session.flush()
                elif (row.kind, row.first_segment_id, row.second_segment_id) != (
                    kind, a.id, None if b is None else b.id
                ):
                    raise Conflict(f"query '{key}' of project '{project_name}' already asks "
                                   "about other segments: give new queries new ids")
                ids.append(row.id)
            return ids

        return self._run(work)

    def withdraw(self, query_id: int) -> QueryInfo:
        """Stop serving an open query (the loop went on without it); answers it already has
        stay and are exported. Withdrawing a retired or withdrawn query changes nothing."""

        def work(session: Session) -> QueryInfo:
            row = self._get_query(session, query_id, lock=True)
            if row.status == "open":
                row.status, row.closed_at = "withdrawn", utcnow()
            return self._query_info(session, row)

        return self._run(work)

    def get_query(self, query_id: int) -> QueryInfo:
        with self.db.transaction() as session:
            return self._query_info(session, self._get_query(session, query_id))

    def next_query_for(self, annotator: AnnotatorInfo,
                       project: str | None = None) -> QueryInfo | None:
        """The oldest open query ``annotator`` has not answered, or ``None``."""
        upcoming = self.upcoming_for(annotator, project, limit=1)
        return upcoming[0] if upcoming else None

    def upcoming_for(self, annotator: AnnotatorInfo, project: str | None = None,
                     limit: int = 1) -> list[QueryInfo]:
        """The ``limit`` oldest open queries ``annotator`` has not answered, in the order
        :meth:`next_query_for` serves them (the server prefetches their videos)."""
        answered = exists().where(
            LabelRow.query_id == QueryRow.id, LabelRow.annotator_id == annotator.id
        )
        stmt = select(QueryRow).where(QueryRow.status == "open", ~answered)
        if project is not None:
            stmt = stmt.join(Project, Project.id == QueryRow.project_id).where(
                Project.name == project)
        with self.db.transaction() as session:
            rows = list(session.scalars(stmt.order_by(QueryRow.id).limit(max(limit, 0))))
            return self._query_infos(session, rows)

    # -- labels ------------------------------------------------------------------------
    def submit_label(self, annotator: AnnotatorInfo, query_id: int, choice: str | None,
                     score: int | None = None, reason: str | None = None,
                     time_taken_s: float = 0.0) -> tuple[LabelInfo, bool]:
        """Store ``annotator``'s answer to query ``query_id``; returns it and whether it is new.

        Repeating the same answer (choice and score) returns the stored row unchanged, also
        after that answer retired the query, so a client may retry a lost response. A
        different answer to a query already answered is a :class:`Conflict`; any answer to a
        retired or withdrawn query not answered before is :class:`Retired`. The query retires
        in the same transaction as the answer that completes it.
        """

        def work(session: Session) -> tuple[LabelInfo, bool]:
            query = self._get_query(session, query_id, lock=True)
            existing = session.scalar(select(LabelRow).where(
                LabelRow.query_id == query.id, LabelRow.annotator_id == annotator.id))
            if existing is not None:
                if (existing.choice, existing.score) == (choice, score):
                    return _label_info(existing, annotator.name), False
                stored = existing.choice if existing.score is None else f"score {existing.score}"
                raise Conflict(
                    f"{annotator.name} already answered query {query_id} with {stored}: "
                    "an answer cannot be changed by submitting again"
                )
            if query.status != "open":
                raise Retired(f"query {query_id} is {query.status} and takes no more labels: "
                              "fetch the next one with GET /api/next")
            check_answer(query.kind, choice, score, reason, time_taken_s)
            row = LabelRow(query_id=query.id, annotator_id=annotator.id, choice=choice,
                           score=score, reason=reason, time_taken_s=float(time_taken_s),
                           created_at=utcnow())
            session.add(row)
            session.flush()
            answers = session.scalar(select(func.count()).select_from(LabelRow).where(
                LabelRow.query_id == query.id))
            if answers >= query.answers_wanted:
                query.status, query.closed_at = "retired", utcnow()
            return _label_info(row, annotator.name), True

        return self._run(work)

    def label_of(self, query_id: int, annotator_name: str) -> LabelInfo:
        """``annotator_name``'s answer to query ``query_id`` (callers check who may see it)."""
        with self.db.transaction() as session:
            self._get_query(session, query_id)
            row = session.scalar(
                select(LabelRow).join(Annotator, Annotator.id == LabelRow.annotator_id).where(
                    LabelRow.query_id == query_id, Annotator.name == annotator_name))
            if row is None:
                raise NotFound(f"{annotator_name} has not answered query {query_id}: "
                               "check the query id and the annotator name")
            return _label_info(row, annotator_name)

    def undo_last(self, annotator: AnnotatorInfo,
                  project: str | None = None) -> LabelInfo | None:
        """Delete ``annotator``'s most recent label (within ``project`` if given) and return
        it, or ``None`` when there is none: the page's undo for a slip of the finger.

        One transaction: the label goes, and a query that label retired reopens (its answer
        count fell below ``answers_wanted`` again), so the same annotator can answer it anew.
        A label on a withdrawn query stays (:class:`Conflict`): the loop went on without
        that query and may have read the answer already.
        """

        def work(session: Session) -> LabelInfo | None:
            stmt = select(LabelRow).where(LabelRow.annotator_id == annotator.id)
            if project is not None:
                stmt = stmt.join(QueryRow, QueryRow.id == LabelRow.query_id).join(
                    Project, Project.id == QueryRow.project_id).where(Project.name == project)
            # Ids grow with every insert, so the largest is the newest (created_at may tie).
            row = session.scalar(stmt.order_by(LabelRow.id.desc()).limit(1))
            if row is None:
                return None
            query = self._get_query(session, row.query_id, lock=True)
            if query.status == "withdrawn":
                raise Conflict(f"query {query.id} was withdrawn after {annotator.name} "
                               "answered it: its answers are kept and cannot be undone")
            info = _label_info(row, annotator.name)
            session.delete(row)
            session.flush()
            answers = session.scalar(select(func.count()).select_from(LabelRow).where(
                LabelRow.query_id == query.id))
            if query.status == "retired" and answers < query.answers_wanted:
                query.status, query.closed_at = "open", None
            return info

        return self._run(work)
