"""Helpers for the care tests (no tests here): teams, tokens and scores written straight to Postgres,
and a two-team world that the API tests share. Imported by the tests/test_care_*.py modules."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, update

from care import store
from phq.db import engine as make_engine
from phq.models import severity
from phq.settings import Settings
from phq.tables import care_tokens, phq9_item_evidence, phq9_scores, symptom_change_events

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=timezone.utc)


def add_token(conn, team: int, label: str, expires_at=None, revoked=False) -> str:
    token_id, token = store.create_token(conn, team, label, expires_at)
    if revoked:
        conn.execute(update(care_tokens).where(care_tokens.c.id == token_id).values(revoked_at=T0))
    return token


def even_items(score: float) -> list[float]:
    """Nine item scores (0..3) that sum to `score`, weighted towards the first items."""
    weights = [9, 8, 7, 6, 5, 4, 3, 2, 1]
    items, remaining, left = [], score, sum(weights)
    for w in weights:  # heaviest first: a capped item's share goes to the rest
        items.append(min(3.0, max(0.0, remaining * w / left)))
        remaining, left = remaining - items[-1], left - w
    return items


def add_scores(conn, user_id: str, scores: list[float], start: datetime = T0, model: str = "m1",
               every: timedelta = timedelta(days=3), half_width: float | None = None,
               noise_bound: float | None = None) -> tuple[list[int], list[int]]:
    """Writes scores as the scoring worker would, with change events for consecutive ones;
    returns (score ids, change-event ids). With `half_width` the scores carry items and an interval
    (the v2 columns), and with `noise_bound` change events need |delta| beyond it (CONTRACT v2)."""
    score_ids, event_ids = [], []
    for i, value in enumerate(scores):
        at = start + i * every
        v2 = {} if half_width is None else dict(items=even_items(value), score_low=max(0.0, value - half_width),
                                                score_high=min(27.0, value + half_width))
        score_ids.append(conn.execute(insert(phq9_scores).values(
            request_id=f"{user_id}-{model}-{i}", user_id=user_id, scored_at=at, window_start=at - timedelta(days=14),
            window_end=at, score=value, severity=severity(value), model_version=model, n_sessions=2,
            n_user_turns=10, n_tokens=400, trigger_session_id=f"s{i}", **v2,
        ).returning(phq9_scores.c.id)).scalar_one())
        if i:
            event_ids += add_change_events(conn, user_id, score_ids[-1], scores[i - 1], value, at, noise_bound)
    return score_ids, event_ids


def add_change_events(conn, user_id, score_id, previous, current, at, noise_bound=None) -> list[int]:
    delta = current - previous
    if noise_bound is not None and abs(delta) < noise_bound:
        return []
    kinds = []
    if abs(delta) >= 5:
        kinds.append("reliable_change")
    if severity(previous) != severity(current):
        kinds.append("severity_band_change")
    return [conn.execute(insert(symptom_change_events).values(
        user_id=user_id, score_id=score_id, detected_at=at + timedelta(minutes=1), kind=kind,
        direction="worsening" if delta > 0 else "improvement", previous_score=previous, current_score=current,
        delta=delta, previous_severity=severity(previous), current_severity=severity(current),
        noise_bound=noise_bound,
    ).returning(symptom_change_events.c.id)).scalar_one() for kind in kinds]


def add_evidence(conn, score_id: int, quotes: dict[int, list[str]], at: datetime = T0) -> None:
    """Evidence rows as the item model writes them: {item: [excerpt, ...]} ranked in the order given."""
    conn.execute(insert(phq9_item_evidence), [
        {"score_id": score_id, "item": item, "rank": rank, "event_id": f"ev-{score_id}-{item}-{rank}",
         "session_id": f"sess-{score_id}", "ts": at - timedelta(hours=rank), "excerpt": excerpt,
         "weight": round(1.0 / rank, 3)}
        for item, excerpts in quotes.items() for rank, excerpt in enumerate(excerpts, start=1)
    ])


@dataclass
class World:
    """Two teams, A and B, each with users, scores, alerts and every kind of token."""

    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)  # "A", "B", "A_expired", "A_revoked"
    users: dict[str, list[str]] = field(default_factory=dict)  # team -> user ids
    alerts: dict[str, list[int]] = field(default_factory=dict)  # team -> alert ids
    unassigned_user: str = ""


def build_world(db_url: str, tag: str) -> World:
    """A fresh two-team world; `tag` keeps its names apart from other modules' worlds in the same database."""
    world = World(Settings(database_url=db_url, topic_prefix=f"{tag}."))
    with make_engine(db_url).begin() as conn:
        for team_name, series in (("A", [[3, 9, 16], [12, 6]]), ("B", [[4, 14]])):
            team = store.create_team(conn, f"{tag}-{team_name}")
            world.tokens[team_name] = add_token(conn, team, f"dr-{team_name.lower()}")
            world.users[team_name], world.alerts[team_name] = [], []
            for i, scores in enumerate(series):
                user = f"{tag}-{team_name.lower()}{i}"
                store.assign(conn, team, [user])
                world.users[team_name].append(user)
                world.alerts[team_name] += add_scores(conn, user, scores)[1]
            if team_name == "A":
                world.tokens["A_expired"] = add_token(conn, team, "old", expires_at=T0)
                world.tokens["A_revoked"] = add_token(conn, team, "gone", revoked=True)
        world.unassigned_user = f"{tag}-nobody"
        add_scores(conn, world.unassigned_user, [5, 20])
    return world


def client(world: World):
    from fastapi.testclient import TestClient

    from care.api import create_app

    return TestClient(create_app(world.settings))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_phq(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phq.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def db_env(db_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PHQ_DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


# --- Alerts on Kafka and a webhook receiver


def publish_alerts(settings: Settings, rows: list[dict]) -> None:
    """Produce change-event rows to phq9.alerts as the scoring worker does (JSON of the columns, key user_id)."""
    import json

    from confluent_kafka import Producer

    from phq import topics

    producer = Producer({"bootstrap.servers": settings.kafka()})
    for row in rows:
        value = json.dumps({k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()})
        producer.produce(settings.topic(topics.ALERTS), key=row["user_id"].encode(), value=value.encode())
    assert producer.flush(10) == 0


def change_event_rows(conn, ids: list[int]) -> list[dict]:
    from sqlalchemy import select

    rows = conn.execute(select(symptom_change_events).where(symptom_change_events.c.id.in_(ids)))
    return [dict(r._mapping) for r in rows]


class Receiver:
    """A real local HTTP webhook receiver: checks each signature; answers 503 to the first `fail_first`
    requests, and to every request while `down` is set; holds each request until `gate` is set."""

    def __init__(self, secret: str = "", fail_first: int = 0):
        import http.server
        import threading

        self.secret, self.fail_first = secret, fail_first
        self.down = False
        self.gate = threading.Event()
        self.gate.set()
        self.requests: list[dict] = []  # every request: ok (signature valid), alert (body), status, delivery_id
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.handle(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/phq"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, request) -> None:
        import json

        from care.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

        body = request.rfile.read(int(request.headers["Content-Length"]))
        self.gate.wait(60)
        ok = verify(self.secret, request.headers[TIMESTAMP_HEADER], body, request.headers[SIGNATURE_HEADER])
        failing = self.down or len(self.requests) < self.fail_first
        status = 503 if failing else (204 if ok else 401)
        self.requests.append({"ok": ok, "alert": json.loads(body), "status": status,
                              "delivery_id": request.headers.get("X-PHQ-Delivery-Id")})
        request.send_response(status)
        request.end_headers()

    def delivered(self) -> list[dict]:
        return [r["alert"] for r in self.requests if r["status"] == 204]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
