"""`phq stream`: chat events in, transcripts kept, scoring requests out, one Kafka transaction per batch.

The delivery protocol lives in `StreamProcessor.run_batch` (its steps), recovery in the class's
docstring (its steps, in the order of the code below it); everything that decides what an event
does lives in stream.transcripts. Built on confluent-kafka with our own changelogged state instead
of Faust: stream/README.md says why.
"""

from __future__ import annotations

import argparse
import faulthandler
import fcntl
import logging
import os
import shutil
import signal
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from phq import topics
from phq.events import EPOCH, InvalidEvent, parse_event
from phq.settings import Settings
from phq.slots import claim_slot, transactional_id
from phq.telemetry import KAFKA_LOG, serve_metrics, setup_logging
from phq.txn import commit_transaction, read_erasures_with_retry
from stream import metrics
from stream.changelog import changelog_topic, ensure_changelog, restore
from stream.store import ERASURES_KEY, PartitionStore
from stream.transcripts import (
    Outcome,
    Rules,
    apply_event,
    expire_sessions,
    idle_trigger,
    parse_ids,
    prefetch,
    sweep_user,
    waiting_sessions,
)

log = logging.getLogger("phq.stream")
WALL_MARGIN_MS = 1000  # a partition read to its end may still have a record in flight this long
EXPIRY_EVERY_S = 10.0
EXPIRY_STEP = 1000  # session summaries examined per expiry step and partition
_US = timedelta(microseconds=1)


def group_id(settings: Settings) -> str:
    return settings.topic("phq-stream")


@dataclass
class Batch:
    """What one transaction carries, gathered before it commits."""

    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset to consume
    first: dict[int, int] = field(default_factory=dict)  # partition -> first offset (to rewind on abort)
    swept: dict[int, dict[int, int]] = field(default_factory=dict)  # partition -> erasure watermark written
    counts: Counter = field(default_factory=Counter)  # metrics, counted once the batch committed
    requests: int = 0


class Redo(Exception):
    """One item of a batch failed: the batch is aborted and redone without it (never looped on)."""

    def __init__(self, what: str, key: tuple, exc: BaseException):
        super().__init__(f"{what} failed: {type(exc).__name__}")
        self.what, self.key = what, key
        self.reason = f"processing failed: {type(exc).__name__}: {str(exc)[:200]}".replace("\n", " ")


class StreamProcessor:
    """The stream processor. Recovery, in the order of the code below:

    1. Checkpoint. A batch's writes reach the local store only after its transaction committed, in
       one WriteBatch together with the changelog offset they reached (`_checkpoint`).
    2. Abort. A failed transaction is aborted; a producer that is fenced, broken or stuck in
       librdkafka is replaced by a new one with the same transactional.id, which fences the old one
       and aborts what it left open. The overlays, the windows the batch touched and the idle index
       are reset from the stores, and the consumer is rewound to the batch's first offsets. An event
       (or idle session, or erasure) that raised is left out of the redo: the event goes to the DLQ
       with its reason. A batch that fails twice is retried in halves (`_abort`, `_recover_producer`).
    3. Restore, on assignment: first the committed offsets of the assigned partitions (read with
       require_stable, which waits until a predecessor's open transaction has committed or aborted),
       then each store replays the changelog from its checkpoint to its end, then the idle index and
       stream time are rebuilt from the stores' arrival times; stores of partitions this process no
       longer owns are deleted from disk (`_on_assign`).
    4. Erasure sweeps, at the start of every batch and before its events: each store drops the state
       (from before the erasure) of every user erased past the store's swept mark, which covers both
       erasures that just arrived and a store just assigned; the mark and the deletes go through the
       changelog in the same transaction (`_sweep_erasures`).
    5. Fencing. Each slot has its own transactional.id, so a restarted process fences its predecessor;
       every transaction carries the offsets of every assigned partition, so a process that lost its
       partitions to a rebalance cannot commit anything (the group generation is checked) (`_send_offsets`).
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        horizon = settings.window_days + settings.stream_replay_horizon_days
        if horizon >= settings.transcript_retention_days:
            raise SystemExit(f"PHQ_WINDOW_DAYS + PHQ_STREAM_REPLAY_HORIZON_DAYS ({horizon:g}) must be under "
                             f"PHQ_TRANSCRIPT_RETENTION_DAYS ({settings.transcript_retention_days:g}), or the "
                             "changelog would delete state the stores still hold; lower the horizon")
        self.rules = Rules(settings.window_days, settings.transcript_max_bytes, settings.session_idle_s, horizon)
        self.source = settings.topic(topics.CHAT_EVENTS)
        self.changelog = changelog_topic(settings)
        self.requests_topic = settings.topic(topics.SCORING_REQUESTS)
        self.dlq = settings.topic(topics.CHAT_EVENTS_DLQ)
        self.slot, self.state_dir, self._lock = claim_slot(Path(settings.stream_state_dir) / group_id(settings))
        delete_free_slots(self.state_dir.parent, self.slot)
        self.stores: dict[int, PartitionStore] = {}
        # partition -> sessions an idle trigger may end, with their arrival, oldest arrival first
        self.waiting: dict[int, OrderedDict[tuple[str, str], int]] = {}
        self.stream_ms: dict[int, int] = {}  # partition -> newest record timestamp seen (arrival time)
        self.at_end: dict[int, bool] = {}  # partition -> read to its end (wall clock counts)
        self.positions: dict[int, int] = {}  # partition -> next offset, as committed
        self.swept: dict[int, dict[int, int]] = {}  # partition -> erasure watermark its store holds
        self.erasures = read_erasures_with_retry(settings)
        self._redo: dict[tuple, str] = {}  # items left out of a redone batch, with their reason
        self._failures = 0  # consecutive aborts
        self.batch_max = settings.stream_batch_max
        self._next_expiry = 0.0
        self._expiry_cursor: dict[int, bytes | None] = {}
        self._changelog_offsets: dict[int, int] = {}
        self._abandoned: list[Producer] = []  # producers stuck in a librdkafka call (see _send_offsets)
        self._warned_create_time = False
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
            "enable.partition.eof": True,  # a partition read to its end lets the wall clock count
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",  # also makes committed() require stable offsets
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

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        self.start()
        try:
            while self.running:
                # a loop stuck for 2 minutes prints every thread's stack to the log (diagnosis)
                faulthandler.dump_traceback_later(120, exit=False)
                msgs = self.consumer.consume(self.batch_max, self.settings.stream_batch_wait_ms / 1000)
                self.run_batch(msgs)
                metrics.observe_lag(self.consumer, self.stores)
        finally:
            faulthandler.cancel_dump_traceback_later()
            self.close()

    def run_batch(self, msgs: list) -> None:
        """One batch, exactly once. The order, which recovery relies on:

        1. Events were consumed outside any transaction, so a rebalance never meets an open one.
        2. Apply newly arrived erasures to the in-memory log; begin a Kafka transaction.
        3. Erasure sweeps (recovery step 4), before any event of the batch.
        4. Each event: bad (or one that raised before: step 2 of recovery) -> DLQ with its reason;
           erased or duplicate -> counted, dropped; valid -> its writes go to the partition's overlay
           (summaries read with one multi-get), and the scoring request of a session it ends is
           produced. Then idle sessions are ended by arrival time, and a step of expiry runs.
        5. Produce each partition's overlay (last write per key) to the changelog, on that partition.
        6. Send the offsets of every assigned partition to the transaction and commit it: changelog
           records, requests, DLQ records and input offsets become visible together, or not at all.
        7. Only now write the overlays to the local stores (recovery step 1) and count the metrics.
        On failure before 7: abort, and redo (recovery step 2).
        """
        new_erasures = self.erasures.poll_new()
        expiry_due = time.monotonic() >= self._next_expiry
        if not msgs and not self._idle_due() and not expiry_due and not new_erasures and not self._unswept():
            return
        batch = Batch()
        started = time.monotonic()
        try:
            self.producer.begin_transaction()
            self._sweep_erasures(batch)
            self._handle_events(msgs, batch)
            self._end_idle_sessions(batch)
            if expiry_due:
                self._expire(batch)
            self._produce_changelog()
            self._send_offsets(batch)
            commit_transaction(self.producer, self._kafka_timeout_s())
        except (KafkaException, StuckCall, Redo) as exc:
            self._abort(batch, exc)
            return
        self._checkpoint(batch)
        metrics.TRANSACTION_SECONDS.observe(time.monotonic() - started)

    # ---------------------------------------------------------------- events

    def _handle_events(self, msgs: list, batch: Batch) -> None:
        valid = self._decode_all(msgs, batch)
        by_partition: dict[int, list] = {}
        for msg, _arrival, event in valid:
            by_partition.setdefault(msg.partition(), []).append(event)
        for partition, events in by_partition.items():
            try:
                prefetch(self.stores[partition], events)
            except Exception:  # a bad stored record: the event that reads it will say so (and go to the DLQ)
                log.exception("prefetch failed; reading records one by one")
        idle_ms, waiting_of, counts = self.rules.idle_ms, self.waiting, batch.counts
        for msg, arrival, event in valid:
            partition = msg.partition()
            waiting = waiting_of[partition]
            if waiting and arrival - next(iter(waiting.values())) >= idle_ms:
                self._end_idle(partition, arrival, batch)  # idle by this record's arrival: ended before it
            try:
                if self.erasures.is_erased(event.user_id, event.ts):
                    counts["erased"] += 1
                    continue
                outcome = apply_event(self.stores[partition], event, arrival, self.rules)
                if outcome.duplicate:
                    counts["duplicate"] += 1
                    continue
                counts["accepted"] += 1
                if outcome.waiting is not None:
                    key = (event.user_id, event.session_id)
                    waiting[key] = outcome.waiting
                    waiting.move_to_end(key)  # arrivals grow within a partition: the front stays the oldest
                if outcome.sessions_ended:
                    self._emit(outcome, partition, batch, "session_end")
            except Exception as exc:
                raise Redo("event", ("event", partition, msg.offset()), exc) from exc

    def _decode_all(self, msgs: list, batch: Batch) -> list:
        """(record, arrival ms, event) of each valid record; the others go to the DLQ with their reason."""
        valid, stores, at_end, stream_ms = [], self.stores, self.at_end, self.stream_ms
        first, offsets = batch.first, batch.offsets
        limits = dict(max_clock_skew_s=self.settings.max_clock_skew_s, max_event_bytes=self.settings.max_event_bytes,
                      now_us=int(time.time() * 1_000_000))
        for msg in msgs:
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end[msg.partition()] = True
                else:
                    log.warning("consume error", extra={"error": str(msg.error())})
                continue
            partition, offset = msg.partition(), msg.offset()
            if partition not in stores:  # consumed before a revoke: its new owner has it
                continue
            if partition not in first:
                first[partition] = offset
            offsets[partition] = offset + 1
            at_end[partition] = False
            kind, arrival = msg.timestamp()
            if kind != TIMESTAMP_LOG_APPEND_TIME:
                arrival = self._other_timestamp(kind, arrival)
            if arrival > stream_ms[partition]:
                stream_ms[partition] = arrival
            reason = self._redo.pop(("event", partition, offset), None) if self._redo else None
            if reason is None:
                try:
                    valid.append((msg, arrival, parse_event(msg.value(), **limits)))
                    continue
                except InvalidEvent as exc:
                    reason = exc.reason
                except Exception as exc:  # whatever it is, it is this event's, and must not stop the others
                    reason = f"could not decode: {type(exc).__name__}: {str(exc)[:200]}".replace("\n", " ")
            self._to_dlq(msg, reason, batch)
        return valid

    def _other_timestamp(self, kind: int, ts: int) -> int:
        if kind == TIMESTAMP_CREATE_TIME and not self._warned_create_time:
            self._warned_create_time = True
            log.warning("chat.events uses CreateTime: idleness follows the producers' clocks; "
                        "`phq topics` sets LogAppendTime (CONTRACT section 2)")
        return ts if ts > 0 else int(time.time() * 1000)

    def _emit(self, outcome: Outcome, partition: int, batch: Batch, trigger: str) -> None:
        waiting = self.waiting[partition]
        for key in outcome.sessions_ended:
            waiting.pop(key, None)
        if not outcome.requests:
            return
        emitted_at = datetime.now(timezone.utc).isoformat()
        for request in outcome.requests:
            # keyed by user: the partitioner picks among however many partitions the topic has
            self.producer.produce(self.requests_topic, key=request.user_id.encode(), value=request.encode(emitted_at))
            batch.requests += 1
            batch.counts[trigger] += 1

    def _to_dlq(self, msg, reason: str, batch: Batch) -> None:
        headers = [
            ("error", reason.encode()),
            ("source_topic", msg.topic().encode()),
            ("source_partition", str(msg.partition()).encode()),
            ("source_offset", str(msg.offset()).encode()),
        ]
        self.producer.produce(self.dlq, key=msg.key(), value=msg.value(), headers=headers)
        batch.counts["dlq"] += 1
        log.warning("event to DLQ", extra={"reason": reason, "partition": msg.partition(), "offset": msg.offset()})

    # ---------------------------------------------------------------- time: idle sessions, expiry

    def clock_ms(self, partition: int) -> int:
        """The partition's arrival time: its newest record timestamp, or the wall clock (less a margin
        for a record in flight) once it has been read to its end (CONTRACT v2 section 2)."""
        stream = self.stream_ms.get(partition, 0)
        if self.at_end.get(partition):
            return max(stream, int(time.time() * 1000) - WALL_MARGIN_MS)
        return stream

    def _idle_due(self) -> bool:
        return any(w and self.clock_ms(p) - next(iter(w.values())) >= self.rules.idle_ms
                   for p, w in self.waiting.items())

    def _end_idle_sessions(self, batch: Batch) -> None:
        for partition in self.waiting:
            self._end_idle(partition, self.clock_ms(partition), batch)
        metrics.OPEN_SESSIONS.set(sum(len(w) for w in self.waiting.values()))

    def _end_idle(self, partition: int, now_ms: int, batch: Batch) -> None:
        """End the partition's sessions no event of which has arrived for session_idle_s by `now_ms`."""
        waiting, idle_ms = self.waiting[partition], self.rules.idle_ms
        while waiting:
            (user_id, session_id), arrival = next(iter(waiting.items()))
            if now_ms - arrival < idle_ms:
                return
            del waiting[(user_id, session_id)]
            key = ("idle", partition, user_id, session_id)
            if key in self._redo:
                log.error("idle session left out after a failure", extra={"reason": self._redo.pop(key)})
                continue
            try:
                outcome = idle_trigger(self.stores[partition], user_id, session_id, now_ms, self.rules)
            except Exception as exc:
                raise Redo("idle trigger", key, exc) from exc
            if outcome.waiting is not None:  # not idle after all (the index was behind): back in line
                waiting[(user_id, session_id)] = outcome.waiting
            self._emit(outcome, partition, batch, "idle")

    def _expire(self, batch: Batch) -> None:
        self._next_expiry = time.monotonic() + EXPIRY_EVERY_S
        for partition, store in self.stores.items():
            key = ("expiry", partition)
            if key in self._redo:  # it failed: start this partition's pass over next time
                log.error("expiry step left out after a failure", extra={"reason": self._redo.pop(key)})
                self._expiry_cursor[partition] = None
                continue
            try:
                cursor, n = expire_sessions(store, self.clock_ms(partition), self.rules,
                                            self._expiry_cursor.get(partition), EXPIRY_STEP)
            except Exception as exc:
                raise Redo("expiry", key, exc) from exc
            self._expiry_cursor[partition] = cursor
            batch.counts["expired"] += n

    # ---------------------------------------------------------------- the transaction

    def _produce_changelog(self) -> None:
        for partition, store in self.stores.items():
            store.flush_records()
            last = len(store.pending) - 1
            for i, (key, value) in enumerate(store.pending.items()):
                # one delivery report per partition: a transactional producer keeps their order
                self.producer.produce(self.changelog, key=key, value=value, partition=partition,
                                      on_delivery=self._on_changelog_delivery if i == last else None)

    def _on_changelog_delivery(self, err, msg) -> None:
        if err is None:
            p = msg.partition()
            self._changelog_offsets[p] = max(self._changelog_offsets.get(p, -1), msg.offset())

    def _kafka_timeout_s(self) -> float:
        # under the transaction timeout, so a blocked call (say, a rebalance we must join to finish)
        # fails and is retried before the coordinator aborts the transaction on its own
        return max(1.0, self.settings.stream_transaction_timeout_ms / 2000)

    # ---------------------------------------------------------------- recovery 1: checkpoint

    def _checkpoint(self, batch: Batch) -> None:
        for partition, store in self.stores.items():
            store.commit(self._changelog_offsets.pop(partition, None))
        self._changelog_offsets.clear()
        self.positions.update(batch.offsets)
        self.swept.update(batch.swept)
        self._failures = 0
        self.batch_max = min(self.settings.stream_batch_max, self.batch_max * 2)
        for outcome in ("accepted", "duplicate", "dlq", "erased"):
            if batch.counts[outcome]:
                metrics.EVENTS.labels(outcome).inc(batch.counts[outcome])
        metrics.EXPIRED.inc(batch.counts["expired"])
        for trigger in ("session_end", "idle"):
            if batch.counts[trigger]:
                metrics.TRIGGERS.labels(trigger).inc(batch.counts[trigger])
        metrics.REQUESTS.inc(batch.requests)

    # ---------------------------------------------------------------- recovery 2: abort

    def _abort(self, batch: Batch, exc: Exception) -> None:
        if isinstance(exc, Redo):
            self._redo[exc.key] = exc.reason
            log.error("one item of the batch failed; the batch is redone without it",
                      extra={"item": exc.what, "error": str(exc.__cause__.__class__.__name__)})
        else:
            log.warning("transaction aborted; the batch will be redone", extra={"error": str(exc.args[0])})
        if isinstance(exc, StuckCall):
            self._abandoned.append(self.producer)  # a librdkafka thread is stuck in it: never touch it again
            self._new_producer()
        else:
            self._recover_producer(exc.args[0] if isinstance(exc, KafkaException) else None)
        for partition, store in self.stores.items():
            store.discard()
            self.waiting[partition] = OrderedDict(self._waiting_of(store)[0])
        self._changelog_offsets.clear()
        for partition, offset in batch.first.items():
            if partition in self.stores:
                self.at_end[partition] = False
                self.consumer.seek(TopicPartition(self.source, partition, offset))
        self._failures += not isinstance(exc, Redo)  # a bad item is left out; no need to split
        if self._failures >= 2 and msgs_left(batch) > 1:  # the same batch again: try it in halves
            self.batch_max = max(1, min(self.batch_max, msgs_left(batch)) // 2)
            log.warning("batch failed twice; retrying it in halves", extra={"batch_max": self.batch_max})
        metrics.ABORTS.inc()

    def _recover_producer(self, err) -> None:
        """Abort the open transaction (retrying while the broker is away); when the producer is beyond
        that (fenced, or the broker never answers), start a new one with the same transactional.id."""
        for attempt in range(10):
            if err is not None and err.fatal():
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

    # ---------------------------------------------------------------- recovery 3: restore

    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        committed = self._committed_offsets(consumer, partitions)
        for tp in partitions:
            p = tp.partition
            cache = (self.settings.stream_window_cache_mb << 20) // max(1, len(partitions))
            store = PartitionStore(p, self._store_path(p), cache)
            n = restore(self.settings, self.changelog, store)
            waiting, newest = self._waiting_of(store)
            self.stores[p], self.waiting[p] = store, OrderedDict(waiting)
            self.stream_ms[p], self.at_end[p] = newest, False
            self.positions[p] = committed[p]
            raw = store.get(ERASURES_KEY)
            self.swept[p] = {int(k): v for k, v in msgspec.msgpack.decode(raw).items()} if raw else {}
            metrics.RESTORED.inc(n)
            log.info("partition assigned", extra={"partition": p, "restored_records": n,
                                                  "open_sessions": len(waiting)})
        self._delete_orphaned_stores()

    def _committed_offsets(self, consumer, partitions: list[TopicPartition]) -> dict[int, int]:
        """Committed offsets, waiting (require_stable) for a predecessor's open transaction to end, so
        the changelog replayed next holds everything those offsets stand for."""
        timeout = self.settings.stream_transaction_timeout_ms / 1000 + 60
        found = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=timeout)
        out = {}
        for tp in found:
            if tp.offset >= 0:
                out[tp.partition] = tp.offset
            else:  # nothing committed yet: the group starts at the earliest offset
                out[tp.partition] = consumer.get_watermark_offsets(tp, timeout=10)[0]
        return out

    @staticmethod
    def _waiting_of(store: PartitionStore):
        sessions, newest = waiting_sessions(store)
        return [((user_id, session_id), arrival) for arrival, user_id, session_id in sessions], newest

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            store = self.stores.pop(tp.partition, None)
            for table in (self.waiting, self.stream_ms, self.at_end, self.positions, self.swept,
                          self._expiry_cursor):
                table.pop(tp.partition, None)
            if store is not None:
                store.close()
            log.info("partition revoked", extra={"partition": tp.partition})

    def _store_path(self, partition: int) -> Path | None:
        if self.settings.stream_store == "memory":
            return None
        return self.state_dir / f"p{partition}"

    def _delete_orphaned_stores(self) -> None:
        """A store of a partition this process no longer owns would keep transcripts no erasure
        sweep reaches: delete it (the changelog rebuilds it if the partition comes back)."""
        if not self.state_dir.exists():
            return
        for path in self.state_dir.glob("p*"):
            if path.name[1:].isdigit() and int(path.name[1:]) not in self.stores:
                shutil.rmtree(path, ignore_errors=True)
                log.info("orphaned store deleted", extra={"partition": int(path.name[1:])})

    # ---------------------------------------------------------------- recovery 4: erasure sweeps

    def _unswept(self) -> bool:
        mark = self.erasures.watermark()
        return any(self.swept.get(p) != mark for p in self.stores)

    def _sweep_erasures(self, batch: Batch) -> None:
        mark = self.erasures.watermark()
        for partition, store in self.stores.items():
            if self.swept.get(partition) == mark:
                continue
            erased = dict(self.erasures.since(self.swept.get(partition, {})))  # user key -> when
            for user_id in self._stored_users(store, erased):
                key = ("erasure", partition, user_id)
                if key in self._redo:
                    log.error("erasure sweep of a user failed twice; skipped", extra={"reason": self._redo.pop(key)})
                    continue
                try:
                    gone = sweep_user(store, user_id, (erased[self.erasures.key_of(user_id)] - EPOCH) // _US)
                except Exception as exc:
                    raise Redo("erasure sweep", key, exc) from exc
                for session in gone:
                    self.waiting[partition].pop(session, None)
                if gone:
                    log.info("erased user's transcript dropped", extra={"partition": partition, "sessions": len(gone)})
            store.put(ERASURES_KEY, msgspec.msgpack.encode(mark))
            batch.swept[partition] = mark

    def _stored_users(self, store, erased: dict) -> list[str]:
        """The users of a store whose keyed hash is among `erased` (the erasures topic holds hashes only,
        so a sweep hashes the ids it holds)."""
        if not erased:
            return []
        users = {parse_ids(key)[0] for key, _ in store.scan(b"m")}
        return sorted(u for u in users if self.erasures.key_of(u) in erased)

    # ---------------------------------------------------------------- recovery 5: fencing

    def _send_offsets(self, batch: Batch) -> None:
        """Offsets of every assigned partition (consumed or not), so the commit checks the group
        generation even for a batch of only idle triggers or sweeps. send_offsets_to_transaction runs
        under a timeout that holds: librdkafka's own can block forever once the group coordinator
        moved, e.g. after a broker restart (librdkafka #5456, #5511)."""
        offsets = [TopicPartition(self.source, p, batch.offsets.get(p, self.positions.get(p, 0)))
                   for p in self.stores]
        if not offsets:
            return
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

    # ---------------------------------------------------------------- shutdown

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


def msgs_left(batch: Batch) -> int:
    """How many records the failed batch spanned (offsets, across its partitions)."""
    return sum(batch.offsets[p] - batch.first[p] for p in batch.first)


def delete_free_slots(base: Path, mine: int) -> None:
    """Stores of slots no running process holds keep transcripts no erasure sweep reaches: delete them
    (a process that later takes such a slot rebuilds its stores from the changelog)."""
    for lock_path in base.glob("slot-*.lock"):
        slot = lock_path.stem.split("-", 1)[1]
        if not slot.isdigit() or int(slot) == mine or not (base / f"slot-{slot}").exists():
            continue
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live process holds it
            shutil.rmtree(base / f"slot-{slot}", ignore_errors=True)
            log.info("stores of a free slot deleted", extra={"slot": int(slot)})


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
