"""The contract every source of preference labels follows (teachers, people, transfer)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from robopref.data import Episode, Preference, Segment


class PreferenceSource(ABC):
    """Answers queries: for each pair of segments, a ``Preference`` or nothing (skipped).

    Returns one entry per query, ``None`` where the source declined to answer, so callers
    can count queries asked and labels received separately.
    """

    name: str = "source"

    @abstractmethod
    def label(
        self, pairs: list[tuple[Segment, Segment]], episodes: list[Episode]
    ) -> list[Preference | None]: ...
