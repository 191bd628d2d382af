"""`phq score-worker`: scoring requests in; scores, change events and their topics out.

Two threads: the poll thread only talks to the consumer (so a long model call never breaks
max.poll.interval.ms); the scoring thread runs rounds, each following `ScoringWorker.run_round`,
the one place the delivery protocol is written down.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from phq import topics
from phq.changes import detect_changes
from phq.db import engine as make_engine
from phq.erasures import erased_at, lock_user
from phq.models import ScoringRequest
from phq.settings import Settings
from phq.telemetry import KAFKA_LOG, serve_metrics, setup_logging
from scoring import calibration
from scoring.evidence import evidence_rows, purge_evidence, store_evidence
from phq.txn import read_erasures_with_retry

log = logging.getLogger("phq.score_worker")

REQUESTS = Counter("phq_worker_requests_total", "Scoring requests consumed, by outcome", ["outcome"])
for _outcome in ("scored", "replayed", "erased", "malformed"):
    REQUESTS.labels(_outcome)
ROUND_SIZE = Histogram("phq_worker_round_requests", "Requests per scoring round",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
TOKEN_FILL = Histogram("phq_worker_round_token_fill", "Tokens of a round as a share of PHQ_BATCH_TOKEN_BUDGET",
                       buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.5))
SCORING_SECONDS = Histogram("phq_worker_scoring_seconds", "Model time per round (forward passes)")
END_TO_ROW_SECONDS = Histogram("phq_worker_request_to_row_seconds",
                               "From the stream processor emitting a request (its session's end) to the committed row",
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
DB_RETRIES = Counter("phq_worker_db_retries_total", "Postgres transactions retried after a connection error")
IN_FLIGHT = Gauge("phq_worker_in_flight", "Requests consumed and not yet committed")
LAG = Gauge("phq_worker_consumer_lag", "Requests not yet consumed, by partition", ["partition"])
REBALANCES = Counter("phq_worker_assignments_total", "Partition assignments received (rebalances)")


EVIDENCE_PURGE_INTERVAL_S = 3600


def group_id(settings: Settings) -> str:
    return settings.topic("phq-score-worker")


@dataclass
class Item:
    """One consumed request (or a record to skip) with the coordinates its offset commit needs."""

    partition: int
    offset: int
    request: ScoringRequest | None  # None: nothing to score (malformed or erased); only its offset counts
    generation: int = 0  # the rebalance generation it was consumed in
    rendered: object = None  # the model input, once the scoring thread has rendered it


# ------------------------------------------------------------------------------------ Postgres

_INSERT_SCORE = text("""
    INSERT INTO phq9_scores (request_id, user_id, scored_at, window_start, window_end, score, severity,
        model_version, n_sessions, n_user_turns, n_tokens, trigger_session_id, items, score_low, score_high)
    VALUES (:request_id, :user_id, :scored_at, :window_start, :window_end, :score, :severity,
        :model_version, :n_sessions, :n_user_turns, :n_tokens, :trigger_session_id, :items, :score_low, :score_high)
    ON CONFLICT (request_id, model_version) DO NOTHING
    RETURNING *""")
_EXISTING_SCORE = text("SELECT * FROM phq9_scores WHERE request_id = :request_id AND model_version = :model_version")
_PREDECESSOR = text("""
    SELECT score, severity FROM phq9_scores
    WHERE user_id = :user_id AND model_version = :model_version AND id <> :id
      AND (scored_at, request_id) < (:scored_at, :request_id)
    ORDER BY scored_at DESC, request_id DESC LIMIT 1""")
_INSERT_CHANGE = text("""
    INSERT INTO symptom_change_events (user_id, score_id, detected_at, kind, direction, previous_score,
        current_score, delta, previous_severity, current_severity, noise_bound)
    VALUES (:user_id, :score_id, now(), :kind, :direction, :previous_score, :current_score, :delta,
        :previous_severity, :current_severity, :noise_bound)
    ON CONFLICT (score_id, kind) DO NOTHING""")
_CHANGES_OF = text("SELECT * FROM symptom_change_events WHERE score_id = :score_id ORDER BY kind")


def score_row(request: ScoringRequest, output, model_version: str) -> dict:
    items = getattr(output, "items", None)
    return {
        "request_id": request.request_id,
        "user_id": request.user_id,
        "scored_at": request.trigger_ts,
        "window_start": output.window_start or request.trigger_ts,
        "window_end": request.trigger_ts,
        "score": output.score,
        "severity": output.severity,
        "model_version": model_version,
        "n_sessions": output.n_sessions,
        "n_user_turns": output.n_user_turns,
        "n_tokens": output.n_tokens,
        "trigger_session_id": request.trigger_session_id,
        "items": list(items) if items is not None else None,
        "score_low": getattr(output, "score_low", None),
        "score_high": getattr(output, "score_high", None),
    }


def store_scores(conn, rows: list[dict], settings: Settings, *, evidence: dict[str, list[dict]] | None = None,
                 noise_bound: float | None = None) -> list[tuple[dict, list[dict]]]:
    """Insert scores and their change events in one open transaction, idempotently.

    Returns every row with its change events, new or already there, so outputs can be (re)published.
    Rows go in (user, scored_at) order under a per-user lock, so each is compared with the score
    before it by scored_at even while a rebalance lets two workers touch one user. The same lock
    serialises them with `phq erase`: a row of a user erased at or after its scored_at is not written
    (nor returned, so never published) (CONTRACT v2 section 5). A new row's evidence (`evidence` by
    request_id) goes in with it; change events follow the v2 rule when the model has a calibrated
    `noise_bound`.
    """
    out = []
    for row in sorted(rows, key=lambda r: (r["user_id"], r["scored_at"], r["request_id"])):
        lock_user(conn, row["user_id"])
        if _erased_since(conn, row):
            REQUESTS.labels("erased").inc()
            continue
        new = conn.execute(_INSERT_SCORE, row).mappings().first()
        if new is None:
            stored = dict(conn.execute(_EXISTING_SCORE, row).mappings().one())
        else:
            stored = dict(new)
            store_evidence(conn, stored["id"], (evidence or {}).get(row["request_id"], []))
            _insert_changes(conn, stored, settings, noise_bound)
        changes = [dict(c) for c in conn.execute(_CHANGES_OF, {"score_id": stored["id"]}).mappings()]
        out.append((stored, changes))
    return out


def _erased_since(conn, row: dict) -> bool:
    """Under lock_user: was the row's user erased at or after the row's data (its scored_at)?"""
    when = erased_at(conn, row["user_id"])
    return when is not None and row["scored_at"] <= when


def _insert_changes(conn, stored: dict, settings: Settings, noise_bound: float | None = None) -> None:
    previous = conn.execute(_PREDECESSOR, stored).mappings().first()
    if previous is None:
        return
    for change in detect_changes(previous["score"], stored["score"], reliable_change=settings.reliable_change,
                                 clinical_threshold=settings.clinical_threshold, noise_bound=noise_bound):
        conn.execute(_INSERT_CHANGE, {"user_id": stored["user_id"], "score_id": stored["id"], **change.__dict__})


def to_json(row: dict) -> bytes:
    return json.dumps({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}).encode()


# ------------------------------------------------------------------------------------ the worker


class ScoringWorker:
    def __init__(self, settings: Settings, scorer):
        self.settings = settings
        self.scorer = scorer
        self.engine = make_engine(settings.db_url("worker"))  # its own role: README, security
        self.source = settings.topic(topics.SCORING_REQUESTS)
        self.scores_topic = settings.topic(topics.SCORES)
        self.alerts_topic = settings.topic(topics.ALERTS)
        self.inbox: deque[Item] = deque()
        self.cond = threading.Condition()
        self.generation = 0  # bumped by every rebalance; a round from an older one is dropped, not committed
        self.paused = False
        self.running = True
        self.failure: BaseException | None = None
        self.to_commit: dict[tuple[int, int], int] = {}  # (partition, generation) -> next offset, from rounds
        self.next_purge = 0.0  # monotonic time of the next evidence purge
        self.erasures = read_erasures_with_retry(settings)
        self.consumer = Consumer({
            "bootstrap.servers": settings.kafka(),
            "group.id": group_id(settings),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "max.poll.interval.ms": settings.worker_max_poll_interval_ms,
            "session.timeout.ms": min(settings.session_timeout_ms, settings.worker_max_poll_interval_ms),
            "log_level": 3,
            "logger": KAFKA_LOG,
            "on_commit": _on_commit,
        })
        self.producer = Producer(self._producer_config())

    def _producer_config(self) -> dict:
        return {
            "bootstrap.servers": self.settings.kafka(),
            "enable.idempotence": True,  # no duplicates from the producer's own retries
            "message.timeout.ms": 120000,  # past a broker restart; then step 3 sends again
            "linger.ms": 5,
            "log_level": 3,
            "logger": KAFKA_LOG,
        }

    # ---------------------------------------------------------------- poll thread

    def run(self) -> None:
        self.consumer.subscribe([self.source], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        scorer_thread = threading.Thread(target=self._scoring_loop, name="scoring", daemon=True)
        scorer_thread.start()
        log.info("scoring worker started", extra={"model_version": self.scorer.model_version})
        try:
            while self.running and scorer_thread.is_alive():
                faulthandler.dump_traceback_later(120, exit=False)  # stuck 2 minutes: stacks to the log
                msg = self.consumer.poll(0.1)
                if msg is not None:
                    self._receive(msg)
                self._commit_offsets()
                self._drop_erased(self.erasures.poll_new())
                self._backpressure()
                _sample_lag(self.consumer)
        finally:
            faulthandler.cancel_dump_traceback_later()
            self.running = False
            with self.cond:
                self.cond.notify_all()
            scorer_thread.join(timeout=120)
            self._commit_offsets(asynchronous=False)
            self.consumer.close()
            self.erasures.close()
            log.info("scoring worker stopped")

    def _receive(self, msg) -> None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", extra={"error": str(msg.error())})
            return
        request = None
        try:
            request = ScoringRequest.model_validate_json(msg.value())
        except ValueError:
            REQUESTS.labels("malformed").inc()
            log.error("malformed scoring request skipped", extra={"partition": msg.partition(), "offset": msg.offset()})
        if request is not None and self.erasures.is_erased(request.user_id, request.trigger_ts):
            REQUESTS.labels("erased").inc()
            request = None
        with self.cond:
            self.inbox.append(Item(msg.partition(), msg.offset(), request, self.generation))
            IN_FLIGHT.set(len(self.inbox))
            self.cond.notify()

    def _drop_erased(self, new: list) -> None:
        """Requests waiting in the inbox of users just erased are not scored (their offsets still commit)."""
        if not new:
            return
        with self.cond:
            for item in self.inbox:
                if item.request is not None and self.erasures.is_erased(item.request.user_id, item.request.trigger_ts):
                    REQUESTS.labels("erased").inc()
                    item.request, item.rendered = None, None

    def _backpressure(self) -> None:
        """Pause fetching while too many requests wait (memory stays bounded); resume at half."""
        n, limit = len(self.inbox), self.settings.worker_max_in_flight
        if not self.paused and n >= limit:
            self.consumer.pause(self.consumer.assignment())
            self.paused = True
        elif self.paused and n <= limit // 2:
            self.consumer.resume(self.consumer.assignment())
            self.paused = False

    def _on_assign(self, consumer, partitions) -> None:
        REBALANCES.inc()
        self.generation += 1
        if self.paused:
            consumer.pause(partitions)
        log.info("partitions assigned", extra={"partitions": [tp.partition for tp in partitions]})

    def _on_revoke(self, consumer, partitions) -> None:
        """Drop what waits for revoked partitions; a round in progress sees the new generation and drops
        itself (never blocks here: the rebalance must complete for its offsets to commit or fail)."""
        gone = {tp.partition for tp in partitions}
        self.generation += 1
        with self.cond:
            kept = [item for item in self.inbox if item.partition not in gone]
            self.inbox.clear()
            self.inbox.extend(kept)
            IN_FLIGHT.set(len(self.inbox))
        log.info("partitions revoked", extra={"partitions": sorted(gone)})

    # ---------------------------------------------------------------- scoring thread

    def _scoring_loop(self) -> None:
        try:
            while self.running:
                self._purge_evidence()
                items = self._take_round()
                if items:
                    self.run_round(items)
        except BaseException as exc:
            self.failure = exc  # the poll thread stops and main() exits non-zero; a restart redoes the round
            log.exception("scoring thread failed")

    def _purge_evidence(self) -> None:
        """Hourly (and at start): delete evidence excerpts older than PHQ_EVIDENCE_RETENTION_DAYS."""
        if time.monotonic() < self.next_purge:
            return
        self.next_purge = time.monotonic() + EVIDENCE_PURGE_INTERVAL_S
        try:
            with self.engine.begin() as conn:
                n = purge_evidence(conn, self.settings.evidence_retention_days)
            if n:
                log.info("expired evidence excerpts deleted", extra={"rows": n})
        except DBAPIError as exc:  # retried at the next interval; scoring goes on
            log.warning("evidence purge failed", extra={"error": type(exc.orig).__name__})

    def _take_round(self) -> list[Item]:
        """A prefix of the inbox, rendered: up to PHQ_BATCH_TOKEN_BUDGET real tokens, or whatever came
        within PHQ_BATCH_MAX_WAIT_MS of the first request (so a lone request never waits longer)."""
        with self.cond:
            if not self.inbox:
                self.cond.wait(0.2)
                if not self.inbox:
                    return []
        deadline = time.monotonic() + self.settings.batch_max_wait_ms / 1000
        items, tokens = [], 0
        while self.running:
            with self.cond:
                if not self.inbox:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
                    continue
                item = self.inbox.popleft()
            n = self._render(item)
            if items and tokens + n > self.settings.batch_token_budget:
                with self.cond:
                    self.inbox.appendleft(item)  # opens the next round, already rendered
                break
            items.append(item)
            tokens += n
        return items

    def _render(self, item: Item) -> int:
        if item.request is not None and item.rendered is None:
            item.rendered = self.scorer.render([item.request.turns])[0]
        return item.rendered.n_tokens if item.rendered is not None else 0

    def run_round(self, items: list[Item]) -> None:
        """One round: consumption at least once, effects exactly once. The order, which recovery relies on:

        1. Score the round's requests with the model (nothing written yet; a crash here redoes it).
        2. One Postgres transaction: each score and its change events, idempotent on
           (request_id, model_version) and (score_id, kind). Retried with backoff while Postgres is down.
        3. Produce every row of step 2 (new or found there) to phq9.scores and its change events to
           phq9.alerts, and wait until the broker has them all.
        4. Commit the round's offsets (handed to the poll thread, the consumer's only user).
        A crash before 4 redelivers the round: step 2 finds its rows and writes nothing twice; step 3
        publishes them again, identical (same `id`), so topic readers dedupe on `id`. Requests consumed
        before a rebalance are left out of 3 and 4: the partitions' owner gets them again.
        """
        scored = [item for item in items if item.request is not None]
        requests = [item.request for item in scored]
        outputs = self._score([item.rendered for item in scored])
        rows = [score_row(r, o, self.scorer.model_version) for r, o in zip(requests, outputs)]
        evidence = {r.request_id: evidence_rows(o, self.settings.evidence_retention_days) for r, o in zip(requests, outputs)}
        stored = self._store(rows, evidence) if rows else []
        self._publish(stored, items)
        now = datetime.now(timezone.utc)
        for request in requests:
            if request.emitted_at is not None:
                END_TO_ROW_SECONDS.observe(max(0.0, (now - request.emitted_at).total_seconds()))
        REQUESTS.labels("scored").inc(len(requests))
        with self.cond:
            IN_FLIGHT.set(len(self.inbox))

    def _score(self, rendered: list) -> list:
        if not rendered:
            return []
        started = time.monotonic()
        outputs = self.scorer.score_rendered(rendered)
        SCORING_SECONDS.observe(time.monotonic() - started)
        ROUND_SIZE.observe(len(rendered))
        TOKEN_FILL.observe(sum(o.n_tokens for o in outputs) / self.settings.batch_token_budget)
        return outputs

    def _store(self, rows: list[dict], evidence: dict[str, list[dict]]) -> list[tuple[dict, list[dict]]]:
        bound = calibration.change_bound(getattr(getattr(self.scorer, "meta", None), "calibration", None))
        return self._in_transaction(lambda conn: store_scores(conn, rows, self.settings, evidence=evidence,
                                                               noise_bound=bound))

    def _in_transaction(self, work):
        """work(conn) in one Postgres transaction, retried with backoff while Postgres is unreachable."""
        delay = 0.2
        while True:
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if not (exc.connection_invalidated or _is_connection_error(exc)) or not self.running:
                    raise
                DB_RETRIES.inc()
                log.warning("Postgres unavailable; retrying", extra={"delay_s": delay, "error": type(exc.orig).__name__})
                time.sleep(delay)
                delay = min(delay * 2, self.settings.worker_db_retry_max_s)

    def _publish(self, stored: list[tuple[dict, list[dict]]], items: list[Item]) -> None:
        """Steps 3 and 4 of run_round, for the requests still ours (consumed in the current generation)."""
        live = [item for item in items if item.generation == self.generation]
        if len(live) < len(items):
            log.info("requests left to redelivery after a rebalance", extra={"n": len(items) - len(live)})
        live_ids = {item.request.request_id for item in live if item.request is not None}
        self._produce_outputs(list(_unique_rows(stored, live_ids)))
        with self.cond:  # step 4 happens on the poll thread, the consumer's only user
            for item in live:
                key = (item.partition, item.generation)
                self.to_commit[key] = max(self.to_commit.get(key, 0), item.offset + 1)

    def _produce_outputs(self, rows: list[tuple[dict, list[dict]]]) -> None:
        """Step 3: every row and change event acknowledged by the broker (re-sent, identical, on failure)."""
        failed: list = []

        def on_delivery(err, _msg):
            if err is not None:
                failed.append(err)

        def send(conn):
            # under each user's lock, so `phq erase` cannot slip in between this check and the broker's
            # acknowledgement: nothing of an erased user is published after its erasure
            for row, changes in rows:
                lock_user(conn, row["user_id"])
                if _erased_since(conn, row):
                    continue
                key = row["user_id"].encode()
                self.producer.produce(self.scores_topic, key=key, value=to_json(row), on_delivery=on_delivery)
                for change in changes:
                    self.producer.produce(self.alerts_topic, key=key, value=to_json(change), on_delivery=on_delivery)
            while self.producer.flush(5) > 0:
                log.warning("outputs not acknowledged yet; waiting for the broker")

        rows = sorted(rows, key=lambda rc: (rc[0]["user_id"], rc[0]["scored_at"], rc[0]["request_id"]))
        for attempt in range(1000):
            failed.clear()
            if rows:
                self._in_transaction(send)
            if not failed:
                return
            log.warning("outputs failed; sending them again", extra={"error": str(failed[0]), "attempt": attempt})
            time.sleep(min(5.0, 0.5 * (attempt + 1)))

    def _commit_offsets(self, asynchronous: bool = True) -> None:
        """Commit what rounds finished (poll thread); offsets of an older generation are not ours to commit."""
        with self.cond:
            due, self.to_commit = self.to_commit, {}
        tps = [TopicPartition(self.source, p, o) for (p, gen), o in due.items() if gen == self.generation]
        if not tps:
            return
        try:
            self.consumer.commit(offsets=tps, asynchronous=asynchronous)
        except KafkaException as exc:  # revoked meanwhile: the new owner redoes these (idempotently)
            log.warning("offset commit failed; the requests will be redelivered", extra={"error": str(exc.args[0])})

    def stop(self, *_args) -> None:
        self.running = False


def _unique_rows(stored: list[tuple[dict, list[dict]]], request_ids: set[str]):
    """Each stored row of these requests once (a redelivered request may sit twice in one round)."""
    seen = set()
    for row, changes in stored:
        if row["request_id"] in request_ids and row["id"] not in seen:
            seen.add(row["id"])
            yield row, changes


def _on_commit(err, partitions) -> None:
    failed = [tp.partition for tp in partitions or [] if tp.error]
    if err is not None or failed:
        log.warning("offset commit failed; those requests may be redelivered (idempotent)",
                    extra={"error": str(err), "partitions": failed})


def _is_connection_error(exc: DBAPIError) -> bool:
    import psycopg

    return isinstance(exc.orig, (psycopg.OperationalError, psycopg.InterfaceError))


_next_lag_sample = 0.0


def _sample_lag(consumer) -> None:
    global _next_lag_sample
    if time.monotonic() < _next_lag_sample:
        return
    _next_lag_sample = time.monotonic() + 5
    try:
        for tp in consumer.position(consumer.assignment()):
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high is not None and high >= 0 and tp.offset >= 0:
                LAG.labels(str(tp.partition)).set(max(0, high - tp.offset))
    except KafkaException:
        pass


def load_scorer(settings: Settings):
    if settings.worker_scorer:
        module, _, name = settings.worker_scorer.partition(":")
        return getattr(importlib.import_module(module), name)(settings)
    from scoring.engine import Scorer

    return Scorer.from_settings(settings.model_dir, settings.model_path, settings.backend)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="phq score-worker", description="the scoring worker (settings: PHQ_ env vars)").parse_args(argv)
    settings = Settings()
    setup_logging(settings.log_level)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints every thread's stack (diagnosis)
    port = serve_metrics(settings.metrics_port)
    worker = ScoringWorker(settings, load_scorer(settings))
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    log.info("metrics served", extra={"port": port})
    worker.run()
    return 1 if worker.failure else 0
