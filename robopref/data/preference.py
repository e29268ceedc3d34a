"""Segments of episodes and (soft) preferences between two segments.

A segment names its episode by stable id (``"<dataset_id>:<episode_index>"``) and a frame
range, so a preference saved today resolves tomorrow, in another process, against the same
dataset wherever its folder now lives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from robopref.data.atomic import write_json_atomic
from robopref.data.episode import Episode, as_pool
from robopref.errors import DatasetError

PREFERENCES_FORMAT_VERSION = 1
SCORES_FORMAT_VERSION = 1
SCORE_MAX = 9.0  # episode scores run 0..9, as on the labelling page

Episodes = Mapping[str, Episode] | Sequence[Episode]


class Label(StrEnum):
    """A discrete answer. Skipped queries carry no label at all."""

    FIRST = "first"
    SECOND = "second"
    EQUAL = "equal"

    @property
    def target(self) -> float:
        """Probability that the first segment is preferred, the Bradley–Terry target."""
        return {Label.FIRST: 1.0, Label.SECOND: 0.0, Label.EQUAL: 0.5}[self]


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, end)`` (frame index within the episode) of episode ``episode_id``."""

    episode_id: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"segment needs 0 <= start < end, got [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start

    def episode(self, episodes: Episodes) -> Episode:
        pool = as_pool(episodes)
        try:
            episode = pool[self.episode_id]
        except KeyError:
            raise DatasetError(
                f"segment names episode {self.episode_id}, which none of the loaded datasets "
                "holds: load the dataset it was cut from (a dataset edited by another tool "
                "gets a new id)"
            ) from None
        if self.end > len(episode):
            raise DatasetError(
                f"segment [{self.start}, {self.end}) runs past episode {self.episode_id} "
                f"({len(episode)} frames): the dataset changed since the segment was cut"
            )
        return episode

    def observations(self, episodes: Episodes) -> np.ndarray:
        """``(L, obs_dim)``"""
        return self.episode(episodes).observations[self.start : self.end]

    def actions(self, episodes: Episodes) -> np.ndarray:
        """``(L, act_dim)``"""
        return self.episode(episodes).actions[self.start : self.end]

    def rewards(self, episodes: Episodes) -> np.ndarray:
        """``(L,)`` ground-truth rewards."""
        return self.episode(episodes).rewards[self.start : self.end]

    def metrics(self, episodes: Episodes, names) -> np.ndarray:
        """``(L, len(names))`` per-step task metrics ``names`` (see ``Episode.metrics``)."""
        return self.episode(episodes).metric_columns(names)[self.start : self.end]

    def to_json(self) -> dict:
        return {"episode_id": self.episode_id, "start": self.start, "end": self.end}

    @classmethod
    def from_json(cls, payload: dict) -> Segment:
        return cls(str(payload["episode_id"]), int(payload["start"]), int(payload["end"]))


@dataclass(frozen=True)
class Preference:
    """A (possibly soft) judgement between two equal-length segments.

    Attributes:
        target: probability in [0, 1] that ``first`` is preferred; first/second/equal are
            1/0/0.5, a transferred label or several annotators' average anything between.
            A ``Label`` is accepted too and stored as its target.
        weight: how much the pair counts in the Bradley–Terry loss (>= 0); e.g. the number of
            annotators who agreed, or a transfer's confidence.
        source: who answered (``scripted_teacher``, ``people``, ``transfer``, ...).
        annotator: which of them.
    """

    first: Segment
    second: Segment
    target: float
    weight: float = 1.0
    source: str = "unknown"
    annotator: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.target, Label):
            object.__setattr__(self, "target", self.target.target)
        target = float(self.target)
        if not (math.isfinite(target) and 0.0 <= target <= 1.0):
            raise ValueError(
                f"preference target must be a probability in [0, 1], got {self.target}: "
                "clip or rescale soft labels before making preferences"
            )
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"preference weight must be finite and >= 0, got {self.weight}")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "weight", float(self.weight))
        if len(self.first) != len(self.second):
            raise ValueError(
                f"segments of a pair must have equal length, got {len(self.first)} "
                f"and {len(self.second)}"
            )

    @property
    def label(self) -> Label | None:
        """The discrete label this target equals, ``None`` for a soft target."""
        return {1.0: Label.FIRST, 0.0: Label.SECOND, 0.5: Label.EQUAL}.get(self.target)

    def to_json(self) -> dict:
        return {
            "first": self.first.to_json(),
            "second": self.second.to_json(),
            "target": self.target,
            "weight": self.weight,
            "source": self.source,
            "annotator": self.annotator,
        }

    @classmethod
    def from_json(cls, payload: dict) -> Preference:
        return cls(
            Segment.from_json(payload["first"]),
            Segment.from_json(payload["second"]),
            float(payload["target"]),
            float(payload.get("weight", 1.0)),
            str(payload.get("source", "unknown")),
            str(payload.get("annotator", "")),
        )


def segment_pair_arrays(
    pairs: list[tuple[Segment, Segment]], episodes: Episodes
) -> tuple[np.ndarray, np.ndarray]:
    """Gather a batch of pairs into ``obs (B, 2, L, obs_dim)`` and ``act (B, 2, L, act_dim)``."""
    pool = as_pool(episodes)
    obs = np.stack([np.stack([a.observations(pool), b.observations(pool)]) for a, b in pairs])
    act = np.stack([np.stack([a.actions(pool), b.actions(pool)]) for a, b in pairs])
    return obs, act


def segment_pair_metrics(
    pairs: list[tuple[Segment, Segment]], episodes: Episodes, names
) -> np.ndarray:
    """Per-step metrics ``names`` of a batch of pairs: ``(B, 2, L, len(names))``."""
    pool = as_pool(episodes)
    return np.stack([np.stack([a.metrics(pool, names), b.metrics(pool, names)]) for a, b in pairs])


@dataclass(frozen=True)
class Score:
    """A whole-episode (or segment) score on the 0-9 scale a person gives on the labelling
    page; ``score`` may be a mean over annotators (a float in [0, 9]).

    Attributes:
        segment: what was scored (usually a whole episode: frames ``[0, T)``).
        score: in [0, 9]; higher is better.
        weight: how much it counts in a reward's score loss (>= 0; e.g. answers averaged).
        source, annotator: who answered.
    """

    segment: Segment
    score: float
    weight: float = 1.0
    source: str = "unknown"
    annotator: str = ""

    def __post_init__(self) -> None:
        score = float(self.score)
        if not (math.isfinite(score) and 0.0 <= score <= SCORE_MAX):
            raise ValueError(f"a score must lie in [0, {SCORE_MAX:g}], got {self.score}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"score weight must be finite and >= 0, got {self.weight}")
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "weight", float(self.weight))

    def to_json(self) -> dict:
        return {
            "segment": self.segment.to_json(),
            "score": self.score,
            "weight": self.weight,
            "source": self.source,
            "annotator": self.annotator,
        }

    @classmethod
    def from_json(cls, payload: dict) -> Score:
        return cls(
            Segment.from_json(payload["segment"]),
            float(payload["score"]),
            float(payload.get("weight", 1.0)),
            str(payload.get("source", "unknown")),
            str(payload.get("annotator", "")),
        )


def save_scores(scores: Iterable[Score], path: str | Path) -> Path:
    """Write episode scores as a versioned JSON file, atomically."""
    payload = {"format_version": SCORES_FORMAT_VERSION, "scores": [s.to_json() for s in scores]}
    return write_json_atomic(path, payload, allow_nan=False)


def load_scores(path: str | Path) -> list[Score]:
    """Read a file written by :func:`save_scores`."""
    return _load_versioned(path, "score", "scores", SCORES_FORMAT_VERSION, Score.from_json)


def _load_versioned(path: str | Path, what: str, key: str, version: int, parse) -> list:
    """The entries under ``key`` of a versioned JSON file, each read by ``parse``; one
    ``DatasetError`` line for an unreadable file, another version or a malformed entry."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{what} file {path} is unreadable ({exc}): restore it") from exc
    found = payload.get("format_version") if isinstance(payload, dict) else None
    if found != version:
        raise DatasetError(
            f"{what} file {path} has format version {found}, this robopref reads "
            f"{version}: use the release that wrote it"
        )
    try:
        return [parse(entry) for entry in payload[key]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{what} file {path} holds a malformed entry ({exc})") from exc


def preference_targets(preferences: list[Preference]) -> np.ndarray:
    """``(B,)`` float32 probability that the first segment is preferred."""
    return np.array([p.target for p in preferences], dtype=np.float32)


def preference_weights(preferences: list[Preference]) -> np.ndarray:
    """``(B,)`` float32 weight of each preference in the loss."""
    return np.array([p.weight for p in preferences], dtype=np.float32)


def save_preferences(preferences: Iterable[Preference], path: str | Path) -> Path:
    """Write preferences as a versioned JSON file, atomically (temp file + rename)."""
    payload = {
        "format_version": PREFERENCES_FORMAT_VERSION,
        "preferences": [p.to_json() for p in preferences],
    }
    return write_json_atomic(path, payload, allow_nan=False)


def load_preferences(path: str | Path) -> list[Preference]:
    """Read a file written by :func:`save_preferences`."""
    return _load_versioned(path, "preference", "preferences", PREFERENCES_FORMAT_VERSION,
                           Preference.from_json)
