"""`phq notify`: delivers alerts (topic phq9.alerts) to the webhooks of the users' care teams.

Its own consumer group, so it never slows scoring. For each alert, in order:
  1. skip it if the user was erased at or after the alert was produced (phq.erasures, then Postgres);
  2. find the user's team webhook (none: skip); skip if already delivered to that team;
  3. POST the alert's JSON, signed, retrying with exponential backoff; log every attempt;
  4. commit the alert's offset (so a crash repeats at most the alert in flight: at-least-once).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import signal
import threading
import time
import uuid
from datetime import datetime, timezone

import httpx
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Message
from prometheus_client import CollectorRegistry, Counter, start_http_server

from care import store
from phq import topics
from phq.db import engine as make_engine
from phq.erasures import ErasureLog
from phq.settings import Settings, get_settings

log = logging.getLogger("phq.notify")

SIGNATURE_HEADER = "X-PHQ-Signature"
TIMESTAMP_HEADER = "X-PHQ-Timestamp"
RETRYABLE = {408, 425, 429}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", so a receiver can reject replays of old deliveries."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, presented: str, max_age_s: float = 300) -> bool:
    """What a receiver does: a matching signature over a recent timestamp."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), presented)


def backoff_delays(care: Settings) -> list[float]:
    """Seconds to wait before each retry: base, 2 x base, 4 x base ..., capped."""
    return [min(care.webhook_max_backoff_s, care.webhook_backoff_s * 2**i)
            for i in range(care.webhook_max_attempts - 1)]


def produced_at(msg: Message, alert: dict) -> datetime:
    """When the alert was produced: the Kafka timestamp, else its detected_at."""
    kind, ms = msg.timestamp()
    if kind != TIMESTAMP_NOT_AVAILABLE and ms > 0:
        return datetime.fromtimestamp(ms / 1000, timezone.utc)
    return datetime.fromisoformat(alert["detected_at"])


class Notifier:
    def __init__(self, settings: Settings, care: Settings, registry: CollectorRegistry):
        self.settings, self.care = settings, care
        self.engine = make_engine(settings.db_url(), pool_size=2)
        self.http = httpx.Client(timeout=care.webhook_timeout_s, follow_redirects=False)
        self.erasures = ErasureLog(settings)
        self.stop = threading.Event()
        self.outcomes = Counter("phq_notify_alerts", "Alerts handled by outcome", ["outcome"], registry=registry)
        self.attempts = Counter("phq_notify_attempts", "Webhook POSTs by result", ["result"], registry=registry)

    def handle(self, msg: Message) -> str:
        """Steps 1-3 for one alert; returns what happened to it."""
        try:
            alert = json.loads(msg.value())
            alert_id, user_id = int(alert["id"]), str(alert["user_id"])
            when = produced_at(msg, alert)
        except (ValueError, KeyError, TypeError):
            return "malformed"
        if self._erased(user_id, when):
            return "erased"
        with self.engine.connect() as conn:
            hook = store.webhook_for_user(conn, user_id)
            if hook is None:
                return "no_webhook"
            if store.was_delivered(conn, alert_id, hook["team_id"]):
                return "duplicate"
        return self.deliver(alert_id, user_id, hook, msg.value())

    def _erased(self, user_id: str, when: datetime) -> bool:
        self.erasures.poll_new()
        if self.erasures.is_erased(user_id, when):
            return True
        with self.engine.connect() as conn:  # the topic may lag behind `phq erase`; Postgres has it too
            erased_at = store.erased_at(conn, user_id)
        return erased_at is not None and when <= erased_at

    def deliver(self, alert_id: int, user_id: str, hook: dict, body: bytes) -> str:
        delays = backoff_delays(self.care)
        for attempt in range(1, self.care.webhook_max_attempts + 1):
            status, error = self._post(hook, body, alert_id)
            done = status is not None and 200 <= status < 300
            final = done or attempt == self.care.webhook_max_attempts or (
                status is not None and 400 <= status < 500 and status not in RETRYABLE)
            outcome = "delivered" if done else ("failed" if final else "retrying")
            self._log(alert_id=alert_id, user_id=user_id, team_id=hook["team_id"], attempt=attempt,
                      outcome=outcome, http_status=status, error=error)
            if final:
                return outcome
            if self.stop.wait(delays[attempt - 1]):
                return "interrupted"
        return "failed"

    def _post(self, hook: dict, body: bytes, alert_id: int) -> tuple[int | None, str | None]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(hook["secret"], timestamp, body),
            "X-PHQ-Alert-Id": str(alert_id),
            "X-PHQ-Delivery-Id": str(uuid.uuid4()),
            "User-Agent": "phq-notify/1",
        }
        try:
            response = self.http.post(hook["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.attempts.labels("error").inc()
            return None, f"{type(exc).__name__}: {exc}"[:300]
        self.attempts.labels(str(response.status_code)).inc()
        return response.status_code, None

    def _log(self, **row) -> None:
        with self.engine.begin() as conn:
            store.log_delivery(conn, **row)

    def close(self) -> None:
        self.erasures.close()
        self.http.close()
        self.engine.dispose()


def consumer(settings: Settings, care: Settings, assigned: threading.Event) -> Consumer:
    c = Consumer({
        "bootstrap.servers": settings.kafka(),
        "group.id": settings.topic_prefix + care.notify_group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "max.poll.interval.ms": 900_000,  # retries with backoff may hold one alert for minutes
    })
    c.subscribe([settings.topic(topics.ALERTS)], on_assign=lambda *_: assigned.set())
    return c


def run(settings: Settings, care: Settings, idle_exit_s: float | None = None) -> int:
    registry = CollectorRegistry()
    server, _ = start_http_server(settings.metrics_port, registry=registry)
    notifier = Notifier(settings, care, registry)
    notifier.erasures.catch_up()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: notifier.stop.set())
    assigned = threading.Event()  # idle time counts only once the group has given us partitions
    alerts = consumer(settings, care, assigned)
    log.info("notify: consuming %s; metrics on port %d", settings.topic(topics.ALERTS), server.server_port)
    idle_since = time.monotonic()
    try:
        while not notifier.stop.is_set():
            msg = alerts.poll(0.5)
            if msg is None:
                if not assigned.is_set():
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
                continue
            idle_since = time.monotonic()
            if msg.error() is not None:
                log.warning("notify: consumer error %s", msg.error())
                continue
            outcome = notifier.handle(msg)
            if outcome == "interrupted":
                break  # not committed: delivered again after a restart
            notifier.outcomes.labels(outcome).inc()
            log.info("notify: alert at offset %d of partition %d: %s", msg.offset(), msg.partition(), outcome)
            alerts.commit(msg, asynchronous=False)
    finally:
        alerts.close()
        notifier.close()
        server.shutdown()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phq notify", description="Deliver alerts to the teams' webhooks.")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS",
                        help="exit after SECONDS without a new alert (default: run until stopped)")
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    return run(settings, settings, args.idle_exit)
