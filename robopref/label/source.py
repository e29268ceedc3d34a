"""People as a preference source: the loop's queries go into the label database, and the
answers come back as annotators give them on the labelling page.

``LabelingSource`` is asynchronous (``robopref.preferences.PreferenceSource``): ``submit``
enqueues a round's queries (idempotent per query id, with each dataset's folder as a hint so
the server finds the episodes for its videos): pairs, and whole-episode 0-9 score requests
(``ScoreQuery``); ``collect`` returns one :class:`Answer` per query that got its
``answers_wanted`` answers (or was withdrawn), each query once. A score request comes back as
the mean of its scores (``cannot_tell`` left out), weighted by their number. Several
answers become one preference: the majority's or the mean target (``aggregation``), weighted
by the number of answers that count (first, second, equal); a query answered only
``cannot_tell`` (fewer than ``min_answers`` counting answers) comes back with no preference.
Answers that arrive after the loop stopped waiting come back in a later round's ``collect``.

``state_dict`` keeps the submitted and the delivered query ids, so a resumed run submits
again without asking twice and never receives an answer twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import aliased

from robopref.data import Preference, Score, Segment
from robopref.errors import ConfigError
from robopref.label.database import open_database
from robopref.label.export import METHODS, PREFERENCE_CHOICES, SOURCE, aggregate_target
from robopref.label.schema import Annotator, LabelRow, QueryRow, SegmentRow
from robopref.label.store import DEFAULT_PROJECT, LabelStore
from robopref.preferences.base import Answer, PreferenceSource, Query, ScoreQuery

# Ids per SQL ``IN (...)``: well below SQLite's bound-parameter limit.
CHUNK = 500

DatasetPaths = Callable[[], Mapping[str, str]] | Mapping[str, str] | None


@dataclass
class LabelingSourceConfig:
    """Where people's answers come from and how they become preferences.

    Attributes:
        database: the label database, a path or a URL (``sqlite:///labels.db``,
            ``postgresql+psycopg://user@host/db``): the one ``robopref label serve --db`` uses.
        project: the database project the queries go into; ``None``: the run folder's name
            (so a resumed run finds its queries again; two runs never share query ids).
        answers_wanted: answers ``k`` each query collects before it retires and trains.
        aggregation: ``majority`` (the most common answer's target; ties averaged) or
            ``soft`` (the mean target of the answers).
        min_answers: counting answers (first, second, equal) a query needs to give a
            preference; with fewer (e.g. all ``cannot_tell``) it comes back answered, empty.
        withdraw_after_rounds: stop serving a query still open this many rounds after it was
            submitted (``0``: never); what it got by then is delivered.
        seed: accepted like every source's (people are not seeded).
        reward_scale: accepted like every source's (the CLI passes the task's); unused.
    """

    database: str = "labels.db"
    project: str | None = None
    answers_wanted: int = 1
    aggregation: str = "majority"
    min_answers: int = 1
    withdraw_after_rounds: int = 0
    seed: int = 0
    reward_scale: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.database, str) or not self.database.strip():
            raise ConfigError("teacher.database is empty: give the label database path or URL, "
                              "e.g. teacher.database=sqlite:///labels.db")
        if self.project is not None and not 1 <= len(str(self.project)) <= 200:
            raise ConfigError("teacher.project must be 1-200 characters, or null for the run "
                              "folder's name")
        if self.answers_wanted < 1:
            raise ConfigError(f"teacher.answers_wanted must be >= 1, got {self.answers_wanted}")
        if self.aggregation not in METHODS:
            raise ConfigError(f"teacher.aggregation must be one of {', '.join(METHODS)}, got "
                              f"'{self.aggregation}'")
        if not 1 <= self.min_answers <= self.answers_wanted:
            raise ConfigError(
                f"teacher.min_answers must lie in [1, answers_wanted={self.answers_wanted}], "
                f"got {self.min_answers}"
            )
        if self.withdraw_after_rounds < 0:
            raise ConfigError("teacher.withdraw_after_rounds must be >= 0 (0: never withdraw)")


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LabelingSource(PreferenceSource):
    """Queries answered by people through the label database (see the module docstring).

    ``dataset_paths``: dataset id -> folder, or a callable returning that mapping at each
    ``submit`` (the CLI passes the run store's, whose datasets grow round by round); stored
    with each segment as a hint for the server. ``run_name`` names the project when the
    config leaves it ``None``.
    """

    name = SOURCE  # "people": what export_preferences writes too
    asynchronous = True
    uses_run_folder = True
    gives_scores = True

    def __init__(self, config: LabelingSourceConfig | None = None,
                 dataset_paths: DatasetPaths = None, run_name: str | None = None):
        self.config = config or LabelingSourceConfig()
        self.project = self.config.project or run_name or DEFAULT_PROJECT
        self._dataset_paths = dataset_paths
        self.db = open_database(self.config.database)  # a bad URL fails now, not mid-run
        self.store = LabelStore(self.db)
        self.rounds = 0  # submit calls so far: the clock of withdraw_after_rounds
        self._open: dict[str, tuple[int, int]] = {}  # query id -> (database id, round)
        self._done: set[str] = set()  # delivered (or given up): never delivered again

    # -- PreferenceSource -------------------------------------------------------------------
    def submit(self, queries: list[Query | ScoreQuery], episodes) -> None:
        self.rounds += 1
        new, seen = [], set()
        for query in queries:
            if query.id in self._open or query.id in self._done or query.id in seen:
                continue  # idempotent: a resumed run submits its round again
            seen.add(query.id)
            new.append(query)
        pairs = [q for q in new if isinstance(q, Query)]
        scored = [q for q in new if isinstance(q, ScoreQuery)]
        wanted, paths = self.config.answers_wanted, self._paths()
        ids = self.store.enqueue_pairs(pairs, self.project, wanted, paths) if pairs else []
        if scored:
            ids += self.store.enqueue_episode_scores(
                [(q.id, q.segment) for q in scored], self.project, wanted, paths
            )
        for query, db_id in zip(pairs + scored, ids, strict=True):
            self._open[query.id] = (db_id, self.rounds)
        self._withdraw_stale()

    def collect(self) -> list[Answer]:
        """Answers of the submitted queries that retired (or were withdrawn) since the last
        call, oldest query first."""
        if not self._open:
            return []
        by_db_id = {db_id: key for key, (db_id, _) in self._open.items()}
        closed = self._closed(sorted(by_db_id))
        answers = []
        for db_id, (first, second, choices) in sorted(closed.items()):
            key = by_db_id[db_id]
            if second is None:  # an episode-score request: the mean of its scores
                answers.append(Answer(key, None, self._score(first, choices)))
                del self._open[key]
                self._done.add(key)
                continue
            counting = [(name, c) for name, c in choices if c in PREFERENCE_CHOICES]
            preference = None
            if counting and len(counting) >= self.config.min_answers:
                target = aggregate_target([c for _, c in counting], self.config.aggregation)
                names = ",".join(sorted(name for name, _ in counting))
                preference = Preference(first, second, target, float(len(counting)),
                                        self.name, names)
            answers.append(Answer(key, preference))
            del self._open[key]
            self._done.add(key)
        return answers

    def pending(self) -> int:
        return len(self._open)

    def state_dict(self) -> dict:
        return {
            "project": self.project,
            "rounds": self.rounds,
            "open": [[key, db_id, at] for key, (db_id, at) in sorted(self._open.items())],
            "done": sorted(self._done),
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if state["project"] != self.project:
            raise ConfigError(
                f"the run's queries are in label project '{state['project']}', this source "
                f"uses '{self.project}': resume with teacher.project={state['project']}"
            )
        self.rounds = int(state["rounds"])
        self._open = {str(key): (int(db_id), int(at)) for key, db_id, at in state["open"]}
        self._done = set(state["done"])

    def close(self) -> None:
        self.db.close()

    # -- helpers ----------------------------------------------------------------------------
    def _score(self, segment: Segment, answers: list) -> Score | None:
        """The mean of the 0-9 scores among ``answers`` ``[(annotator, score)]``, weighted by
        their number; ``None`` below ``min_answers`` (all ``cannot_tell``)."""
        scored = [(name, value) for name, value in answers if value is not None]
        if not scored or len(scored) < self.config.min_answers:
            return None
        mean = sum(value for _, value in scored) / len(scored)
        names = ",".join(sorted(name for name, _ in scored))
        return Score(segment, float(mean), float(len(scored)), self.name, names)

    def _paths(self) -> dict[str, str]:
        paths = self._dataset_paths
        if callable(paths):
            paths = paths()
        return {str(k): str(v) for k, v in (paths or {}).items()}

    def _withdraw_stale(self) -> None:
        """Stop serving queries that waited ``withdraw_after_rounds`` rounds; their answers so
        far are delivered by the next ``collect``."""
        after = self.config.withdraw_after_rounds
        if not after:
            return
        for _, (db_id, at) in sorted(self._open.items()):
            if self.rounds - at >= after:
                self.store.withdraw(db_id)

    def _closed(self, db_ids: list[int]) -> dict[int, tuple[Segment, Segment | None, list]]:
        """``{database id: (first, second, answers)}`` of those queries among ``db_ids`` that
        are no longer open (retired or withdrawn), answers oldest first: ``[(annotator,
        choice)]`` for a pair, ``[(annotator, score or None)]`` for a score request (whose
        ``second`` is ``None``)."""
        first, second = aliased(SegmentRow), aliased(SegmentRow)
        closed: dict[int, tuple[Segment, Segment | None, list]] = {}
        with self.db.transaction() as session:
            for chunk in _chunks(db_ids):
                rows = session.execute(
                    select(QueryRow.id, first, second)
                    .join(first, first.id == QueryRow.first_segment_id)
                    .outerjoin(second, second.id == QueryRow.second_segment_id)
                    .where(QueryRow.id.in_(chunk), QueryRow.status != "open")
                )
                for db_id, a, b in rows:
                    closed[db_id] = (
                        Segment(a.episode_id, a.start_frame, a.end_frame),
                        None if b is None else Segment(b.episode_id, b.start_frame, b.end_frame),
                        [],
                    )
            for chunk in _chunks(sorted(closed)):
                labels = session.execute(
                    select(LabelRow.query_id, Annotator.name, LabelRow.choice, LabelRow.score)
                    .join(Annotator, Annotator.id == LabelRow.annotator_id)
                    .where(LabelRow.query_id.in_(chunk))
                    .order_by(LabelRow.id)
                )
                for db_id, name, choice, score in labels:
                    is_pair = closed[db_id][1] is not None
                    closed[db_id][2].append((name, choice if is_pair else score))
        return closed
