"""Gathering a round's labels from a synchronous or an asynchronous preference source."""

from __future__ import annotations

import time

from robopref.data import Preference, Score
from robopref.errors import RobopError
from robopref.loop.config import LoopConfig
from robopref.preferences import Answer, PreferenceSource, Query, ScoreQuery


class LabelTimeout(RobopError):
    """An asynchronous source gave fewer than ``loop.min_labels`` answers before the timeout
    and the run was configured to stop (``loop.on_label_timeout=stop``)."""


def gather(
    source: PreferenceSource,
    queries: list[Query],
    pool,
    config: LoopConfig,
    clock=time.monotonic,
    sleep=time.sleep,
) -> list[Answer]:
    """The answers received this round: all of them for a synchronous source; for an
    asynchronous one, what arrived (including late answers to earlier rounds' queries) until
    every query of this round was answered or ``label_timeout_s`` passed with at least
    ``min_labels`` answers. Below the minimum at the timeout it waits on, or raises
    ``LabelTimeout`` (``on_label_timeout``). ``queries`` may mix pair queries (``Query``) and
    episode-score queries (``ScoreQuery``, for a source that ``gives_scores``)."""
    if not source.asynchronous:
        return answer_now(source, queries, pool)
    source.submit(queries, pool)
    asked = {q.id for q in queries}
    answers: list[Answer] = []
    start = clock()
    warned = False
    while True:
        answers += source.collect()
        answered_now = sum(a.query_id in asked for a in answers)
        if answered_now == len(asked):
            return answers
        if clock() - start >= config.label_timeout_s:
            if len(answers) >= config.min_labels:
                return answers
            if config.on_label_timeout == "stop":
                raise LabelTimeout(
                    f"{len(answers)} of the {config.min_labels} answers needed arrived within "
                    f"{config.label_timeout_s:.0f} s: resume the run when labellers are back "
                    "(robopref demo --resume RUN_DIR), or lower loop.min_labels"
                )
            if not warned:
                print(
                    f"waiting for labels: {len(answers)} of {config.min_labels} needed after "
                    f"{config.label_timeout_s:.0f} s ({source.pending()} queries pending)",
                    flush=True,
                )
                warned = True
        sleep(config.label_poll_s)


def answer_now(source: PreferenceSource, queries: list, pool) -> list[Answer]:
    """A synchronous source's answers, in the order of ``queries``."""
    pairs = [q for q in queries if isinstance(q, Query)]
    scored = [q for q in queries if isinstance(q, ScoreQuery)]
    labels = source.label([(q.first, q.second) for q in pairs], pool) if pairs else []
    scores = source.score([q.segment for q in scored], pool) if scored else []
    answers = {q.id: Answer(q.id, p) for q, p in zip(pairs, labels, strict=True)}
    answers.update({q.id: Answer(q.id, None, s) for q, s in zip(scored, scores, strict=True)})
    return [answers[q.id] for q in queries]


def preferences_of(answers: list[Answer]) -> list[Preference]:
    return [a.preference for a in answers if a.preference is not None]


def scores_of(answers: list[Answer]) -> list[Score]:
    return [a.score for a in answers if a.score is not None]
