"""A scripted teacher that answers later, like people on a labelling page: the asynchronous
path of the loop, run unattended (tests, demos).

Each submitted query is answered after ``delay_collects`` calls of ``collect`` (the loop
calls it every ``loop.label_poll_s`` seconds while it waits); a fraction ``late_fraction`` of
them only after ``late_delay_collects`` calls, typically after the loop stopped waiting, so
they join the next round; a fraction ``unanswered_fraction`` never. Answers are the scripted
teacher's (all six B-Pref behaviours).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from robopref.data import Preference, as_pool
from robopref.errors import ConfigError
from robopref.preferences.base import Answer, PreferenceSource, Query
from robopref.preferences.teacher import ScriptedTeacher, TeacherConfig


@dataclass
class DelayedTeacherConfig(TeacherConfig):
    """B-Pref knobs plus when answers arrive.

    Attributes:
        delay_collects: ``collect`` calls before an answer arrives.
        late_fraction: fraction of queries answered only after ``late_delay_collects`` calls.
        late_delay_collects: the delay of those.
        unanswered_fraction: fraction of queries never answered.
    """

    delay_collects: int = 1
    late_fraction: float = 0.0
    late_delay_collects: int = 1000
    unanswered_fraction: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.delay_collects < 0 or self.late_delay_collects < 0:
            raise ConfigError("delayed teacher delays must be >= 0 collect calls")
        for name in ("late_fraction", "unanswered_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"delayed teacher {name} must lie in [0, 1]")


class DelayedTeacher(PreferenceSource):
    name = "delayed_teacher"
    asynchronous = True
    needs_true_rewards = True

    def __init__(self, config: DelayedTeacherConfig | None = None):
        self.config = config or DelayedTeacherConfig()
        self.teacher = ScriptedTeacher(self.config)
        self.rng = np.random.default_rng(self.config.seed + 7919)
        self.collects = 0
        self._waiting: dict[str, tuple[int, Answer]] = {}  # query id -> (due at collect, answer)
        self._seen: set[str] = set()

    def submit(self, queries: list[Query], episodes) -> None:
        pool = as_pool(episodes)
        cfg = self.config
        for query in queries:
            if query.id in self._seen:
                continue  # idempotent: a resumed run may submit again
            self._seen.add(query.id)
            draw = self.rng.random()
            if draw < cfg.unanswered_fraction:
                continue
            late = draw < cfg.unanswered_fraction + cfg.late_fraction
            delay = cfg.late_delay_collects if late else cfg.delay_collects
            preference = self.teacher.label([(query.first, query.second)], pool)[0]
            if preference is not None:
                preference = replace(preference, source=self.name, annotator="simulated")
            self._waiting[query.id] = (self.collects + delay, Answer(query.id, preference))

    def collect(self) -> list[Answer]:
        self.collects += 1
        due = sorted(q for q, (at, _) in self._waiting.items() if at <= self.collects)
        return [self._waiting.pop(q)[1] for q in due]

    def pending(self) -> int:
        return len(self._waiting)

    def state_dict(self) -> dict:
        waiting = [
            [qid, at, None if a.preference is None else a.preference.to_json()]
            for qid, (at, a) in sorted(self._waiting.items())
        ]
        return {
            "teacher": self.teacher.state_dict(),
            "rng": self.rng.bit_generator.state,
            "collects": self.collects,
            "seen": sorted(self._seen),
            "waiting": waiting,
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.teacher.load_state_dict(state["teacher"])
        self.rng.bit_generator.state = state["rng"]
        self.collects = int(state["collects"])
        self._seen = set(state["seen"])
        self._waiting = {
            qid: (int(at), Answer(qid, None if p is None else Preference.from_json(p)))
            for qid, at, p in state["waiting"]
        }
