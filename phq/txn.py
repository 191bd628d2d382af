"""Kafka transaction helpers shared by the stream processor and the scoring worker."""

from __future__ import annotations

from confluent_kafka import KafkaException, Producer


def commit_transaction(producer: Producer, timeout_s: float) -> None:
    """Commit, calling again on a retriable error as librdkafka asks; other errors go to the caller."""
    for attempt in range(5):
        try:
            producer.commit_transaction(timeout_s)
            return
        except KafkaException as exc:
            if not exc.args[0].retriable() or attempt == 4:
                raise
