"""Simulated annotators: HTTP clients that answer the label queue like people would.

Each one fetches ``GET /api/next`` until the server answers 204 (nothing left for it),
decides with a :class:`~robopref.preferences.teacher.ScriptedTeacher` (the six B-Pref
behaviours: oracle, stochastic, myopic, skip, equal, mistake) and posts the answer. A pair
is answered exactly as ``ScriptedTeacher.label([(first, second)], pool)`` would label it;
a skip becomes ``cannot_tell``, the server's counterpart of B-Pref's unanswered query.

Episode-score queries (0-9) are scored from the segment's true return with the same knobs
(see :func:`robopref.preferences.teacher.episode_score`, shared with the synchronous
``ScriptedTeacher.score`` the loop uses in simulation), so the score grows with the return
and carries the teacher's noise.

Transport errors and 5xx answers are retried with exponential backoff (a server restarting
after a crash is waited for); a 409 on a query that retired meanwhile (another annotator
took its last slot) is normal and the annotator goes on to the next one. A retried POST is
safe: the server answers a repeated identical answer with 200 and the stored row.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np

from robopref.data import Episode, Segment
from robopref.errors import ConfigError
from robopref.label.errors import LabelError, Unauthorized
from robopref.preferences.teacher import (
    SCORE_LEVELS,
    TEACHER_PRESETS,
    ScriptedTeacher,
    TeacherConfig,
    episode_score,
)

CANNOT_TELL = "cannot_tell"
# episode_score and SCORE_LEVELS live with the teacher (one rule for the loop and for HTTP).
__all__ = ["CANNOT_TELL", "SCORE_LEVELS", "AnnotatorError", "AnsweredQuery", "SimulatedAnnotator",
           "SimulatedAnnotatorConfig", "episode_score", "run_annotators"]

# Episodes by stable id, or a resolver (e.g. DatasetResolver) called with a segment and
# the dataset path hint the server stored for it.
Episodes = Mapping[str, Episode] | Callable[[Segment, str | None], Episode]


class AnnotatorError(LabelError):
    """A simulated annotator cannot go on: the server is unreachable or refused a request."""


@dataclass
class SimulatedAnnotatorConfig:
    """How one simulated annotator behaves.

    Attributes:
        name: the annotator's name in reports (the server knows it by its token).
        teacher: a :data:`TEACHER_PRESETS` name (``oracle``, ``stochastic``, ``myopic``,
            ``skip``, ``equal``, ``mistake``; seeded with ``seed``) or a full
            :class:`TeacherConfig` (its own seed is kept).
        think_time_s: mean pause before each answer (seconds; drawn uniformly from
            0.5-1.5 times this), reported as the label's ``time_taken_s``.
        score_range: ``(low, high)`` true return, in units of the teacher's
            ``reward_scale``, that maps linearly onto scores 0..9 (``None``: the teacher's
            ``score_range``, by default (0, 1) per step, i.e. no reward up to one
            ``reward_scale`` per step).
        score_basis: ``"step"`` (mean per-step reward, fits episodes of any length) or
            ``"episode"`` (the whole return, e.g. Peel-v0's removed fraction less penalties:
            ``score_range=(0, 200)`` with its reward_scale 0.005); ``None``: the teacher's.
        reward_scale: overrides the teacher's ``reward_scale`` (the task's per-step reward
            unit; Meta-World's is 10) when given.
        project: answer only this project's queries (``None``: any).
        max_queries: stop after this many answers (``None``: when the queue is empty).
        seed: seeds a preset teacher and the think-time jitter.
        retries: attempts after the first for a request that failed in transport or 5xx.
        backoff_s: first wait between attempts (seconds), doubled each time.
        max_backoff_s: cap of the wait between attempts (seconds).
        timeout_s: per-request timeout (seconds).
    """

    name: str
    teacher: TeacherConfig | str = "oracle"
    think_time_s: float = 0.0
    score_range: tuple[float, float] | None = None
    score_basis: str | None = None
    reward_scale: float | None = None
    project: str | None = None
    max_queries: int | None = None
    seed: int = 0
    retries: int = 8
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise ConfigError("simulated annotator needs a name: give name='sim0'")
        if isinstance(self.teacher, str) and self.teacher not in TEACHER_PRESETS:
            raise ConfigError(f"teacher preset '{self.teacher}' is unknown: use one of "
                              f"{', '.join(TEACHER_PRESETS)} or a TeacherConfig")
        if not isinstance(self.teacher, (str, TeacherConfig)):
            raise ConfigError("teacher must be a preset name or a TeacherConfig: "
                              f"got {type(self.teacher).__name__}")
        if not (math.isfinite(self.think_time_s) and self.think_time_s >= 0):
            raise ConfigError(f"think_time_s is {self.think_time_s}: give seconds >= 0")
        if self.score_range is not None:
            low, high = (float(v) for v in self.score_range)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ConfigError(f"score_range {self.score_range} is invalid: give "
                                  "(low, high) with low < high, per-step reward units")
            self.score_range = (low, high)
        if self.score_basis not in (None, "step", "episode"):
            raise ConfigError(f"score_basis is {self.score_basis!r}: give 'step' or 'episode'")
        if self.reward_scale is not None and not self.reward_scale > 0:
            raise ConfigError(f"reward_scale is {self.reward_scale}: give a value > 0")
        if self.max_queries is not None and self.max_queries < 0:
            raise ConfigError(f"max_queries is {self.max_queries}: give >= 0 or None")
        if self.retries < 0 or not self.backoff_s >= 0 or not self.max_backoff_s >= 0:
            raise ConfigError("retries, backoff_s and max_backoff_s must be >= 0")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s is {self.timeout_s}: give seconds > 0")

    def teacher_config(self) -> TeacherConfig:
        """The teacher this annotator answers with (preset seeded with ``seed``)."""
        if isinstance(self.teacher, str):
            config = dataclasses.replace(TEACHER_PRESETS[self.teacher], seed=self.seed)
        else:
            config = self.teacher
        if self.reward_scale is not None:
            config = dataclasses.replace(config, reward_scale=self.reward_scale)
        return config


@dataclass(frozen=True)
class AnsweredQuery:
    """One answer the server acknowledged: ``status`` 201 (stored now) or 200 (stored
    before, e.g. a retry after a lost response)."""

    query_id: int
    key: str
    kind: str
    choice: str | None
    score: int | None
    status: int


def _detail(response: httpx.Response) -> str:
    """The server's one-line error, or the start of whatever body came back."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else response.text
    return " ".join(str(text).split())[:240] or f"HTTP {response.status_code}"


class SimulatedAnnotator:
    """One annotator answering the queue at ``base_url`` with bearer ``token``.

    ``episodes`` gives the true rewards: a mapping of episodes by stable id, or a resolver
    ``(segment, dataset_path_hint) -> Episode`` such as
    :class:`robopref.label.datasets.DatasetResolver`. ``client``: an ``httpx.Client`` to
    send through (e.g. FastAPI's ``TestClient``); by default one is opened per :meth:`run`.
    ``on_answer`` is called with each acknowledged answer (progress bars).
    """

    def __init__(self, base_url: str, token: str, episodes: Episodes,
                 config: SimulatedAnnotatorConfig, client: httpx.Client | None = None,
                 on_answer: Callable[[AnsweredQuery], None] | None = None):
        self.base_url = base_url.rstrip("/")
        self.config = config
        self.episodes = episodes
        self.client = client
        self.on_answer = on_answer
        self.teacher = ScriptedTeacher(config.teacher_config())
        # Think time has its own stream, so pausing never shifts the teacher's answers.
        self._pause_rng = np.random.default_rng([config.seed, 1])
        self._headers = {"Authorization": f"Bearer {token}"}

    # -- deciding ------------------------------------------------------------------------
    def _pool(self, sides: list[tuple[Segment, str | None]]) -> Mapping[str, Episode]:
        if isinstance(self.episodes, Mapping):
            return self.episodes
        return {segment.episode_id: self.episodes(segment, hint) for segment, hint in sides}

    def decide(self, query: dict) -> tuple[str | None, int | None]:
        """``(choice, score)`` for a query as ``GET /api/next`` serves it."""
        first = Segment.from_json(query["first"])
        sides = [(first, query["first"].get("dataset_path"))]
        if query["kind"] == "pair":
            second = Segment.from_json(query["second"])
            sides.append((second, query["second"].get("dataset_path")))
            [preference] = self.teacher.label([(first, second)], self._pool(sides))
            return (CANNOT_TELL if preference is None else preference.label.value), None
        if query["kind"] == "episode_score":
            rewards = self.teacher.judged_rewards(first, self._pool(sides))
            score = episode_score(self.teacher, rewards, self.config.score_range,
                                  self.config.score_basis)
            return (CANNOT_TELL, None) if score is None else (None, score)
        raise AnnotatorError(f"query {query.get('id')} is of kind '{query['kind']}', which "
                             "this annotator cannot answer: upgrade robopref")

    # -- talking -------------------------------------------------------------------------
    def _request(self, client: httpx.Client, method: str, path: str,
                 **kwargs) -> httpx.Response:
        """Send, retrying transport errors and 5xx with exponential backoff; a 401 is one
        clear error; other answers are returned to the caller."""
        cfg, delay, problem = self.config, self.config.backoff_s, ""
        for attempt in range(cfg.retries + 1):
            try:
                # The timeout is the client's (set where it is opened): TestClient warns
                # about a per-request one.
                response = client.request(method, self.base_url + path, headers=self._headers,
                                          **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            else:
                if response.status_code == 401:
                    raise Unauthorized(
                        f"annotator {cfg.name}: {self.base_url} refused the token "
                        f"({_detail(response)}): check --token, or have an admin create one "
                        "with 'robopref label annotator add NAME'")
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}: {_detail(response)}"
            if attempt < cfg.retries:
                time.sleep(delay)
                delay = min(2 * delay, cfg.max_backoff_s)
        attempts = cfg.retries + 1
        raise AnnotatorError(
            f"annotator {cfg.name}: {method} {path} failed {attempts} "
            f"time{'s' if attempts > 1 else ''} ({problem}): check that the label server runs "
            f"at {self.base_url}")

    def run(self) -> list[AnsweredQuery]:
        """Answer queries until the server has none left for this annotator (204) or
        ``max_queries`` answers were acknowledged; returns those answers in order."""
        cfg = self.config
        client = self.client or httpx.Client(timeout=cfg.timeout_s)
        params = {} if cfg.project is None else {"project": cfg.project}
        answered: list[AnsweredQuery] = []
        refused: set[int] = set()
        try:
            while cfg.max_queries is None or len(answered) < cfg.max_queries:
                response = self._request(client, "GET", "/api/next", params=params)
                if response.status_code == 204:
                    break
                if response.status_code != 200:
                    raise AnnotatorError(f"annotator {cfg.name}: GET /api/next answered "
                                         f"{response.status_code} ({_detail(response)}): check "
                                         "that --url points at a robopref label server")
                query = response.json()
                if query["id"] in refused:
                    # Served again after a 409: the server contradicts itself; stop, or we
                    # would ask forever.
                    raise AnnotatorError(f"annotator {cfg.name}: query {query['id']} was "
                                         "refused (409) and then served again: report a bug")
                answer = self._answer(client, query)
                if answer is None:
                    refused.add(query["id"])
                    continue
                answered.append(answer)
                if self.on_answer is not None:
                    self.on_answer(answer)
        finally:
            if self.client is None:
                client.close()
        return answered

    def _answer(self, client: httpx.Client, query: dict) -> AnsweredQuery | None:
        """Decide and post one answer; ``None`` when the query retired meanwhile (409)."""
        started = time.monotonic()
        choice, score = self.decide(query)
        if self.config.think_time_s > 0:
            time.sleep(self.config.think_time_s * self._pause_rng.uniform(0.5, 1.5))
        body = {"choice": choice, "score": score,
                "time_taken_s": round(time.monotonic() - started, 6)}
        # The body is fixed before the first attempt: a retry repeats it exactly, which the
        # server answers with 200 if the first attempt was stored after all.
        response = self._request(client, "POST", f"/api/queries/{query['id']}/label",
                                 json=body)
        if response.status_code == 409:
            return None
        if response.status_code not in (200, 201):
            raise AnnotatorError(f"annotator {self.config.name}: the answer to query "
                                 f"{query['id']} was refused ({response.status_code}: "
                                 f"{_detail(response)}): the server and this robopref "
                                 "disagree on the API; use one release for both")
        return AnsweredQuery(int(query["id"]), str(query["key"]), str(query["kind"]), choice,
                             score, response.status_code)


def run_annotators(base_url: str, annotators: list[tuple[str, SimulatedAnnotatorConfig]],
                   episodes: Episodes, max_workers: int | None = None,
                   on_answer: Callable[[str, AnsweredQuery], None] | None = None,
                   ) -> dict[str, list[AnsweredQuery]]:
    """Run several annotators ``[(token, config)]`` concurrently, one thread and one HTTP
    connection each (``max_workers``: at most that many at once; default all).

    Returns each annotator's acknowledged answers by name. If any annotator fails, the
    others still finish, then the first failure is raised. ``on_answer(name, answer)`` is
    called from the annotators' threads.
    """
    names = [config.name for _, config in annotators]
    if len(set(names)) != len(names):
        raise ConfigError(f"simulated annotator names repeat ({', '.join(names)}): give each "
                          "its own name")
    if not annotators:
        return {}

    def work(token: str, config: SimulatedAnnotatorConfig) -> list[AnsweredQuery]:
        report = None if on_answer is None else (lambda a: on_answer(config.name, a))
        return SimulatedAnnotator(base_url, token, episodes, config, on_answer=report).run()

    with ThreadPoolExecutor(max_workers=max_workers or len(annotators),
                            thread_name_prefix="annotator") as pool:
        futures = [(config.name, pool.submit(work, token, config))
                   for token, config in annotators]
        failures = [f.exception() for _, f in futures if f.exception() is not None]
    if failures:
        raise failures[0]
    return {name: future.result() for name, future in futures}
