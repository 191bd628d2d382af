"""Erasures as every process sees them: the compacted topic `phq.erasures` (key and value below)
read into a {user key: erased_at} map, the rule "ignore what a user did before their erasure", and
the keyed hash that records outliving an erasure keep instead of the user id (`user_key`).

Value: JSON {"user_key": HMAC-SHA256 of the user id (hex), "erased_at": ISO 8601 with offset}; key:
the same user key, so compaction keeps each user's latest erasure. The topic never holds a readable
user id: a process matches an id by hashing it with PHQ_ID_HASH_KEY. (Values of the earlier form,
{"user_id": ...}, are still read, and hashed on reading.)
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from phq import topics
from phq.settings import Settings

_HEX64 = re.compile(r"[0-9a-f]{64}")


def erasure_value(key: str, erased_at: datetime) -> bytes:
    """A topic value for the user whose keyed hash is `key` (`user_key(user_id)`)."""
    return json.dumps({"user_key": key, "erased_at": erased_at.astimezone(timezone.utc).isoformat()}).encode()


def parse_erasure(value: bytes | None, hash_key: bytes | None = None) -> tuple[str, datetime] | None:
    """(user key, erased_at) of one topic value; None for a tombstone or a malformed value. A value of
    the earlier form ({"user_id": ...}) is hashed here."""
    try:
        data = json.loads(value or b"")
        erased_at = datetime.fromisoformat(data["erased_at"])
        if erased_at.tzinfo is None:
            return None
        if isinstance(data.get("user_key"), str) and _HEX64.fullmatch(data["user_key"]):
            return data["user_key"], erased_at
        if isinstance(data.get("user_id"), str):
            return user_key(data["user_id"], hash_key), erased_at
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def is_erased(erasures: Mapping[str, datetime], key: str, event_time: datetime) -> bool:
    """True when the user with keyed hash `key` was erased at or after `event_time`: whatever happened
    before must be ignored. Events after the erasure (the user came back) are a fresh start and count again.
    """
    erased_at = erasures.get(key)
    return erased_at is not None and event_time <= erased_at


# --- Postgres: the per-user lock and the erasure record, shared by every writer and `phq erase` ---------

def lock_user(conn, user_id: str) -> None:
    """Take the per-user transaction lock that serialises a user's writes with `phq erase` (CONTRACT v2
    section 5: the erasure check sits inside the write transaction). Held until the transaction ends."""
    from sqlalchemy import text

    conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:u, 0))"), {"u": user_id})


def user_key(user_id: str, key: bytes | None = None) -> str:
    """The keyed hash (HMAC-SHA256, hex) that the erasure record, audit rows and the delivery log keep
    instead of a user id: it matches the id again only for whoever holds PHQ_ID_HASH_KEY."""
    if key is None:
        from phq.settings import get_settings

        key = get_settings().hash_key()
    return hmac.new(key, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def erased_at(conn, user_id: str) -> datetime | None:
    """When the user was last erased, from the `erasures` table (None: never). Call under `lock_user`."""
    from sqlalchemy import text

    return conn.execute(text("SELECT erased_at FROM erasures WHERE user_key = :k"),
                        {"k": user_key(user_id)}).scalar()


def publish_erasure(settings: Settings, user_id: str, erased_at: datetime, timeout_s: float = 20) -> None:
    """Produce the erasure and wait until the broker has it (raises when it does not)."""
    errors: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    producer = Producer({
        "bootstrap.servers": settings.kafka(), "acks": "all", "enable.idempotence": True,
        "message.timeout.ms": int(timeout_s * 1000), "log_level": 2,  # the error below says it once
    })
    key = user_key(user_id, settings.hash_key())
    producer.produce(settings.topic(topics.ERASURES), key=key.encode(), value=erasure_value(key, erased_at),
                     on_delivery=on_delivery)
    if producer.flush(timeout_s) or errors:
        raise KafkaException(f"erasure of a user was not acknowledged by the broker: {errors or 'timeout'}")


class ErasureLog:
    """The erasures topic read from the beginning, kept current with `catch_up()`.

    Uses manual assignment (no consumer group), so every process reads the whole topic on start.
    """

    def __init__(self, settings: Settings):
        self.erased: dict[str, datetime] = {}  # user key -> when
        self._hash_key = settings.hash_key()
        self._keys: dict[str, str] = {}  # user id -> user key, for the ids looked up (bounded below)
        self._where: dict[str, tuple[int, int]] = {}  # user key -> (partition, offset) of their latest erasure
        self._by_offset: dict[int, list[tuple[int, str]]] = {}  # partition -> [(offset, user key)], ascending
        self._next: dict[int, int] = {}  # partition -> next offset to apply
        self._consumer = Consumer({
            "bootstrap.servers": settings.kafka(),
            "group.id": f"phq-erasures-reader-{uuid.uuid4().hex}",  # unused: offsets are never committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 2,
        })
        topic = settings.topic(topics.ERASURES)
        meta = self._consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise KafkaException(f"topic {topic} is not readable ({meta.error}); run `phq topics`")
        self._partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        self._consumer.assign(self._partitions)

    def key_of(self, user_id: str) -> str:
        """The user's keyed hash (memoised: a processor asks for the same users over and over)."""
        key = self._keys.get(user_id)
        if key is None:
            if len(self._keys) >= 100_000:
                self._keys.clear()
            key = self._keys[user_id] = user_key(user_id, self._hash_key)
        return key

    def is_erased(self, user_id: str, event_time: datetime) -> bool:
        return bool(self.erased) and is_erased(self.erased, self.key_of(user_id), event_time)

    def catch_up(self, timeout_s: float = 10.0) -> dict[str, datetime]:
        """Read up to the end of every partition as it is now (or until the timeout)."""
        pending = self._ends_to_reach()
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = self._consumer.poll(0.2)
            if msg is None:
                pending = {p: end for p, end in pending.items() if self._position(p) < end}
                continue
            if msg.error() is None:
                self._apply(msg)
            if msg.offset() is not None and msg.offset() + 1 >= pending.get(msg.partition(), 0):
                pending.pop(msg.partition(), None)
        return self.erased

    def poll_new(self) -> list[tuple[str, datetime]]:
        """Apply whatever has arrived since the last call, without waiting; returns what was new."""
        new = []
        while (msg := self._consumer.poll(0)) is not None:
            if msg.error() is None and (applied := self._apply(msg)) is not None:
                new.append(applied)
        return new

    def watermark(self) -> dict[int, int]:
        """How far this log has been applied: {partition: next offset} (a store records it once swept)."""
        return dict(self._next)

    def since(self, watermark: dict[int, int]) -> list[tuple[str, datetime]]:
        """(user key, erased_at) of every erasure applied at or after `watermark`, each user once."""
        users = set()
        for partition, records in self._by_offset.items():
            start = bisect.bisect_left(records, (watermark.get(partition, 0), ""))
            users.update(user for offset, user in records[start:] if self._where.get(user) == (partition, offset))
        return [(user, self.erased[user]) for user in sorted(users)]

    def close(self) -> None:
        self._consumer.close()

    def _apply(self, msg) -> tuple[str, datetime] | None:
        partition, offset = msg.partition(), msg.offset()
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)
        parsed = parse_erasure(msg.value(), self._hash_key)
        if parsed is None:
            return None
        user_id, erased_at = parsed  # the user's key
        self.erased[user_id] = max(erased_at, self.erased.get(user_id, erased_at))
        self._where[user_id] = (partition, offset)
        self._by_offset.setdefault(partition, []).append((offset, user_id))
        return user_id, self.erased[user_id]

    def _ends_to_reach(self) -> dict[int, int]:
        ends = {}
        for tp in self._partitions:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=10)
            if high > low and self._position(tp.partition) < high:
                ends[tp.partition] = high
        return ends

    def _position(self, partition: int) -> int:
        tp = next(t for t in self._partitions if t.partition == partition)
        pos = self._consumer.position([TopicPartition(tp.topic, partition)])[0].offset
        return pos if pos >= 0 else 0


def read_erasures(settings: Settings, timeout_s: float = 10.0) -> dict[str, datetime]:
    """The whole erasures topic as {user key: erased_at} (for a process that reads it once)."""
    log = ErasureLog(settings)
    try:
        return dict(log.catch_up(timeout_s))
    finally:
        log.close()
