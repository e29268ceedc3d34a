"""The labelling HTTP API (FastAPI): annotators fetch queries and post answers.

Every request but ``/api/health`` carries ``Authorization: Bearer <token>``. Endpoints:

    GET  /api/next                              the caller's next query (204: none left)
    GET  /api/queries/{id}                      a query, with the caller's answer if any
    POST /api/queries/{id}/label                answer it (201 new, 200 same answer again)
    GET  /api/queries/{id}/labels/{annotator}   an answer: one's own, or any for an admin
    POST /api/queries/{id}/withdraw             admin: stop serving a query
    GET  /api/progress                          queue and label counts
    GET  /api/health                            liveness, no token

Errors are ``{"detail": "<one line: the problem and the fix>"}`` with 401 (no or unknown
token), 403 (not the caller's to see or do), 404 (no such query or label), 409 (another
answer already stored, or the query retired), 422 (malformed body or parameter).

Handlers are plain ``def``: FastAPI runs them in its thread pool, and each store call
commits its transaction before returning, so an acknowledged label is on disk before the
response leaves (a server killed right after loses nothing it acknowledged).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, Strict
from starlette.exceptions import HTTPException as StarletteHTTPException

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
from robopref.label.store import AnnotatorInfo, LabelStore

STATUS = {
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,  # Retired is a Conflict
    InvalidLabel: 422,
    LabelDatabaseError: 503,
}


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


def create_app(database: str | Path | Database) -> FastAPI:
    """The API over the label database at ``database`` (a URL, a path, or an open one).

    The database is opened (created and migrated if need be) here, so a bad URL fails at
    start-up with one line instead of on the first request.
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
    app.state.db, app.state.store = db, store

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

    @app.get("/api/next", responses={204: {"description": "no query left for the caller"}})
    def next_query(annotator: Caller, project: str | None = None):
        query = store.next_query_for(annotator, project)
        if query is None:
            return Response(status_code=204)
        return query.to_json()

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

    return app
