"""The contract every source of preference labels follows (teachers, people, transfer).

A source is either synchronous (``label`` answers at once: the scripted teacher) or
asynchronous (``submit`` queries now, ``collect`` answers as they arrive: people on a labelling
page). The loop drives both (``robopref.loop.labels``): for an asynchronous source it submits
a round's queries, collects until every query is answered or a timeout passes, applies the
minimum-label rule, and lets answers that arrive late join the next round.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from robopref.data import Episode, Preference, Score, Segment


@dataclass(frozen=True)
class Query:
    """A pair of segments to judge, with an id unique within a run (e.g. ``"r3-q017"``)."""

    id: str
    first: Segment
    second: Segment

    def to_json(self) -> dict:
        return {"id": self.id, "first": self.first.to_json(), "second": self.second.to_json()}

    @classmethod
    def from_json(cls, payload: dict) -> Query:
        return cls(
            str(payload["id"]),
            Segment.from_json(payload["first"]),
            Segment.from_json(payload["second"]),
        )


@dataclass(frozen=True)
class ScoreQuery:
    """A segment (usually a whole episode, frames ``[0, T)``) to score 0-9, with an id unique
    within a run (e.g. ``"r3-s004"``)."""

    id: str
    segment: Segment

    def to_json(self) -> dict:
        return {"id": self.id, "segment": self.segment.to_json()}

    @classmethod
    def from_json(cls, payload: dict) -> ScoreQuery:
        return cls(str(payload["id"]), Segment.from_json(payload["segment"]))


@dataclass(frozen=True)
class Answer:
    """The answer to query ``query_id``: a preference (a pair query) or a score (a score
    query), or neither when the labeller skipped it (it counts as answered and trains
    nothing)."""

    query_id: str
    preference: Preference | None
    score: Score | None = None


# A source implements one of two method sets (label, or submit + collect), so no single method
# is abstract here; SynchronousSource makes label abstract for the synchronous kind.
class PreferenceSource(ABC):  # noqa: B024
    """Answers queries about pairs of segments.

    Synchronous sources implement ``label``: one entry per pair, ``None`` where the source
    declined to answer, so callers count queries asked and labels received separately.

    Asynchronous sources set ``asynchronous = True`` and implement ``submit`` (idempotent per
    query id: a resumed run may submit a query again) and ``collect`` (the answers that arrived
    since the last call, each query answered at most once).

    A source that also gives whole-episode 0-9 scores sets ``gives_scores = True``: a
    synchronous one implements ``score`` (one ``Score`` or ``None`` per segment), an
    asynchronous one takes ``ScoreQuery`` items in ``submit`` beside ``Query`` items and
    answers them with ``Answer.score``.

    ``state_dict`` / ``load_state_dict``: JSON-serialisable state (e.g. a random generator's)
    that a resumed run restores, so it answers as the uninterrupted run would have.
    """

    name: str = "source"
    asynchronous: ClassVar[bool] = False
    # Scripted teachers judge by ground-truth reward: the loop then asks only about episodes
    # that have one (not, e.g., teleoperated demos recorded without a reward).
    needs_true_rewards: ClassVar[bool] = False
    # Sources that show episodes to people need to know where the run keeps its datasets:
    # the CLI then passes ``dataset_paths`` (a callable: dataset id -> folder) and
    # ``run_name`` to the constructor. The loop itself never hands out paths.
    uses_run_folder: ClassVar[bool] = False
    gives_scores: ClassVar[bool] = False

    def label(
        self, pairs: list[tuple[Segment, Segment]], episodes: list[Episode]
    ) -> list[Preference | None]:
        raise NotImplementedError(f"{type(self).__name__} is asynchronous: use submit/collect")

    def score(self, segments: list[Segment], episodes) -> list[Score | None]:
        raise NotImplementedError(
            f"{type(self).__name__} gives no episode scores: set loop.scores_per_round=0, or "
            "use a source that scores (teacher=noisy|oracle|..., teacher=people)"
        )

    def submit(self, queries: list[Query | ScoreQuery], episodes) -> None:
        raise NotImplementedError(f"{type(self).__name__} is synchronous: use label")

    def collect(self) -> list[Answer]:
        raise NotImplementedError(f"{type(self).__name__} is synchronous: use label")

    def pending(self) -> int:
        """Queries submitted and not yet answered (0 for a synchronous source)."""
        return 0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027  (stateless by default)
        pass

    def close(self) -> None:  # noqa: B027  (nothing to release by default)
        pass


class SynchronousSource(PreferenceSource):
    """A source that answers at once."""

    @abstractmethod
    def label(
        self, pairs: list[tuple[Segment, Segment]], episodes
    ) -> list[Preference | None]: ...
