"""The labelling HTTP API (FastAPI): annotators fetch queries and post answers.

Every request but ``/api/health`` and the page carries ``Authorization: Bearer <token>``
(the page fetches videos with it and plays them from blob: URLs). Endpoints:

    GET  /api/next                              the caller's next query (204: none left)
    GET  /api/queries/{id}                      a query, with the caller's answer if any
    POST /api/queries/{id}/label                answer it (201 new, 200 same answer again)
    GET  /api/queries/{id}/labels/{annotator}   an answer: one's own, or any for an admin
    POST /api/queries/{id}/withdraw             admin: stop serving a query
    POST /api/undo                              delete the caller's newest label (404: none)
    GET  /api/queries/{id}/video/{side}         side first|second: its VP9 WebM (202 and
                                                Retry-After while it renders)
    GET  /api/queries/{id}/trace/{side}         its force (N) / torque (N·m) trace over t (s)
                                                (204: the episode has no wrench data)
    GET  /api/progress                          queue and label counts
    GET  /api/health                            liveness, no token
    GET  /  and  /static/...                    the labelling page (robopref/label/page)

Errors are ``{"detail": "<one line: the problem and the fix>"}`` with 401 (no or unknown
token), 403 (not the caller's to see or do), 404 (no such query or label), 409 (another
answer already stored, the query retired, or an undo of a withdrawn query's answer), 422
(malformed body or parameter; a video that failed to render; a trace that cannot be read).

Serving a query from ``/api/next`` also queues the videos of the next :data:`PREFETCH`
queries the caller would get, so the next pair plays from the cache once this one is
answered.

Handlers are plain ``def``: FastAPI runs them in its thread pool, and each store call
commits its transaction before returning, so an acknowledged label is on disk before the
response leaves (a server killed right after loses nothing it acknowledged).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, Strict
from starlette.exceptions import HTTPException as StarletteHTTPException

from robopref.data import Segment
from robopref.label.database import Database, open_database
from robopref.label.errors import (
    Conflict,
    Forbidden,
    InvalidLabel,
    LabelDatabaseError,
    LabelError,
    NotFound,
    Unauthorized,
)
from robopref.label.export import progress
from robopref.label.schema import FORMAT_VERSION, MAX_REASON_CHARS, MAX_SCORE
from robopref.label.store import AnnotatorInfo, LabelStore, QueryInfo

log = logging.getLogger(__name__)

STATUS = {
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,  # Retired is a Conflict
    InvalidLabel: 422,
    LabelDatabaseError: 503,
}


PAGE = Path(__file__).parent / "page"
# Queries after the one /api/next serves whose videos are queued too, so the next pair
# plays from the cache the moment the current one is answered.
PREFETCH = 3
# How long a video request waits for a render in progress before answering 202 (seconds):
# long enough that a render about to finish is served at once, short enough not to tie up
# one of the thread pool's workers.
VIDEO_WAIT_S = 1.0
RETRY_AFTER_S = 1
# Force/torque traces kept in memory (each a few hundred kB of JSON at most).
TRACE_CACHE = 64
# Samples sent per trace: a canvas a few hundred pixels wide shows no more.
TRACE_POINTS = 1500
# The page loads nothing from elsewhere; videos are blob: URLs fetched with the token.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; "
                               "img-src 'self' data: blob:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",  # a first visit carries ?token= in its address
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

Traces = Callable[[Segment, str | None], dict | None]


class VideoCache(Protocol):
    """What the server needs of a video cache (``robopref.label.video`` has the real one):
    renders run in the background, and a rendered segment is a ready VP9 WebM file."""

    def request(self, items: list[tuple[Segment, str | None]]) -> None: ...
    def path(self, segment: Segment) -> Path | None: ...
    def wait(self, segment: Segment, dataset_path: str | None,
             timeout_s: float) -> Path | None: ...
    def failed(self, segment: Segment) -> str | None: ...
    def close(self) -> None: ...


def _default_traces() -> Traces:
    """Wrench traces read from the datasets themselves; imported on first use, since the
    dataset readers are heavy and a server without traces never needs them."""
    state: dict[str, Any] = {}
    lock = threading.Lock()

    def traces(segment: Segment, dataset_path: str | None) -> dict | None:
        with lock:
            if "traces" not in state:
                from robopref.label.datasets import DatasetResolver
                from robopref.label.video import dataset_traces

                state["traces"] = dataset_traces(DatasetResolver())
        return state["traces"](segment, dataset_path)

    return traces


def _listify(value: Any) -> Any:
    """Plain lists of floats from numpy arrays or nested sequences; a NaN or infinite
    sample (a sensor dropout) becomes ``null``, which JSON can carry and the page skips."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    value = float(value)
    return value if math.isfinite(value) else None


def _thin_trace(trace: dict) -> dict:
    """The trace as JSON (``t`` seconds, ``force`` N, ``torque`` N·m, each Nx3), every k-th
    sample kept so at most :data:`TRACE_POINTS` travel to the page."""
    t = _listify(trace["t"])
    step = max(1, -(-len(t) // TRACE_POINTS))
    out = {"t": t[::step], "units": {"t": "s", "force": "N", "torque": "N·m"}}
    for key in ("force", "torque"):
        if trace.get(key) is not None:
            out[key] = _listify(trace[key])[::step]
    return out


class LabelIn(BaseModel):
    """The body of ``POST /api/queries/{id}/label``; unknown fields are refused, so a typo
    ("choise") fails loudly instead of storing an empty answer."""

    model_config = ConfigDict(extra="forbid")

    choice: Literal["first", "second", "equal", "cannot_tell"] | None = None
    # Strict: JSON true or "7" is a malformed score, not 1 or 7.
    score: Annotated[int, Strict()] | None = Field(default=None, ge=0, le=MAX_SCORE)
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)
    time_taken_s: float = Field(ge=0, allow_inf_nan=False)


def _error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _status_of(exc: LabelError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _validation_line(exc: RequestValidationError) -> str:
    """One line from pydantic's list of errors: where, what, and how to fix it."""
    errors = exc.errors()
    if not errors:
        return "malformed request: check it against the API description at /docs"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"malformed request: {where}: {first.get('msg', 'invalid')}{more}; send e.g. "
            '{"choice": "first", "time_taken_s": 3.2}')


def caller(request: Request) -> AnnotatorInfo:
    """The annotator whose bearer token the request carries (401 without a valid one)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    return request.app.state.store.authenticate(token.strip())


# Module level: FastAPI resolves the (postponed) annotations of handlers in module globals.
Caller = Annotated[AnnotatorInfo, Depends(caller)]


def create_app(database: str | Path | Database, videos: VideoCache | None = None,
               traces: Traces | None = None) -> FastAPI:
    """The API and page over the label database at ``database`` (a URL, a path, or an open
    one).

    The database is opened (created and migrated if need be) here, so a bad URL fails at
    start-up with one line instead of on the first request. ``videos`` renders segments to
    WebM (without one, video requests are 404 and the page shows no video); the caller owns
    it and closes it. ``traces(segment, dataset_path)`` gives a segment's force/torque
    trace or ``None``; by default it is read from the dataset by ``robopref.label.video``.
    """
    db = database if isinstance(database, Database) else open_database(database)
    owns_db = not isinstance(database, Database)
    store = LabelStore(db)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if owns_db:
            db.close()

    app = FastAPI(title="robopref labels", version=str(FORMAT_VERSION), lifespan=lifespan)
    app.state.db, app.state.store, app.state.videos = db, store, videos
    traces = traces or _default_traces()
    trace_cache: OrderedDict[tuple, dict | None] = OrderedDict()
    trace_lock = threading.Lock()

    @app.exception_handler(LabelError)
    async def label_error(_request: Request, exc: LabelError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return _error(_status_of(exc), str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_line(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no endpoint {request.url.path}: the API is listed at /docs"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}: see /docs"
        return _error(exc.status_code, detail, getattr(exc, "headers", None))

    def require_admin(annotator: AnnotatorInfo, what: str) -> None:
        if not annotator.is_admin:
            raise Forbidden(f"{what} needs an admin token: ask an admin, or create one with "
                            "'robopref label annotator add NAME --admin'")

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "format_version": FORMAT_VERSION}

    def segments_of(query: QueryInfo) -> list[tuple[Segment, str | None]]:
        items = [(query.first, query.first_dataset_path)]
        if query.second is not None:
            items.append((query.second, query.second_dataset_path))
        return items

    def side_of(query: QueryInfo, side: str) -> tuple[Segment, str | None]:
        if side == "second" and query.second is None:
            raise NotFound(f"query {query.id} scores one segment and has no second side: "
                           "ask for side 'first'")
        if side == "first":
            return query.first, query.first_dataset_path
        return query.second, query.second_dataset_path

    @app.get("/api/next", responses={204: {"description": "no query left for the caller"}})
    def next_query(annotator: Caller, project: str | None = None):
        upcoming = store.upcoming_for(annotator, project, limit=1 + PREFETCH)
        if not upcoming:
            return Response(status_code=204)
        if videos is not None:
            # The served query first: the renderer works through requests in order. A
            # broken cache must not stop labelling; the video request reports it.
            try:
                videos.request([item for query in upcoming for item in segments_of(query)])
            except Exception:
                log.exception("queueing videos for query %s failed", upcoming[0].id)
        return upcoming[0].to_json()

    @app.post("/api/undo")
    def undo(annotator: Caller, project: str | None = None) -> dict:
        label = store.undo_last(annotator, project)
        if label is None:
            raise NotFound(f"nothing to undo: {annotator.name} has no label"
                           + ("" if project is None else f" in project '{project}'"))
        return {**label.to_json(), "query": store.get_query(label.query_id).to_json()}

    @app.get("/api/queries/{query_id}/video/{side}",
             responses={200: {"content": {"video/webm": {}}},
                        202: {"description": "rendering: retry after Retry-After seconds"}})
    def get_video(query_id: int, side: Literal["first", "second"], annotator: Caller):
        segment, path_hint = side_of(store.get_query(query_id), side)
        if videos is None:
            raise NotFound("this server renders no videos: start it with a video cache "
                           "('robopref label serve' does)")
        path = videos.path(segment)
        if path is None and videos.failed(segment) is None:
            videos.request([(segment, path_hint)])
            path = videos.wait(segment, path_hint, VIDEO_WAIT_S)
        if path is not None and not Path(path).is_file():
            path = None  # evicted between the answer and now: render it again
            videos.request([(segment, path_hint)])
        if path is not None:
            return FileResponse(path, media_type="video/webm",
                                headers={"Cache-Control": "private, max-age=3600"})
        error = videos.failed(segment)
        if error is not None:
            line = " ".join(str(error).split())[:240]
            return _error(422, f"the video of {segment.episode_id} [{segment.start}, "
                               f"{segment.end}) could not be rendered: {line}")
        return JSONResponse({"detail": "rendering: retry shortly"}, status_code=202,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.get("/api/queries/{query_id}/trace/{side}",
             responses={204: {"description": "the episode has no force/torque data"}})
    def get_trace(query_id: int, side: Literal["first", "second"], annotator: Caller):
        segment, path_hint = side_of(store.get_query(query_id), side)
        key = (segment, path_hint)
        with trace_lock:
            cached = key in trace_cache
            trace = trace_cache.get(key)
        if not cached:
            try:
                trace = traces(segment, path_hint)
            except LabelError:
                raise
            except Exception as exc:  # the dataset is gone or unreadable: say so, one line
                line = " ".join(str(exc).split())[:240] or type(exc).__name__
                return _error(422, f"no trace for {segment.episode_id}: {line}")
            trace = None if trace is None or not len(trace.get("t", ())) else _thin_trace(trace)
            with trace_lock:
                trace_cache[key] = trace
                while len(trace_cache) > TRACE_CACHE:
                    trace_cache.popitem(last=False)
        if trace is None:
            return Response(status_code=204)
        return trace

    @app.get("/api/queries/{query_id}")
    def get_query(query_id: int, annotator: Caller) -> dict:
        payload = store.get_query(query_id).to_json()
        try:
            payload["my_label"] = store.label_of(query_id, annotator.name).to_json()
        except NotFound:
            payload["my_label"] = None
        return payload

    @app.post("/api/queries/{query_id}/label", status_code=201)
    def post_label(query_id: int, body: LabelIn, annotator: Caller, response: Response) -> dict:
        label, created = store.submit_label(annotator, query_id, body.choice, body.score,
                                            body.reason, body.time_taken_s)
        if not created:
            response.status_code = 200  # the same answer again: the stored row, unchanged
        return label.to_json()

    @app.get("/api/queries/{query_id}/labels/{name}")
    def get_label(query_id: int, name: str, annotator: Caller) -> dict:
        if name != annotator.name:
            require_admin(annotator, f"reading {name}'s answers")
        return store.label_of(query_id, name).to_json()

    @app.post("/api/queries/{query_id}/withdraw")
    def withdraw(query_id: int, annotator: Caller) -> dict:
        require_admin(annotator, "withdrawing a query")
        return store.withdraw(query_id).to_json()

    @app.get("/api/progress")
    def get_progress(annotator: Caller, project: str | None = None) -> dict:
        payload = progress(db, project, annotator).to_json()
        if not annotator.is_admin:
            # Annotators see the queue and their own count, not their colleagues'.
            payload["by_annotator"] = {
                annotator.name: payload["by_annotator"].get(annotator.name, 0)
            }
        return payload

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE / "index.html", media_type="text/html",
                            headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=PAGE), name="static")
    return app
