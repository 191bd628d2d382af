"""The care-team HTTP API and dashboard (`phq api`, CONTRACT section 4).

Every request with a token follows `_serve`, the one place the order is written down:
  1. the Authorization header must look like a token, else 401 before any database connection;
  2. one transaction from the pool (none free within PHQ_API_POOL_TIMEOUT_S: 503);
  3. the token is checked; the route reads and writes its audit rows (and an acknowledgement);
  4. COMMIT, and only then is the response built and sent: a failed commit is a 5xx with no data;
  5. a refusal (401 for a known-bad token, 404) is rolled back, audited with its reason, committed.
Routes stay thin: care.store does the queries, care.schemas shapes the responses.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path as FilePath
from typing import Annotated, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import AwareDatetime
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from care import pagination, store
from care.schemas import (
    Acknowledgement,
    Alert,
    AuditEntry,
    Error,
    Health,
    ItemEvidence,
    LatestScore,
    Me,
    Page,
    Quote,
    Score,
    ScoreEvidence,
    Trajectory,
    UserSummary,
)
from phq.db import engine as make_engine
from phq.items import ITEMS
from phq.settings import Settings, get_settings

log = logging.getLogger("phq.api")
access_log = logging.getLogger("phq.api.access")

STATIC = FilePath(__file__).parent / "static"
PAGE_MAX = 500
MAX_BIGINT = 2**63 - 1
USER_NOT_FOUND = "user not found"
ALERT_NOT_FOUND = "alert not found"
SCORE_NOT_FOUND = "score not found"
TOKEN_SHAPE = re.compile(r"phq_[A-Za-z0-9_-]{20,100}")
TOKEN_REQUIRED = "a valid bearer token is required: Authorization: Bearer <token from `phq team token`>"

UNAUTHORIZED = {401: {"model": Error, "description": "No token, or a bad, expired or revoked one"}}
BAD_REQUEST = {400: {"model": Error, "description": "A parameter is invalid (the message says which)"}}
NOT_FOUND = {404: {"model": Error, "description": "Unknown, or not assigned to the caller's team"}}
UNAVAILABLE = {503: {"model": Error, "description": "The database is unreachable or busy; retry shortly"}}

UserId = Annotated[str, Path(min_length=1, max_length=128, description="Pseudonymous user id (may contain `/`)")]
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=512, pattern="^[A-Za-z0-9_-]+$",
                                     description="next_cursor of the previous page, unchanged")]
Id = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
T = TypeVar("T")

bearer = HTTPBearer(auto_error=False, description="A care-team token from `phq team token`")


class NotVisible(Exception):
    """A 404 that is audited: the id is unknown or outside the caller's team (the two look alike)."""

    def __init__(self, detail: str, user_id: str | None = None, alert_id: int | None = None,
                 score_id: int | None = None):
        super().__init__(detail)
        self.detail, self.user_id, self.alert_id, self.score_id = detail, user_id, alert_id, score_id


def _unauthorized() -> HTTPException:
    return HTTPException(401, TOKEN_REQUIRED, headers={"WWW-Authenticate": "Bearer"})


def _token(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """Step 1: a header that cannot hold a token is refused without touching the database."""
    if creds is None or creds.scheme.lower() != "bearer" or not TOKEN_SHAPE.fullmatch(creds.credentials):
        raise _unauthorized()
    return creds.credentials


Token = Annotated[str, Depends(_token)]


def _serve(request: Request, token: str, action: str, route: Callable[[Connection, store.Principal], T]) -> T:
    """Steps 2-5 (module docstring) around one route's body."""
    with request.app.state.engine.connect() as conn:
        who = store.authenticate(conn, token)
        if isinstance(who, store.Denial):
            store.audit_denied(conn, who, action, who.reason)
            conn.commit()
            raise _unauthorized()
        try:
            result = route(conn, who)
        except NotVisible as missing:
            conn.rollback()
            store.audit_denied(conn, who, action, "not_found", missing.user_id, missing.alert_id, missing.score_id)
            conn.commit()
            raise HTTPException(404, missing.detail) from None
        conn.commit()
        return result


def _instant(name: str, value: datetime | None) -> datetime | None:
    """A time that exists in UTC (an offset can push 0001-01-01 or 9999-12-31 out of range): else 400."""
    if value is None:
        return None
    try:
        return value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise HTTPException(400, f"{name}: {value.isoformat()} is out of range once converted to UTC") from None


def _page(rows: list[dict], limit: int, key) -> tuple[list[dict], str | None]:
    """The page's rows and the cursor after its last one (store functions fetch limit + 1 rows)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, pagination.encode(*key(rows[-1]))


def _decode(cursor: str | None, *types: type) -> tuple | None:
    return None if cursor is None else pagination.decode(cursor, types)


def _summary(row: dict) -> UserSummary:
    latest = LatestScore(**row) if row["score_id"] is not None else None
    trend = None if latest is None or row["previous_score"] is None else latest.score - row["previous_score"]
    return UserSummary(latest=latest, trend=trend, **{k: row[k] for k in (
        "user_id", "assigned_at", "previous_score", "open_alerts", "open_worsening_alerts")})


def _alert(row: dict) -> Alert:
    return Alert(**row, status="open" if row["acknowledged_at"] is None else "acknowledged")


def _evidence(score: dict, quotes: list[dict]) -> ScoreEvidence:
    item_scores = score["items"] or [None] * len(ITEMS)
    by_item = {i.number: [] for i in ITEMS}
    for q in quotes:
        by_item.setdefault(q["item"], []).append(Quote(**{k: v for k, v in q.items() if k != "item"}))
    return ScoreEvidence(
        score_id=score["id"], items=[
            ItemEvidence(item=i.number, key=i.key, label=i.label, score=item_scores[i.number - 1],
                         evidence=by_item[i.number])
            for i in ITEMS],
        **{k: score[k] for k in ("user_id", "scored_at", "score", "severity", "score_low", "score_high",
                                 "model_version")})


def _routes(app: FastAPI) -> None:
    authed = UNAUTHORIZED | BAD_REQUEST | UNAVAILABLE

    @app.get("/healthz", response_model=Health, responses=UNAVAILABLE, tags=["public"])
    def healthz(request: Request):
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return Health(status="ok")

    @app.get("/metrics", response_class=PlainTextResponse, tags=["public"])
    def metrics(request: Request):
        return PlainTextResponse(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def dashboard():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/v1/me", response_model=Me, responses=authed, tags=["care team"])
    def me(request: Request, token: Token):
        s = request.app.state.settings
        who = _serve(request, token, "me", lambda _conn, who: who)
        return Me(team=who.team_name, label=who.label, clinical_threshold=s.clinical_threshold,
                  reliable_change=s.reliable_change)

    @app.get("/v1/users", response_model=Page[UserSummary], responses=authed, tags=["care team"])
    def users(request: Request, token: Token, limit: Limit = 100, cursor: Cursor = None):
        after = _decode(cursor, str)

        def read(conn, who):
            rows, next_cursor = _page(store.users_page(conn, who.team_id, limit, after and after[0]), limit,
                                      lambda r: (r["user_id"],))
            if rows:
                store.audit(conn, who, "list_users", [r["user_id"] for r in rows])
            return Page[UserSummary](items=[_summary(r) for r in rows], next_cursor=next_cursor)

        return _serve(request, token, "list_users", read)

    @app.get("/v1/users/{user_id:path}/trajectory", response_model=Trajectory, responses=authed | NOT_FOUND,
             tags=["care team"])
    def trajectory(
        request: Request, token: Token, user_id: UserId,
        from_: Annotated[AwareDatetime | None, Query(alias="from", description="Scores at or after")] = None,
        to: Annotated[AwareDatetime | None, Query(description="Scores at or before")] = None,
        limit: Limit = 100, cursor: Cursor = None,
    ):
        start, end = _instant("from", from_), _instant("to", to)
        after = _decode(cursor, datetime, int)

        def read(conn, who):
            rows = store.trajectory_page(conn, who.team_id, user_id, start, end, limit, after)
            if rows is None:
                raise NotVisible(USER_NOT_FOUND, user_id=user_id)
            rows, next_cursor = _page(rows, limit, lambda r: (r["scored_at"], r["id"]))
            store.audit(conn, who, "read_trajectory", [user_id])
            return Trajectory(user_id=user_id, items=[Score(**r) for r in rows], next_cursor=next_cursor)

        return _serve(request, token, "read_trajectory", read)

    @app.get("/v1/scores/{score_id}/evidence", response_model=ScoreEvidence, responses=authed | NOT_FOUND,
             tags=["care team"])
    def evidence(request: Request, token: Token, score_id: Id):
        """The score's nine PHQ-9 items and, per item, the user's own words that drove it."""

        def read(conn, who):
            found = store.score_with_evidence(conn, who.team_id, score_id)
            if found is None:
                raise NotVisible(SCORE_NOT_FOUND, score_id=score_id)
            score, quotes = found
            store.audit(conn, who, "read_evidence", [score["user_id"]], score_id=score_id)
            return _evidence(score, quotes)

        return _serve(request, token, "read_evidence", read)

    @app.get("/v1/alerts", response_model=Page[Alert], responses=authed, tags=["care team"])
    def alerts(
        request: Request, token: Token,
        status: Literal["open", "acknowledged", "all"] = "open",
        since: Annotated[AwareDatetime | None, Query(description="Alerts detected at or after")] = None,
        user_id: Annotated[str | None, Query(min_length=1, max_length=128, description="One user's")] = None,
        limit: Limit = 100, cursor: Cursor = None,
    ):
        since = _instant("since", since)
        before = _decode(cursor, int)

        def read(conn, who):
            rows = store.alerts_page(conn, who.team_id, status, since, user_id, limit, before and before[0])
            rows, next_cursor = _page(rows, limit, lambda r: (r["id"],))
            if rows:
                store.audit(conn, who, "list_alerts", [r["user_id"] for r in rows])
            return Page[Alert](items=[_alert(r) for r in rows], next_cursor=next_cursor)

        return _serve(request, token, "list_alerts", read)

    @app.post("/v1/alerts/{alert_id}/acknowledge", response_model=Acknowledgement,
              responses=authed | NOT_FOUND, tags=["care team"])
    def acknowledge(request: Request, token: Token, alert_id: Id):
        def write(conn, who):
            result = store.acknowledge(conn, who.team_id, alert_id, who.label)
            if result is None:
                raise NotVisible(ALERT_NOT_FOUND, alert_id=alert_id)
            row, changed = result
            store.audit(conn, who, "acknowledge" if changed else "acknowledge_again", [row["user_id"]], alert_id)
            message = ("acknowledged" if changed else
                       f"already acknowledged by {row['acknowledged_by']} at {row['acknowledged_at'].isoformat()}; "
                       "nothing changed")
            return Acknowledgement(alert=_alert(row), changed=changed, message=message)

        return _serve(request, token, "acknowledge", write)

    @app.get("/v1/audit", response_model=Page[AuditEntry], responses=authed, tags=["care team"])
    def audit(request: Request, token: Token, limit: Limit = 100, cursor: Cursor = None):
        before = _decode(cursor, int)

        def read(conn, who):
            rows, next_cursor = _page(store.audit_page(conn, who.team_id, limit, before and before[0]), limit,
                                      lambda r: (r["id"],))
            return Page[AuditEntry](items=[AuditEntry(**r) for r in rows], next_cursor=next_cursor)

        return _serve(request, token, "read_audit", read)


def _instrument(app: FastAPI) -> None:
    """Metrics and the access log, both by route template: a path's user id never reaches a log line."""
    registry = CollectorRegistry()
    app.state.registry = registry
    requests = Counter("phq_api_requests", "HTTP requests by route and status", ["route", "status"],
                       registry=registry)
    latency = Histogram("phq_api_request_seconds", "HTTP request latency by route", ["route"], registry=registry)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path_format", "unmatched")
        elapsed = time.perf_counter() - started
        requests.labels(route, str(response.status_code)).inc()
        latency.labels(route).observe(elapsed)
        access_log.info("%s %s %d", request.method, route, response.status_code,
                        extra={"ms": round(elapsed * 1000, 1)})
        _secure(response.headers, request.url.path)
        return response


def _secure(headers, path: str) -> None:
    """The page loads only its own script and style, and no response is cached or framed."""
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    if path.startswith("/v1/"):
        headers["Cache-Control"] = "no-store"


def _one_line(exc: RequestValidationError) -> str:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_line(exc)}, status_code=400)

    @app.exception_handler(pagination.BadCursor)
    async def bad_cursor(_request: Request, exc: pagination.BadCursor):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(_request: Request, _exc: PoolTimeout):
        return JSONResponse({"detail": "every database connection of this API process is in use; retry shortly"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(OperationalError)
    async def database_down(_request: Request, _exc: OperationalError):
        return JSONResponse({"detail": "database unavailable; retry shortly"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError):
        # e.g. a failed COMMIT: nothing was sent, the audit row and any change were rolled back
        route = getattr(request.scope.get("route"), "path_format", "unmatched")
        log.error("database error on %s: %s", route, type(exc.orig).__name__)
        return JSONResponse({"detail": "the request could not be completed and nothing was disclosed; retry "
                                       "shortly"}, status_code=503, headers={"Retry-After": "5"})


def _openapi(app: FastAPI) -> Callable[[], dict]:
    """The schema as the API answers: bad input is a 400 with Error (FastAPI would document 422)."""

    def build() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", {"description": BAD_REQUEST[400]["description"],
                                                 "content": {"application/json": {
                                                     "schema": {"$ref": "#/components/schemas/Error"}}}})
            for unused in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.hash_key()  # audit rows need it: fail at start, not on the first read
    app = FastAPI(
        title="phq-monitor care-team API",
        version="2",
        description="PHQ-9 trajectories, items with evidence, and alerts for a care team's assigned users "
                    "(decision support, not a diagnosis). Authenticate with `Authorization: Bearer <token>`.",
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.db_url("api"), pool_size=settings.api_pool_size, max_overflow=0,
                                   pool_timeout=settings.api_pool_timeout_s)
    _instrument(app)
    _errors(app)
    _routes(app)
    app.openapi = _openapi(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def main(argv: list[str]) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="phq api", description="Serve the care-team API and dashboard.")
    parser.add_argument("--host", default=settings.api_host, help="default PHQ_API_HOST (%(default)s)")
    parser.add_argument("--port", type=int, default=settings.api_port, help="default PHQ_API_PORT (%(default)s)")
    args = parser.parse_args(argv)
    serve(create_app(settings), args.host, args.port, settings.log_level)
    return 0


def serve(app: FastAPI, host: str, port: int, log_level: str) -> None:
    """Uvicorn without its access log (it would print paths, which hold user ids): ours logs route templates."""
    import uvicorn

    from phq.telemetry import setup_logging

    setup_logging(log_level)
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False, log_config=None)
