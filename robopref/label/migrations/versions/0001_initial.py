"""Initial label schema (format version 1): projects, segments, queries, annotators, labels.

A revision is a frozen snapshot: it spells out its tables here instead of importing
``robopref.label.schema``, whose models move on with later revisions.

Revision ID: 0001_initial
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

FORMAT_VERSION = "1"


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )
    op.bulk_insert(meta, [{"key": "format_version", "value": FORMAT_VERSION}])

    op.create_table(
        "annotators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotators")),
        sa.UniqueConstraint("name", name=op.f("uq_annotators_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_annotators_token_hash")),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("episode_id", sa.String(length=300), nullable=False),
        sa.Column("start_frame", sa.Integer(), nullable=False),
        sa.Column("end_frame", sa.Integer(), nullable=False),
        sa.Column("dataset_path", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "start_frame >= 0 AND start_frame < end_frame", name=op.f("ck_segments_frame_range")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint(
            "episode_id", "start_frame", "end_frame", name=op.f("uq_segments_frames")
        ),
    )
    op.create_table(
        "queries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("first_segment_id", sa.Integer(), nullable=False),
        sa.Column("second_segment_id", sa.Integer(), nullable=True),
        sa.Column("answers_wanted", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _created_at(),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(kind = 'pair' AND second_segment_id IS NOT NULL) OR "
            "(kind = 'episode_score' AND second_segment_id IS NULL)",
            name=op.f("ck_queries_segments_for_kind"),
        ),
        sa.CheckConstraint("kind IN ('pair', 'episode_score')", name=op.f("ck_queries_kind")),
        sa.CheckConstraint(
            "status IN ('open', 'retired', 'withdrawn')", name=op.f("ck_queries_status")
        ),
        sa.CheckConstraint("answers_wanted >= 1", name=op.f("ck_queries_answers_wanted")),
        sa.ForeignKeyConstraint(
            ["first_segment_id"], ["segments.id"], name=op.f("fk_queries_first_segment_id_segments")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_queries_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["second_segment_id"],
            ["segments.id"],
            name=op.f("fk_queries_second_segment_id_segments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queries")),
        sa.UniqueConstraint("project_id", "key", name=op.f("uq_queries_project_key")),
    )
    op.create_index("ix_queries_status_id", "queries", ["status", "id"])
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("choice", sa.String(length=16), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("time_taken_s", sa.Float(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "choice IS NULL OR choice IN ('first', 'second', 'equal', 'cannot_tell')",
            name=op.f("ck_labels_choice"),
        ),
        sa.CheckConstraint(
            "choice IS NOT NULL OR score IS NOT NULL", name=op.f("ck_labels_has_answer")
        ),
        sa.CheckConstraint(
            "score IS NULL OR (score >= 0 AND score <= 9)", name=op.f("ck_labels_score_range")
        ),
        sa.CheckConstraint("time_taken_s >= 0", name=op.f("ck_labels_time_taken")),
        sa.ForeignKeyConstraint(
            ["annotator_id"], ["annotators.id"], name=op.f("fk_labels_annotator_id_annotators")
        ),
        sa.ForeignKeyConstraint(
            ["query_id"], ["queries.id"], name=op.f("fk_labels_query_id_queries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("query_id", "annotator_id", name=op.f("uq_labels_query_annotator")),
    )
    op.create_index("ix_labels_annotator_id", "labels", ["annotator_id"])


def downgrade() -> None:
    op.drop_index("ix_labels_annotator_id", table_name=op.f("labels"))
    op.drop_table("labels")
    op.drop_index("ix_queries_status_id", table_name=op.f("queries"))
    op.drop_table("queries")
    op.drop_table("segments")
    op.drop_table("projects")
    op.drop_table("annotators")
    op.drop_table("meta")
