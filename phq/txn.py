"""Kafka helpers shared by the stream processor and the scoring worker: transactions and startup reads."""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaException, Producer

from phq.erasures import ErasureLog
from phq.settings import Settings

log = logging.getLogger("phq.kafka")


def commit_transaction(producer: Producer, timeout_s: float) -> None:
    """Commit, calling again on a retriable error as librdkafka asks; other errors go to the caller."""
    for attempt in range(5):
        try:
            producer.commit_transaction(timeout_s)
            return
        except KafkaException as exc:
            if not exc.args[0].retriable() or attempt == 4:
                raise


def read_erasures_with_retry(settings: Settings, attempts: int = 15) -> ErasureLog:
    """The erasures topic read to its end; retried while a just-started broker elects leaders."""
    for attempt in range(attempts):
        erasures = ErasureLog(settings)
        try:
            erasures.catch_up()
            return erasures
        except KafkaException as exc:
            erasures.close()
            if attempt == attempts - 1:
                raise
            log.warning("erasures not readable yet; retrying", extra={"error": str(exc.args[0])})
            time.sleep(2)
    raise AssertionError("unreachable")
