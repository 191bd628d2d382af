"""The care-team HTTP API and dashboard (`phq api`, CONTRACT section 4).

Routes stay thin: they check the token, call care.store inside one transaction, write the audit
rows in that same transaction, and shape the response with care.schemas.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import AwareDatetime
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from care import pagination, store
from care.schemas import (
    Acknowledgement,
    Alert,
    AuditEntry,
    Error,
    Health,
    LatestScore,
    Me,
    Page,
    Score,
    Trajectory,
    UserSummary,
)
from phq.db import engine as make_engine
from phq.settings import Settings, get_settings

STATIC = FilePath(__file__).parent / "static"
PAGE_MAX = 500
MAX_BIGINT = 2**63 - 1
USER_NOT_FOUND = "user not found"
ALERT_NOT_FOUND = "alert not found"

UNAUTHORIZED = {401: {"model": Error, "description": "No token, or a bad, expired or revoked one"}}
BAD_REQUEST = {400: {"model": Error, "description": "A parameter such as the cursor is invalid"}}
NOT_FOUND = {404: {"model": Error, "description": "Unknown, or not assigned to the caller's team"}}

UserId = Annotated[str, Path(min_length=1, max_length=128, description="Pseudonymous user id")]
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=512, pattern="^[A-Za-z0-9_-]+$",
                                     description="next_cursor of the previous page, unchanged")]

bearer = HTTPBearer(auto_error=False, description="A care-team token from `phq team token`")


def _conn(request: Request) -> Iterator[Connection]:
    with request.app.state.engine.begin() as conn:
        yield conn


def _principal(
    conn: Annotated[Connection, Depends(_conn)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> store.Principal:
    who = store.principal(conn, creds.credentials) if creds and creds.scheme.lower() == "bearer" else None
    if who is None:
        raise HTTPException(
            401, "a valid bearer token is required: Authorization: Bearer <token from `phq team token`>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return who


Conn = Annotated[Connection, Depends(_conn)]
Who = Annotated[store.Principal, Depends(_principal)]


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


def _routes(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Health, tags=["public"])
    def healthz(conn: Conn):
        conn.execute(text("SELECT 1"))
        return Health(status="ok")

    @app.get("/metrics", response_class=PlainTextResponse, tags=["public"])
    def metrics(request: Request):
        return PlainTextResponse(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def dashboard():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/v1/me", response_model=Me, responses=UNAUTHORIZED, tags=["care team"])
    def me(who: Who, request: Request):
        s = request.app.state.settings
        return Me(team=who.team_name, label=who.label, clinical_threshold=s.clinical_threshold,
                  reliable_change=s.reliable_change)

    @app.get("/v1/users", response_model=Page[UserSummary], responses=UNAUTHORIZED | BAD_REQUEST,
             tags=["care team"])
    def users(conn: Conn, who: Who, limit: Limit = 100, cursor: Cursor = None):
        after = _decode(cursor, str)
        rows, next_cursor = _page(store.users_page(conn, who.team_id, limit, after and after[0]), limit,
                                  lambda r: (r["user_id"],))
        if rows:
            store.audit(conn, who, "list_users", [r["user_id"] for r in rows])
        return Page[UserSummary](items=[_summary(r) for r in rows], next_cursor=next_cursor)

    @app.get("/v1/users/{user_id}/trajectory", response_model=Trajectory,
             responses=UNAUTHORIZED | BAD_REQUEST | NOT_FOUND, tags=["care team"])
    def trajectory(
        conn: Conn, who: Who, user_id: UserId,
        from_: Annotated[AwareDatetime | None, Query(alias="from", description="Scores at or after")] = None,
        to: Annotated[AwareDatetime | None, Query(description="Scores at or before")] = None,
        limit: Limit = 100, cursor: Cursor = None,
    ):
        after = _decode(cursor, datetime, int)
        rows = store.trajectory_page(conn, who.team_id, user_id, from_, to, limit, after)
        if rows is None:
            raise HTTPException(404, USER_NOT_FOUND)
        rows, next_cursor = _page(rows, limit, lambda r: (r["scored_at"], r["id"]))
        store.audit(conn, who, "read_trajectory", [user_id])
        return Trajectory(user_id=user_id, items=[Score(**r) for r in rows], next_cursor=next_cursor)

    @app.get("/v1/alerts", response_model=Page[Alert], responses=UNAUTHORIZED | BAD_REQUEST, tags=["care team"])
    def alerts(
        conn: Conn, who: Who,
        status: Literal["open", "acknowledged", "all"] = "open",
        since: Annotated[AwareDatetime | None, Query(description="Alerts detected at or after")] = None,
        user_id: Annotated[str | None, Query(min_length=1, max_length=128, description="One user's")] = None,
        limit: Limit = 100, cursor: Cursor = None,
    ):
        before = _decode(cursor, int)
        rows = store.alerts_page(conn, who.team_id, status, since, user_id, limit, before and before[0])
        rows, next_cursor = _page(rows, limit, lambda r: (r["id"],))
        if rows:
            store.audit(conn, who, "list_alerts", [r["user_id"] for r in rows])
        return Page[Alert](items=[_alert(r) for r in rows], next_cursor=next_cursor)

    @app.post("/v1/alerts/{alert_id}/acknowledge", response_model=Acknowledgement,
              responses=UNAUTHORIZED | NOT_FOUND, tags=["care team"])
    def acknowledge(conn: Conn, who: Who, alert_id: Annotated[int, Path(ge=1, le=MAX_BIGINT)]):
        result = store.acknowledge(conn, who.team_id, alert_id, who.label)
        if result is None:
            raise HTTPException(404, ALERT_NOT_FOUND)
        row, changed = result
        store.audit(conn, who, "acknowledge" if changed else "acknowledge_again", [row["user_id"]], alert_id)
        message = ("acknowledged" if changed else
                   f"already acknowledged by {row['acknowledged_by']} at {row['acknowledged_at'].isoformat()}; "
                   "nothing changed")
        return Acknowledgement(alert=_alert(row), changed=changed, message=message)

    @app.get("/v1/audit", response_model=Page[AuditEntry], responses=UNAUTHORIZED | BAD_REQUEST,
             tags=["care team"])
    def audit(conn: Conn, who: Who, limit: Limit = 100, cursor: Cursor = None):
        before = _decode(cursor, int)
        rows, next_cursor = _page(store.audit_page(conn, who.team_id, limit, before and before[0]), limit,
                                  lambda r: (r["id"],))
        return Page[AuditEntry](items=[AuditEntry(**r) for r in rows], next_cursor=next_cursor)


def _instrument(app: FastAPI) -> None:
    registry = CollectorRegistry()
    app.state.registry = registry
    requests = Counter("phq_api_requests", "HTTP requests by route and status", ["route", "status"],
                       registry=registry)
    latency = Histogram("phq_api_request_seconds", "HTTP request latency by route", ["route"], registry=registry)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(route, str(response.status_code)).inc()
        latency.labels(route).observe(time.perf_counter() - started)
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


def _errors(app: FastAPI) -> None:
    @app.exception_handler(pagination.BadCursor)
    async def bad_cursor(_request: Request, exc: pagination.BadCursor):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(OperationalError)
    async def database_down(_request: Request, _exc: OperationalError):
        return JSONResponse({"detail": "database unavailable; retry shortly"}, status_code=503,
                            headers={"Retry-After": "5"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="phq-monitor care-team API",
        version="1",
        description="PHQ-9 trajectories and alerts for a care team's assigned users (decision support, "
                    "not a diagnosis). Authenticate with `Authorization: Bearer <token>`.",
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.db_url(), pool_size=5, max_overflow=5)
    _instrument(app)
    _errors(app)
    _routes(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def main(argv: list[str]) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="phq api", description="Serve the care-team API and dashboard.")
    parser.add_argument("--host", default=settings.api_host, help="default PHQ_API_HOST (%(default)s)")
    parser.add_argument("--port", type=int, default=settings.api_port, help="default PHQ_API_PORT (%(default)s)")
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=settings.log_level.lower())
    return 0
