"""`phq notify`: delivers alerts (topic phq9.alerts) to the webhooks of the users' care teams.

Its own consumer group, so it never slows scoring. Two halves, joined by the Postgres outbox
`alert_outbox`, so that nothing pending is lost when the process stops:
  intake (main thread), for each record of phq9.alerts:
    1. queue a delivery of the *stored* alert with that id and user to the user's team webhook
       (no such stored alert - erased, or a record nobody stored - or no team or webhook: none);
    2. commit that, then the record's offset (a crash repeats step 1, which is idempotent).
  delivery, one thread per team with due deliveries (a dead receiver holds up only its own team):
    3. lease the team's oldest due delivery; build the body from the stored rows (store.WEBHOOK_FIELDS);
    4. POST it signed, log the attempt, and mark it delivered; or retry it with backoff until
       PHQ_WEBHOOK_RETRY_HORIZON_S after it was queued, then mark it failed (counted, listed by
       `phq team deliveries --failed`, sent again by `phq team redeliver`).
At least once: a crash between a receiver's 2xx and step 4's commit sends that alert again, with the
same X-PHQ-Delivery-Id (receivers dedupe on it, or on the alert id).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
from confluent_kafka import Consumer, Message
from prometheus_client import CollectorRegistry, Counter, start_http_server
from sqlalchemy.exc import OperationalError

from care import store
from care.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature, url_problem, verify  # noqa: F401
from phq import topics
from phq.db import engine as make_engine
from phq.settings import Settings, get_settings
from phq.telemetry import setup_logging

log = logging.getLogger("phq.notify")

RETRYABLE = {408, 425, 429}
MAX_BIGINT = 2**63 - 1
POLL_S = 0.2  # how often due deliveries are looked for


def backoff_delay(attempt: int, care: Settings) -> float:
    """Seconds before the retry that follows attempt number `attempt` (1, 2, ...): doubling, capped."""
    return min(care.webhook_max_backoff_s, care.webhook_backoff_s * 2 ** (attempt - 1))


def next_state(status: int | None, attempt: int, horizon_end: datetime, now: datetime,
               care: Settings) -> tuple[str, float | None]:
    """(state, seconds to the next attempt) after one POST: delivered on 2xx; failed on a 4xx that a
    retry cannot fix, or once the horizon has passed; else pending, retried no later than the horizon."""
    if status is not None and 200 <= status < 300:
        return "delivered", None
    if status is not None and 400 <= status < 500 and status not in RETRYABLE:
        return "failed", None
    left = (horizon_end - now).total_seconds()
    if left <= 0:
        return "failed", None
    return "pending", min(backoff_delay(attempt, care), left)


def to_json(fields: dict) -> bytes:
    return json.dumps({k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}).encode()


class Notifier:
    def __init__(self, settings: Settings, registry: CollectorRegistry, allow_http: bool = False):
        self.settings, self.allow_http = settings, allow_http
        self.engine = make_engine(settings.db_url("notify"), pool_size=4, max_overflow=16)
        self.http = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
        self.lease_s = 2 * settings.webhook_timeout_s + 5  # a crashed process's delivery is retried after it
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.running: dict[int, threading.Thread] = {}  # team -> its delivery thread
        self.paused: dict[int, float] = {}  # team -> monotonic time its receiver may be tried again
        self.last_activity = time.monotonic()
        self.alerts = Counter("phq_notify_alerts", "Alert records read, by outcome", ["outcome"], registry=registry)
        self.attempts = Counter("phq_notify_attempts", "Webhook POSTs by result", ["result"], registry=registry)
        self.deliveries = Counter("phq_notify_deliveries", "Deliveries finished, by state (failed: dead-lettered)",
                                  ["state"], registry=registry)

    # ---------------------------------------------------------------- intake (steps 1-2)

    def intake(self, msg: Message) -> str:
        """Step 1 for one record; returns what happened to it."""
        try:
            alert = json.loads(msg.value())
            alert_id, user_id = alert["id"], alert["user_id"]
            if type(alert_id) is not int or not 1 <= alert_id <= MAX_BIGINT or not isinstance(user_id, str):
                raise TypeError("id or user_id")
        except (ValueError, KeyError, TypeError):
            return "malformed"  # a record no worker wrote: nothing of it is sent
        self.last_activity = time.monotonic()
        while True:
            try:
                with self.engine.begin() as conn:
                    return "queued" if store.enqueue_delivery(conn, alert_id, user_id) else "not_queued"
            except OperationalError:
                log.warning("notify: Postgres unavailable; retrying")
                if self.stop.wait(2):
                    return "interrupted"

    # ---------------------------------------------------------------- delivery (steps 3-4)

    def dispatch_forever(self) -> None:
        """Start a delivery thread for every team with due deliveries that has none running."""
        while not self.stop.is_set():
            try:
                with self.engine.connect() as conn:
                    teams = store.due_teams(conn)
            except OperationalError:
                log.warning("notify: Postgres unavailable; retrying")
                self.stop.wait(2)
                continue
            now = time.monotonic()
            with self.lock:
                for team in teams:
                    if team not in self.running and self.paused.get(team, 0) <= now:
                        thread = threading.Thread(target=self._team, args=(team,), name=f"team-{team}", daemon=True)
                        self.running[team] = thread
                        thread.start()
            self.stop.wait(POLL_S)

    def _team(self, team: int) -> None:
        """One team's due deliveries, oldest first, until none is due or its receiver fails."""
        try:
            while not self.stop.is_set():
                with self.engine.begin() as conn:
                    delivery = store.claim_delivery(conn, team, self.lease_s)
                if delivery is None:
                    return
                pause = self.attempt(delivery)
                if pause is not None:
                    self.paused[team] = time.monotonic() + pause
                    return
        except OperationalError:
            log.warning("notify: Postgres unavailable during a delivery; its lease runs out and it is retried")
            self.paused[team] = time.monotonic() + 2
        except Exception:  # noqa: BLE001 - one team's failure must not end delivery for the others
            log.exception("notify: delivery for team %d failed; its lease runs out and it is retried", team)
            self.paused[team] = time.monotonic() + self.settings.webhook_max_backoff_s
        finally:
            with self.lock:
                self.running.pop(team, None)

    def attempt(self, delivery: dict) -> float | None:
        """Step 4 for one leased delivery; returns how long to leave the team's receiver alone after a failure."""
        self.last_activity = time.monotonic()
        with self.engine.connect() as conn:
            target = store.delivery_target(conn, delivery["alert_id"], delivery["team_id"])
        if target is None:
            with self.engine.begin() as conn:
                store.cancel_delivery(conn, delivery["id"], "alert erased, user no longer in the team, or no webhook")
            self.deliveries.labels("cancelled").inc()
            return None
        fields, hook = target
        problem = url_problem(hook["url"], self.allow_http)
        if problem is not None:
            status, error = None, problem
            state, delay = "failed", None
        else:
            status, error = self._post(hook, to_json(fields), delivery)
            horizon_end = delivery["horizon_from"] + timedelta(seconds=self.settings.webhook_retry_horizon_s)
            state, delay = next_state(status, delivery["attempts"] + 1, horizon_end, datetime.now(timezone.utc),
                                      self.settings)
        outcome = {"delivered": "delivered", "failed": "failed"}.get(state, "retrying")
        with self.engine.begin() as conn:
            store.record_attempt(conn, delivery, fields["user_id"], outcome, state, status, error, delay)
        if state != "pending":
            self.deliveries.labels(state).inc()
        log.info("notify: delivery %d (alert %d, team %d) attempt %d: %s", delivery["id"], delivery["alert_id"],
                 delivery["team_id"], delivery["attempts"] + 1, outcome)
        return delay if state == "pending" else None

    def _post(self, hook: dict, body: bytes, delivery: dict) -> tuple[int | None, str | None]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(hook["secret"], timestamp, body),
            "X-PHQ-Alert-Id": str(delivery["alert_id"]),
            "X-PHQ-Delivery-Id": str(delivery["id"]),
            "X-PHQ-Attempt": str(delivery["attempts"] + 1),
            "User-Agent": "phq-notify/2",
        }
        try:
            response = self.http.post(hook["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.attempts.labels("error").inc()
            return None, f"{type(exc).__name__}: {exc}".replace(hook["url"], "<webhook URL>")[:300]
        self.attempts.labels(str(response.status_code)).inc()
        return response.status_code, None

    def idle_for(self) -> float:
        with self.lock:
            busy = bool(self.running)
        return 0.0 if busy else time.monotonic() - self.last_activity

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            threads = list(self.running.values())
        for thread in threads:  # each finishes (and records) the POST it is in
            thread.join(self.settings.webhook_timeout_s + 5)
        self.http.close()
        self.engine.dispose()


def consumer(settings: Settings, assigned: threading.Event) -> Consumer:
    c = Consumer({
        "bootstrap.servers": settings.kafka(),
        "group.id": settings.topic_prefix + settings.notify_group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "log_level": 3,
    })
    c.subscribe([settings.topic(topics.ALERTS)], on_assign=lambda *_: assigned.set())
    return c


def run(settings: Settings, idle_exit_s: float | None = None, allow_http: bool = False) -> int:
    registry = CollectorRegistry()
    server, _ = start_http_server(settings.metrics_port, registry=registry)
    notifier = Notifier(settings, registry, allow_http)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: notifier.stop.set())
    assigned = threading.Event()  # idle time counts only once the group has given us partitions
    alerts = consumer(settings, assigned)
    dispatcher = threading.Thread(target=notifier.dispatch_forever, name="dispatch", daemon=True)
    dispatcher.start()
    log.info("notify: consuming %s; metrics on port %d", settings.topic(topics.ALERTS), server.server_port)
    try:
        while not notifier.stop.is_set():
            msg = alerts.poll(0.5)
            if msg is None:
                if not assigned.is_set():
                    notifier.last_activity = time.monotonic()
                elif idle_exit_s is not None and notifier.idle_for() > idle_exit_s:
                    break
                continue
            if msg.error() is not None:
                log.warning("notify: consumer error %s", msg.error())
                continue
            outcome = notifier.intake(msg)
            if outcome == "interrupted":
                break  # not committed: read again after a restart
            notifier.alerts.labels(outcome).inc()
            alerts.commit(msg, asynchronous=False)
    finally:
        notifier.close()
        dispatcher.join(5)
        alerts.close()
        server.shutdown()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phq notify", description="Deliver alerts to the teams' webhooks.")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS",
                        help="exit after SECONDS without a new alert or a delivery attempt (default: run until stopped)")
    parser.add_argument("--allow-http", action="store_true",
                        help="also POST to http:// webhooks on a loopback host (local development only)")
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines would log webhook URLs
    return run(settings, args.idle_exit, args.allow_http)
