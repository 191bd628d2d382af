"""A full run with idle sessions: they are scored at their last event's ts, both processes serve their
metrics, and no log line of either carries message text."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import timedelta

import pytest
from test_pipeline_support import (
    T0,
    Proc,
    db_rows,
    make_traffic,
    pipeline_env,
    produce,
    score_counts,
    wait_until,
    with_duplicates,
)

from phq.models import request_id

pytestmark = pytest.mark.integration


def metrics_of(proc: Proc) -> str:
    port = next(json.loads(line)["port"] for line in proc.log().splitlines()
                if line.startswith("{") and '"metrics served"' in line)
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_idle_sessions_metrics_and_logs_without_text(settings, db_url, phq_env, tmp_path):
    turns = 4
    traffic = make_traffic(20, sessions=2, turns=turns, end_last=False, prefix="obs-")
    last_ts = {(u, s): T0 + timedelta(days=1, minutes=int(u[4:]) % 50 + turns) for u, s in traffic.open_sessions}
    idle_ts = {request_id(u, s, ts): ts for (u, s), ts in last_ts.items()}
    idle_ids = set(idle_ts)
    produce(settings, with_duplicates(traffic.events, share=0.2))
    env = pipeline_env(phq_env, tmp_path, PHQ_SESSION_IDLE_S=3)
    stream = Proc(["stream"], env, tmp_path / "stream.log")
    worker = Proc(["score-worker"], env, tmp_path / "worker.log")
    try:
        expected = set(traffic.ended) | idle_ids
        wait_until(lambda: set(score_counts(db_url, "obs-")) >= expected, 90, "ended and idle sessions scored",
                   [stream, worker])
        # a round's rows commit before its outputs and offsets (the delivery order): wait for the round
        worker_metrics = wait_until(lambda: (m := metrics_of(worker)) and metric(
            m, "phq_worker_request_to_row_seconds_count") >= len(expected) and m, 30, "worker metrics", [worker])
        stream_metrics = metrics_of(stream)
    finally:
        stream.stop(), worker.stop()

    assert score_counts(db_url, "obs-") == {rid: 1 for rid in expected}
    scored_at = dict(db_rows(db_url, "SELECT request_id, scored_at FROM phq9_scores"))
    for rid, ts in idle_ts.items():
        assert scored_at[rid] == ts, "an idle session's trigger time is its last event's ts, not a wall-clock time"

    assert metric(stream_metrics, 'phq_stream_events_total{outcome="duplicate"}') > 0
    assert metric(stream_metrics, 'phq_stream_triggers_total{trigger="idle"}') == len(idle_ids)
    assert metric(stream_metrics, 'phq_stream_triggers_total{trigger="session_end"}') == len(traffic.ended)
    assert "phq_stream_consumer_lag" in stream_metrics and "phq_stream_state_bytes" in stream_metrics
    assert metric(worker_metrics, "phq_worker_request_to_row_seconds_count") == len(expected)
    assert metric(worker_metrics, "phq_worker_round_token_fill_count") > 0

    logs = stream.log() + worker.log()
    for line in logs.splitlines():
        if line.startswith("{"):
            json.loads(line)  # every line of ours is one JSON object
    leaked = [t for t in traffic.texts if t in logs or t.split(" ", 1)[0] in logs]
    assert not leaked, f"{len(leaked)} message texts appear in the logs"
