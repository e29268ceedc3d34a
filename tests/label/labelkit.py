"""Helpers shared by the label tests (a plain module: ``from labelkit import ...``)."""

from __future__ import annotations

from pathlib import Path

from robopref.data import Segment
from robopref.label import LabelStore, open_database
from robopref.preferences.base import Query


def pair(key: str, i: int = 0, length: int = 10, dataset: str = "ds") -> Query:
    """Query ``key`` comparing frames [0, length) of episodes 2i and 2i+1 of ``dataset``."""
    return Query(key, Segment(f"{dataset}:{2 * i}", 0, length),
                 Segment(f"{dataset}:{2 * i + 1}", 0, length))


def pairs(n: int, prefix: str = "q") -> list[Query]:
    return [pair(f"{prefix}{i}", i) for i in range(n)]


def new_store(path: Path) -> LabelStore:
    return LabelStore(open_database(path))


def label_rows(store: LabelStore) -> list[tuple]:
    """Every stored label as ``(query key, annotator, choice, score)``, sorted."""
    from sqlalchemy import select

    from robopref.label.schema import Annotator, LabelRow, QueryRow

    stmt = (
        select(QueryRow.key, Annotator.name, LabelRow.choice, LabelRow.score)
        .join(QueryRow, QueryRow.id == LabelRow.query_id)
        .join(Annotator, Annotator.id == LabelRow.annotator_id)
    )
    with store.db.transaction() as session:
        return sorted(tuple(r) for r in session.execute(stmt))
