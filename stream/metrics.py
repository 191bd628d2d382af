"""The stream processor's Prometheus metrics (served on PHQ_METRICS_PORT)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("phq_stream_events_total", "Chat events consumed, by outcome", ["outcome"])
for _outcome in ("accepted", "duplicate", "dlq", "erased"):
    EVENTS.labels(_outcome)
TRIGGERS = Counter("phq_stream_triggers_total", "Sessions ended with a scoring request, by trigger", ["trigger"])
REQUESTS = Counter("phq_stream_requests_total", "Scoring requests committed to phq9.scoring.requests")
ABORTS = Counter("phq_stream_transactions_aborted_total", "Kafka transactions aborted (their batch is redone)")
EXPIRED = Counter("phq_stream_sessions_expired_total",
                  "Sessions forgotten after PHQ_WINDOW_DAYS + PHQ_STREAM_REPLAY_HORIZON_DAYS without an event")
RESTORED = Counter("phq_stream_restored_records_total", "Changelog records replayed into local stores")
TRANSACTION_SECONDS = Histogram("phq_stream_transaction_seconds", "Time to process and commit one batch")
OPEN_SESSIONS = Gauge("phq_stream_open_sessions", "Sessions not ended yet (idle-trigger candidates)")
STATE_BYTES = Gauge("phq_stream_state_bytes", "Estimated size of the transcript state in local stores")
LAG = Gauge("phq_stream_consumer_lag", "Events not yet consumed, by partition", ["partition"])

_next_sample = 0.0


def observe_lag(consumer, stores: dict) -> None:
    """Sample lag and state size every few seconds (cheap: cached watermarks, store estimates)."""
    global _next_sample
    now = time.monotonic()
    if now < _next_sample:
        return
    _next_sample = now + 5
    try:
        positions = consumer.position(consumer.assignment())
    except Exception:
        return
    for tp in positions:
        _low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high is not None and high >= 0 and tp.offset >= 0:
            LAG.labels(str(tp.partition)).set(max(0, high - tp.offset))
    STATE_BYTES.set(sum(store.size_estimate() for store in stores.values()))
