"""`phq stream`: chat events in, transcripts kept, scoring requests out, one Kafka transaction per batch.

The delivery protocol lives in `StreamProcessor.run_batch` (steps 1-6 there); everything that
decides what an event does lives in stream.transcripts. Built on confluent-kafka with our own
changelogged state instead of Faust: stream/README.md says why.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from phq import topics
from phq.events import InvalidEvent, parse_event
from phq.settings import Settings
from phq.slots import claim_slot, transactional_id
from phq.telemetry import KAFKA_LOG, serve_metrics, setup_logging
from phq.txn import commit_transaction, read_erasures_with_retry
from stream import metrics
from stream.changelog import changelog_topic, ensure_changelog, restore
from stream.store import PartitionStore
from stream.transcripts import Outcome, Rules, apply_event, drop_user, idle_trigger

log = logging.getLogger("phq.stream")


def group_id(settings: Settings) -> str:
    return settings.topic("phq-stream")


@dataclass
class Batch:
    """What one transaction carries, gathered before it commits."""

    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset to consume
    first: dict[int, int] = field(default_factory=dict)  # partition -> first offset (to rewind on abort)
    requests: int = 0


class StreamProcessor:
    def __init__(self, settings: Settings, clock=time.time):
        self.settings = settings
        self.clock = clock
        self.rules = Rules(settings.window_days, settings.transcript_max_bytes, settings.session_idle_s)
        self.source = settings.topic(topics.CHAT_EVENTS)
        self.changelog = changelog_topic(settings)
        self.requests_topic = settings.topic(topics.SCORING_REQUESTS)
        self.dlq = settings.topic(topics.CHAT_EVENTS_DLQ)
        self.slot, self.state_dir, self._lock = claim_slot(Path(settings.stream_state_dir) / group_id(settings))
        self.stores: dict[int, PartitionStore] = {}
        self.open_sessions: dict[int, dict[tuple[str, str], float]] = {}
        self.erasures = read_erasures_with_retry(settings)
        self._unswept: set[str] = set()  # erased users whose state may still be in an assigned store
        self._sweeping: set[str] = set()
        self._next_idle_check = 0.0
        self._changelog_offsets: dict[int, int] = {}
        self._abandoned: list[Producer] = []  # producers stuck in a librdkafka call (see _send_offsets)
        self.running = True
        self.producer = Producer(self._producer_config())
        self.consumer = Consumer(self._consumer_config())

    # ---------------------------------------------------------------- clients

    def _producer_config(self) -> dict:
        s = self.settings
        return {
            "bootstrap.servers": s.kafka(),
            "transactional.id": transactional_id(group_id(s), self.slot),
            "transaction.timeout.ms": s.stream_transaction_timeout_ms,
            "linger.ms": 5,
            "message.max.bytes": 2 * 1024 * 1024,
            "compression.type": "lz4",
            "log_level": 3,
            "logger": KAFKA_LOG,
        }

    def _consumer_config(self) -> dict:
        return {
            "bootstrap.servers": self.settings.kafka(),
            "group.id": group_id(self.settings),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "max.poll.interval.ms": 300000,
            "session.timeout.ms": self.settings.session_timeout_ms,
            "log_level": 3,
            "logger": KAFKA_LOG,
        }

    def start(self) -> None:
        ensure_changelog(self.settings)
        self.producer.init_transactions(60)
        self.consumer.subscribe([self.source], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        log.info("stream processor started", extra={"slot": self.slot, "group": group_id(self.settings)})

    # ---------------------------------------------------------------- rebalances

    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            store = PartitionStore(tp.partition, self._store_path(tp.partition))
            n = restore(self.settings, self.changelog, store)
            self.stores[tp.partition] = store
            self.open_sessions[tp.partition] = open_sessions_of(store)
            metrics.RESTORED.inc(n)
            log.info("partition assigned", extra={"partition": tp.partition, "restored_records": n,
                                                  "open_sessions": len(self.open_sessions[tp.partition])})
        self._unswept |= set(self.erasures.erased)

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            store = self.stores.pop(tp.partition, None)
            self.open_sessions.pop(tp.partition, None)
            if store is not None:
                store.close()
            log.info("partition revoked", extra={"partition": tp.partition})

    def _store_path(self, partition: int) -> Path | None:
        if self.settings.stream_store == "memory":
            return None
        return self.state_dir / f"p{partition}"

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        self.start()
        try:
            while self.running:
                # a loop stuck for 2 minutes prints every thread's stack to the log (diagnosis)
                faulthandler.dump_traceback_later(120, exit=False)
                msgs = self.consumer.consume(self.settings.stream_batch_max, self.settings.stream_batch_wait_ms / 1000)
                self.run_batch(msgs)
                metrics.observe_lag(self.consumer, self.stores)
        finally:
            faulthandler.cancel_dump_traceback_later()
            self.close()

    def run_batch(self, msgs: list) -> None:
        """One batch, exactly once. The order, which recovery relies on:

        1. Events were consumed outside any transaction, so a rebalance never meets an open one.
        2. Begin a Kafka transaction.
        3. Each event: bad -> DLQ (original bytes and headers); duplicate or erased -> counted, dropped;
           valid -> its writes go to the partition's overlay, its scoring request (if it ends a session)
           is produced. Then idle sessions are ended and erased users' state dropped, the same way.
        4. Produce each partition's overlay (last write per key) to the changelog, on that partition.
        5. Send the consumed offsets to the transaction and commit it: changelog records, requests,
           DLQ records and input offsets become visible together, or not at all.
        6. Only now write the overlays to the local stores, with the changelog offset they reached.
        On failure before 6: abort, drop the overlays, rewind the consumer to the batch's first offsets.
        """
        self._refresh_erasures()
        idle_due = self.clock() >= self._next_idle_check
        if not msgs and not idle_due and not self._unswept:
            return
        batch = Batch()
        started = time.monotonic()
        try:
            self.producer.begin_transaction()
            for msg in msgs:
                self._handle(msg, batch)
            if idle_due:
                self._end_idle_sessions(batch)
            self._sweep_erasures()
            self._produce_changelog()
            if batch.offsets:
                offsets = [TopicPartition(self.source, p, o) for p, o in batch.offsets.items()]
                self._send_offsets(offsets)
            commit_transaction(self.producer, self._kafka_timeout_s())
        except (KafkaException, StuckCall) as exc:
            self._abort(batch, exc)
            return
        for partition, store in self.stores.items():
            store.commit(self._changelog_offsets.pop(partition, None))
        self._changelog_offsets.clear()
        metrics.TRANSACTION_SECONDS.observe(time.monotonic() - started)
        metrics.REQUESTS.inc(batch.requests)

    def _handle(self, msg, batch: Batch) -> None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", extra={"error": str(msg.error())})
            return
        partition = msg.partition()
        store = self.stores.get(partition)
        if store is None:  # a consumed event of a partition we do not own: leave it to its owner
            log.error("event from an unassigned partition skipped", extra={"partition": partition})
            return
        batch.first.setdefault(partition, msg.offset())
        batch.offsets[partition] = msg.offset() + 1
        try:
            event = parse_event(msg.value(), max_clock_skew_s=self.settings.max_clock_skew_s,
                                max_event_bytes=self.settings.max_event_bytes)
        except InvalidEvent as exc:
            self._to_dlq(msg, exc.reason)
            return
        if self.erasures.is_erased(event.user_id, event.ts):
            metrics.EVENTS.labels("erased").inc()
            return
        outcome = apply_event(store, event, self.clock(), self.rules)
        if outcome.duplicate:
            metrics.EVENTS.labels("duplicate").inc()
            return
        metrics.EVENTS.labels("accepted").inc()
        sessions = self.open_sessions[partition]
        if outcome.still_open:
            sessions[(event.user_id, event.session_id)] = self.clock()
        self._emit(outcome, partition, batch, "session_end")

    def _emit(self, outcome: Outcome, partition: int, batch: Batch, trigger: str) -> None:
        sessions = self.open_sessions.get(partition, {})
        for key in outcome.sessions_ended:
            sessions.pop(key, None)
        for request in outcome.requests:
            request.emitted_at = _utcnow()
            self.producer.produce(self.requests_topic, key=request.user_id.encode(),
                                  value=request.model_dump_json().encode(), partition=partition)
            batch.requests += 1
            metrics.TRIGGERS.labels(trigger).inc()
            log.info("scoring request", extra={"request_id": request.request_id, "trigger": trigger,
                                               "n_turns": len(request.turns), "partition": partition})

    def _to_dlq(self, msg, reason: str) -> None:
        headers = [
            ("error", reason.encode()),
            ("source_topic", msg.topic().encode()),
            ("source_partition", str(msg.partition()).encode()),
            ("source_offset", str(msg.offset()).encode()),
        ]
        self.producer.produce(self.dlq, key=msg.key(), value=msg.value(), headers=headers, partition=msg.partition())
        metrics.EVENTS.labels("dlq").inc()
        log.warning("event to DLQ", extra={"reason": reason, "partition": msg.partition(), "offset": msg.offset()})

    def _end_idle_sessions(self, batch: Batch) -> None:
        now = self.clock()
        self._next_idle_check = now + min(5.0, self.settings.session_idle_s / 4)
        for partition, sessions in self.open_sessions.items():
            due = [key for key, seen in sessions.items() if now - seen >= self.settings.session_idle_s]
            for user_id, session_id in due:
                outcome = idle_trigger(self.stores[partition], user_id, session_id, now, self.rules)
                sessions.pop((user_id, session_id), None)
                self._emit(outcome, partition, batch, "idle")
        metrics.OPEN_SESSIONS.set(sum(len(s) for s in self.open_sessions.values()))

    def _refresh_erasures(self) -> None:
        before = dict(self.erasures.erased)
        self.erasures.poll_new()
        self._unswept |= {u for u, at in self.erasures.erased.items() if before.get(u) != at}

    def _sweep_erasures(self) -> None:
        self._sweeping = set(self._unswept)  # put back if the transaction aborts
        for user_id in self._unswept:
            for partition, store in self.stores.items():
                if drop_user(store, user_id):
                    self.open_sessions[partition] = {
                        k: v for k, v in self.open_sessions[partition].items() if k[0] != user_id}
                    log.info("erased user's transcript dropped", extra={"partition": partition})
        self._unswept.clear()

    def _produce_changelog(self) -> None:
        for partition, store in self.stores.items():
            for key, value in store.pending.items():
                self.producer.produce(self.changelog, key=key, value=value, partition=partition,
                                      on_delivery=self._on_changelog_delivery)

    def _on_changelog_delivery(self, err, msg) -> None:
        if err is None:
            p = msg.partition()
            self._changelog_offsets[p] = max(self._changelog_offsets.get(p, -1), msg.offset())

    def _send_offsets(self, offsets: list[TopicPartition]) -> None:
        """send_offsets_to_transaction with a timeout that holds: librdkafka's own can block forever
        once the group coordinator moved, e.g. after a broker restart (librdkafka #5456, #5511)."""
        group, timeout, box = self.consumer.consumer_group_metadata(), self._kafka_timeout_s(), {}

        def call():
            try:
                self.producer.send_offsets_to_transaction(offsets, group, timeout)
            except BaseException as exc:  # handed to the loop's thread
                box["error"] = exc

        worker = threading.Thread(target=call, name="send-offsets", daemon=True)
        worker.start()
        worker.join(timeout + 10)
        if worker.is_alive():
            raise StuckCall("send_offsets_to_transaction did not return")
        if "error" in box:
            raise box["error"]

    def _kafka_timeout_s(self) -> float:
        # under the transaction timeout, so a blocked call (say, a rebalance we must join to finish)
        # fails and is retried before the coordinator aborts the transaction on its own
        return max(1.0, self.settings.stream_transaction_timeout_ms / 2000)

    def _abort(self, batch: Batch, exc: Exception) -> None:
        log.warning("transaction aborted; the batch will be redone", extra={"error": str(exc.args[0])})
        if isinstance(exc, StuckCall):
            self._abandoned.append(self.producer)  # a librdkafka thread is stuck in it: never touch it again
            self._new_producer()
        else:
            self._recover_producer(exc.args[0])
        for partition, store in self.stores.items():
            store.discard()
            self.open_sessions[partition] = open_sessions_of(store)  # idle triggers of the batch are undone
        self._unswept |= self._sweeping
        self._changelog_offsets.clear()
        for partition, offset in batch.first.items():
            if partition in self.stores:
                self.consumer.seek(TopicPartition(self.source, partition, offset))
        metrics.ABORTS.inc()

    def _recover_producer(self, err) -> None:
        """Abort the open transaction (retrying while the broker is away); when the producer is beyond
        that (fenced, or the broker never answers), start a new one with the same transactional.id."""
        for attempt in range(10):
            if err.fatal():
                break
            try:
                self.producer.abort_transaction(self._kafka_timeout_s() * 2)
                return
            except KafkaException as again:
                err = again.args[0]
                time.sleep(min(5.0, 0.5 * (attempt + 1)))
        self._new_producer()

    def _new_producer(self) -> None:
        while self.running:
            try:
                self.producer = Producer(self._producer_config())
                self.producer.init_transactions(60)  # same transactional.id: fences and aborts what was open
                return
            except KafkaException as again:
                log.warning("cannot start a transactional producer; retrying", extra={"error": str(again.args[0])})
                time.sleep(2)

    def stop(self, *_args) -> None:
        self.running = False

    def close(self) -> None:
        self.consumer.close()  # revokes: closes the stores
        self.erasures.close()
        self.producer.flush(10)
        self._lock.close()
        if self._abandoned:  # their stuck threads would block a normal interpreter exit
            logging.shutdown()
            os._exit(0)
        log.info("stream processor stopped")


class StuckCall(Exception):
    """A librdkafka call that did not return within its timeout plus a margin."""


def open_sessions_of(store: PartitionStore) -> dict[tuple[str, str], float]:
    """Sessions not ended yet, with when they were last seen (wall clock, from the changelog)."""
    from stream.transcripts import OPEN, SessionMeta

    out = {}
    for _, value in store.scan(b"m"):
        meta = SessionMeta.from_bytes(value)
        if meta.state == OPEN:
            out[(meta.user_id, meta.session_id)] = meta.last_seen
    return out


def _utcnow():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="phq stream", description="the stream processor (settings: PHQ_ env vars)").parse_args(argv)
    settings = Settings()
    setup_logging(settings.log_level)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints every thread's stack (diagnosis)
    port = serve_metrics(settings.metrics_port)
    processor = StreamProcessor(settings)
    signal.signal(signal.SIGTERM, processor.stop)
    signal.signal(signal.SIGINT, processor.stop)
    log.info("metrics served", extra={"port": port})
    processor.run()
    return 0
