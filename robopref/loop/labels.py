"""Gathering a round's labels from a synchronous or an asynchronous preference source."""

from __future__ import annotations

import time

from robopref.data import Preference
from robopref.errors import RobopError
from robopref.loop.config import LoopConfig
from robopref.preferences import Answer, PreferenceSource, Query


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
    ``LabelTimeout`` (``on_label_timeout``)."""
    if not source.asynchronous:
        labels = source.label([(q.first, q.second) for q in queries], pool)
        return [Answer(q.id, p) for q, p in zip(queries, labels, strict=True)]
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


def preferences_of(answers: list[Answer]) -> list[Preference]:
    return [a.preference for a in answers if a.preference is not None]
