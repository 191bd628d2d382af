"""kill -9 of the stream processor and of the scoring worker at random moments of a replay (>= 5,000
events, >= 200 users, real broker and Postgres): every expected score and change event exactly once,
in Postgres and on the output topics, and each window holds the user's whole transcript."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
from test_pipeline_support import (
    Proc,
    db_rows,
    expected_changes,
    make_traffic,
    pipeline_env,
    produce,
    read_topic,
    score_counts,
    stored_changes,
    wait_until,
    with_duplicates,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TURNS = 7  # user turns 0, 2, 4, 6: four per session


class Replay(threading.Thread):
    """Produces events at a steady pace in the background, as live traffic arrives."""

    def __init__(self, settings, events: list[dict], seconds: float, chunks: int = 40):
        super().__init__(daemon=True)
        self.settings, self.events, self.seconds, self.chunks = settings, events, seconds, chunks
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            size = -(-len(self.events) // self.chunks)
            for i in range(0, len(self.events), size):
                produce(self.settings, self.events[i:i + size])
                time.sleep(self.seconds / self.chunks)
        except BaseException as exc:  # reported by the test
            self.error = exc


def crash_env(phq_env, tmp_path, **extra):
    return pipeline_env(phq_env, tmp_path, PHQ_WORKER_SCORER="test_pipeline_support:hash_scorer",
                        PHQ_STREAM_TRANSACTION_TIMEOUT_MS=6000, PHQ_SESSION_TIMEOUT_MS=6000, **extra)


def test_kill9_of_either_process_loses_and_duplicates_nothing(settings, db_url, phq_env, tmp_path):
    rng = random.Random(20260105)
    traffic = make_traffic(200, sessions=3, turns=TURNS, prefix="k")
    events = with_duplicates(traffic.events, share=0.1)
    assert len(traffic.events) >= 5000
    env = crash_env(phq_env, tmp_path)
    stream = Proc(["stream"], env, tmp_path / "stream.log")
    worker = Proc(["score-worker"], env, tmp_path / "worker.log")
    replay = Replay(settings, events, seconds=24)
    replay.start()
    try:
        for proc in (stream, worker, stream, worker):
            time.sleep(rng.uniform(2, 6))
            proc.kill9()
            time.sleep(rng.uniform(0, 1))
            proc.start()
        replay.join(120)
        assert replay.error is None and not replay.is_alive()
        wait_until(lambda: len(score_counts(db_url, "k")) >= len(traffic.ended), 240, "every expected score",
                   [stream, worker], interval=2)
        time.sleep(3)  # anything extra (a duplicate trigger) would show up now
    finally:
        stream.stop(), worker.stop()

    assert score_counts(db_url, "k") == {rid: 1 for rid in traffic.ended}
    changes = stored_changes(db_url)
    assert sorted(changes) == sorted(expected_changes(db_url, settings)), "change events exactly once each"
    assert changes, "the hash scorer makes change events"

    # the whole transcript survived every crash: session s's window holds the user turns of sessions 0..s
    for session_id, n_user_turns in db_rows(db_url, "SELECT trigger_session_id, n_user_turns FROM phq9_scores"):
        assert n_user_turns == 4 * (int(session_id.rsplit("-s", 1)[1]) + 1), session_id

    assert_published_once_by_id(settings, "phq9.scores", {r for r in traffic.ended}, "request_id")
    assert_published_once_by_id(settings, "phq9.alerts", {(r, k) for r, k in changes}, None)


def assert_published_once_by_id(settings, topic: str, expected: set, field: str | None) -> None:
    """Every row on the topic; a redelivered round may publish a row again, but only identical (same id)."""
    by_id: dict[int, set[bytes]] = {}
    for msg in read_topic(settings, topic):
        by_id.setdefault(json.loads(msg.value())["id"], set()).add(msg.value())
    assert all(len(copies) == 1 for copies in by_id.values()), "copies of a row are identical"
    rows = [json.loads(next(iter(copies))) for copies in by_id.values()]
    if field:
        assert {row[field] for row in rows} == expected
    else:
        assert len(rows) == len(expected)
