"""Read the label database back: progress, preferences for reward training, episode scores,
and how often each annotator agrees with the others.

Several annotators' answers to one pair become one :class:`robopref.data.Preference` whose
weight is the number of answers that count (first, second, equal; ``cannot_tell`` counts as
an answer for retiring the query but carries no preference). ``method="soft"`` averages the
targets (two "first" and one "second" give 2/3); ``method="majority"`` takes the most common
answer's target, and the mean of the tied answers' targets on a tie.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from statistics import fmean

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from robopref.data import Label, Preference, Segment
from robopref.label.database import Database
from robopref.label.errors import InvalidLabel
from robopref.label.schema import Annotator, LabelRow, Project, QueryRow, SegmentRow
from robopref.label.store import AnnotatorInfo

METHODS = ("majority", "soft")
PREFERENCE_CHOICES = tuple(label.value for label in Label)  # first, second, equal
SOURCE = "people"


@dataclass(frozen=True)
class Progress:
    queries: dict[str, int]  # status -> count
    labels: int
    cannot_tell: int
    by_annotator: dict[str, int]
    remaining_for_caller: int | None = None  # open queries the caller has not answered

    def to_json(self) -> dict:
        return {
            "queries": self.queries,
            "labels": self.labels,
            "cannot_tell": self.cannot_tell,
            "by_annotator": self.by_annotator,
            "remaining_for_caller": self.remaining_for_caller,
        }


@dataclass(frozen=True)
class EpisodeScore:
    """The mean 0-9 score people gave one segment (an episode, usually), over ``weight``
    answers."""

    key: str
    segment: Segment
    score: float
    weight: int
    annotators: tuple[str, ...]


@dataclass
class Agreement:
    """How often an annotator's answer matched the majority of a pair's answers."""

    compared: int = 0
    agreed: int = 0
    queries: list[int] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


def _project_filter(stmt, project: str | None):
    if project is None:
        return stmt
    return stmt.join(Project, Project.id == QueryRow.project_id).where(Project.name == project)


def progress(db: Database, project: str | None = None,
             caller: AnnotatorInfo | None = None) -> Progress:
    """Counts of queries by status and of labels, overall and per annotator."""
    with db.transaction() as session:
        by_status = dict.fromkeys(("open", "retired", "withdrawn"), 0)
        stmt = _project_filter(
            select(QueryRow.status, func.count()).select_from(QueryRow), project
        ).group_by(QueryRow.status)
        for status, count in session.execute(stmt):
            by_status[status] = count
        stmt = _project_filter(
            select(Annotator.name, LabelRow.choice, func.count())
            .select_from(LabelRow)
            .join(Annotator, Annotator.id == LabelRow.annotator_id)
            .join(QueryRow, QueryRow.id == LabelRow.query_id),
            project,
        ).group_by(Annotator.name, LabelRow.choice)
        by_annotator: Counter[str] = Counter()
        cannot_tell = 0
        for name, choice, count in session.execute(stmt):
            by_annotator[name] += count
            cannot_tell += count if choice == "cannot_tell" else 0
        remaining = None
        if caller is not None:
            answered = select(LabelRow.query_id).where(LabelRow.annotator_id == caller.id)
            stmt = _project_filter(
                select(func.count()).select_from(QueryRow).where(
                    QueryRow.status == "open", QueryRow.id.not_in(answered)
                ),
                project,
            )
            remaining = session.scalar(stmt)
    return Progress(by_status, sum(by_annotator.values()), cannot_tell,
                    dict(sorted(by_annotator.items())), remaining)


def _answers(db: Database, project: str | None, kind: str):
    """Rows ``(query id, key, first, second, annotator, choice, score)`` of answered queries
    of ``kind``, oldest query first."""
    first, second = aliased(SegmentRow), aliased(SegmentRow)
    stmt = (
        select(QueryRow.id, QueryRow.key, first, second, Annotator.name, LabelRow.choice,
               LabelRow.score)
        .select_from(LabelRow)
        .join(QueryRow, QueryRow.id == LabelRow.query_id)
        .join(Annotator, Annotator.id == LabelRow.annotator_id)
        .join(first, first.id == QueryRow.first_segment_id)
        .outerjoin(second, second.id == QueryRow.second_segment_id)
        .where(QueryRow.kind == kind)
    )
    stmt = _project_filter(stmt, project).order_by(QueryRow.id, LabelRow.id)
    with db.transaction() as session:
        return list(session.execute(stmt))


def _segment(row: SegmentRow) -> Segment:
    return Segment(row.episode_id, row.start_frame, row.end_frame)


def aggregate_target(choices: list[str], method: str = "majority") -> float:
    """One target probability from several answers (each first, second or equal)."""
    if method not in METHODS:
        raise InvalidLabel(f"aggregation '{method}' is unknown: use one of {', '.join(METHODS)}")
    targets = [Label(c).target for c in choices]
    if method == "soft":
        return fmean(targets)
    counts = Counter(choices)
    top = max(counts.values())
    return fmean(Label(c).target for c, n in counts.items() if n == top)


def _pair_choices(db: Database, project: str | None):
    """``{query id: (first, second, [(annotator, choice)])}``, preference answers only."""
    grouped: dict[int, tuple[Segment, Segment, list[tuple[str, str]]]] = {}
    for qid, _key, first, second, name, choice, _score in _answers(db, project, "pair"):
        if choice not in PREFERENCE_CHOICES:
            continue  # cannot_tell: answered, trains nothing
        entry = grouped.setdefault(qid, (_segment(first), _segment(second), []))
        entry[2].append((name, choice))
    return grouped


def export_preferences(db: Database, project: str | None = None, method: str = "majority",
                       min_answers: int = 1) -> list[Preference]:
    """One preference per pair with at least ``min_answers`` preference answers, weighted by
    their number; ``annotator`` lists who answered (comma-separated, sorted)."""
    preferences = []
    for first, second, answers in _pair_choices(db, project).values():
        if len(answers) < min_answers:
            continue
        target = aggregate_target([c for _, c in answers], method)
        names = ",".join(sorted(name for name, _ in answers))
        preferences.append(Preference(first, second, target, float(len(answers)), SOURCE, names))
    return preferences


def export_episode_scores(db: Database, project: str | None = None) -> list[EpisodeScore]:
    """The mean score of each scored segment (cannot_tell answers left out)."""
    grouped: dict[int, tuple[str, Segment, list[tuple[str, int]]]] = {}
    for qid, key, first, _second, name, _choice, score in _answers(db, project, "episode_score"):
        if score is None:
            continue
        grouped.setdefault(qid, (key, _segment(first), []))[2].append((name, score))
    return [
        EpisodeScore(key, segment, fmean(s for _, s in scores), len(scores),
                     tuple(sorted(n for n, _ in scores)))
        for key, segment, scores in grouped.values()
    ]


def agreement(db: Database, project: str | None = None) -> dict[str, Agreement]:
    """Per annotator: of the pairs with two or more answers and a strict majority answer,
    how many they answered with that majority (ties compare nobody)."""
    stats: dict[str, Agreement] = defaultdict(Agreement)
    for qid, (_first, _second, answers) in _pair_choices(db, project).items():
        if len(answers) < 2:
            continue
        ranked = Counter(c for _, c in answers).most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            continue
        majority = ranked[0][0]
        for name, choice in answers:
            entry = stats[name]
            entry.compared += 1
            entry.agreed += choice == majority
            entry.queries.append(qid)
    return dict(sorted(stats.items()))
