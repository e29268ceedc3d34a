"""The label database: SQLAlchemy 2 models of projects, segments, queries, annotators, labels.

The models are the single description of the schema; the Alembic revisions in
``robopref/label/migrations/versions`` must create exactly these tables (a test compares
them). Any change here needs a new revision and, when older code could misread the result,
a bump of :data:`FORMAT_VERSION` written into the ``meta`` table by that revision.

Enumerations (query kind and status, label choice) are strings guarded by CHECK
constraints rather than database enum types: a PostgreSQL ``ENUM`` needs its own
``ALTER TYPE`` migrations, a CHECK constraint reads the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The schema format this code reads and writes; stored in meta under FORMAT_VERSION_KEY.
FORMAT_VERSION = 1
FORMAT_VERSION_KEY = "format_version"

QUERY_KINDS = ("pair", "episode_score")
QUERY_STATUSES = ("open", "retired", "withdrawn")
CHOICES = ("first", "second", "equal", "cannot_tell")
MAX_REASON_CHARS = 2000
MAX_SCORE = 9

# Explicit constraint names, so migrations can address them and SQLite (which cannot alter
# constraints in place) and PostgreSQL end up with the same names.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now; SQLite drops the zone, so values read back are UTC wall time."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp that reads back timezone-aware UTC on every backend.

    PostgreSQL keeps the zone of ``TIMESTAMP WITH TIME ZONE``; SQLite stores text without
    one, so values would come back naive there and compare unequal to what was written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("label timestamps must be timezone-aware (use utcnow())")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    # Constant literals written by us, never user input: the one place SQL text is joined.
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Meta(Base):
    """Key/value facts about the database itself; ``format_version`` above all."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Project(Base):
    """A labelling campaign (e.g. one run or one dataset); queries belong to one."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SegmentRow(Base):
    """Frames ``[start, end)`` of the episode with stable id ``episode_id``
    (``"<dataset_id>:<episode_index>"``, as :class:`robopref.data.Segment`).

    ``dataset_path`` is only a hint where the dataset lived when the segment was stored
    (for the page's video); the id, not the path, names the episode.
    """

    __tablename__ = "segments"
    __table_args__ = (
        UniqueConstraint("episode_id", "start_frame", "end_frame", name="uq_segments_frames"),
        CheckConstraint("start_frame >= 0 AND start_frame < end_frame", name="frame_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[str] = mapped_column(String(300))
    start_frame: Mapped[int] = mapped_column(Integer)
    end_frame: Mapped[int] = mapped_column(Integer)
    dataset_path: Mapped[str | None] = mapped_column(Text, nullable=True)


class QueryRow(Base):
    """A question put to annotators: a pair of segments, or one episode to score 0-9.

    ``key`` is the caller's id (the loop's ``Query.id``), unique within a project so a
    resumed run that enqueues again finds its queries instead of duplicating them.
    """

    __tablename__ = "queries"
    __table_args__ = (
        UniqueConstraint("project_id", "key", name="uq_queries_project_key"),
        CheckConstraint(_in("kind", QUERY_KINDS), name="kind"),
        CheckConstraint(_in("status", QUERY_STATUSES), name="status"),
        CheckConstraint("answers_wanted >= 1", name="answers_wanted"),
        # A pair names two segments, a score request exactly one.
        CheckConstraint(
            "(kind = 'pair' AND second_segment_id IS NOT NULL) OR "
            "(kind = 'episode_score' AND second_segment_id IS NULL)",
            name="segments_for_kind",
        ),
        # "Oldest open query first" is the queue's one hot read.
        Index("ix_queries_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="pair")
    first_segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    second_segment_id: Mapped[int | None] = mapped_column(
        ForeignKey("segments.id"), nullable=True
    )
    answers_wanted: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Annotator(Base):
    """A person (or simulated annotator) with a bearer token.

    Only ``token_hash`` is stored: SHA-256 of a 256-bit random token. A salted slow hash
    (scrypt) protects guessable passwords; a random token has nothing to guess, and an
    unsalted digest lets authentication look the annotator up by index.
    """

    __tablename__ = "annotators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LabelRow(Base):
    """One annotator's answer to one query; at most one per (query, annotator).

    ``choice`` answers a pair (``cannot_tell`` counts as an answer and trains nothing);
    ``score`` (0-9) answers an episode-score request, or rates a pair's episode where asked.
    """

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("query_id", "annotator_id", name="uq_labels_query_annotator"),
        CheckConstraint(f"choice IS NULL OR {_in('choice', CHOICES)}", name="choice"),
        CheckConstraint(
            f"score IS NULL OR (score >= 0 AND score <= {MAX_SCORE})", name="score_range"
        ),
        CheckConstraint("choice IS NOT NULL OR score IS NOT NULL", name="has_answer"),
        CheckConstraint("time_taken_s >= 0", name="time_taken"),
        Index("ix_labels_annotator_id", "annotator_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    choice: Mapped[str | None] = mapped_column(String(16), nullable=True)
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    time_taken_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
