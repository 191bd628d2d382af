"""The transcripts' changelog topic: created beside `chat.events` (same partition count, compacted), and
replayed into a partition's local store on assignment, from the offset that store has reached."""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from phq import topics
from phq.kafka_admin import DAY_MS, admin
from phq.settings import Settings
from phq.telemetry import KAFKA_LOG
from stream.store import PartitionStore

log = logging.getLogger("phq.stream.changelog")
# v2: binary records (stream.transcripts); a v1 store or changelog is not read (see stream/README.md)
CHANGELOG = "phq.stream.transcripts.changelog.v2"


def changelog_topic(settings: Settings) -> str:
    return settings.topic(CHANGELOG)


def ensure_changelog(settings: Settings) -> None:
    """Create the changelog topic when missing, co-partitioned with chat.events."""
    client = admin(settings.kafka())
    meta = client.list_topics(timeout=10).topics
    name, source = changelog_topic(settings), settings.topic(topics.CHAT_EVENTS)
    if name in meta and not meta[name].error:
        return
    if source not in meta or meta[source].error:
        raise RuntimeError(f"topic {source} does not exist; run `phq topics` (or `phq dev up`) first")
    config = {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(int(settings.transcript_retention_days * DAY_MS)),
        # an erased or expired record's tombstone compacts it away within a day, not whenever the
        # segment happens to fill
        "max.compaction.lag.ms": str(DAY_MS),
        "min.insync.replicas": "1",
    }
    spec = NewTopic(name, len(meta[source].partitions), -1, config=config)
    for _name, future in client.create_topics([spec], operation_timeout=30).items():
        try:
            future.result()
        except Exception as exc:  # another processor created it first
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def restore(settings: Settings, topic: str, store: PartitionStore, chunk: int = 5000) -> int:
    """Bring `store` up to the changelog's last committed record; returns how many records it applied."""
    consumer = Consumer({
        "bootstrap.servers": settings.kafka(),
        "group.id": f"phq-stream-restore-{uuid.uuid4().hex}",  # never commits: position is the store's
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "log_level": 3,
        "logger": KAFKA_LOG,
    })
    try:
        low, high = _watermarks(consumer, TopicPartition(topic, store.partition))
        start = _start_offset(store, low, high)
        if start >= high:
            return 0
        consumer.assign([TopicPartition(topic, store.partition, start)])
        return _replay(consumer, store, chunk)
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, tp: TopicPartition, attempts: int = 15) -> tuple[int, int]:
    """Low and high offsets, retried while a restarted broker is still electing leaders."""
    for attempt in range(attempts):
        try:
            return consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException:
            if attempt == attempts - 1:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def _start_offset(store: PartitionStore, low: int, high: int) -> int:
    """Where to resume: after the store's checkpoint, unless the changelog no longer covers it."""
    checkpoint = store.checkpoint()
    if checkpoint is None:
        return low
    if checkpoint + 1 < low or checkpoint + 1 > high:
        # retention deleted records we never applied, or the topic was recreated: start over
        log.warning("local store is not covered by the changelog; rebuilding it",
                    extra={"partition": store.partition, "checkpoint": checkpoint, "low": low, "high": high})
        store.wipe()
        return low
    return checkpoint + 1


def _replay(consumer: Consumer, store: PartitionStore, chunk: int) -> int:
    applied = 0
    while True:
        msgs = consumer.consume(chunk, 1.0)
        records, last, done = [], None, False
        for msg in msgs:
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    done = True
                    continue
                raise RuntimeError(f"changelog restore failed: {msg.error()}")
            records.append((msg.key(), msg.value()))
            last = msg.offset()
        if last is not None:
            store.apply_changelog(records, last)
            applied += len(records)
        if done:
            return applied
