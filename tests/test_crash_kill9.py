"""kill -9 of the stream processor and of the scoring worker at random moments of a replay (>= 5,000
events, >= 200 users, real broker and Postgres): every expected score and change event exactly once,
in Postgres and on the output topics, and each window holds the user's whole transcript."""

from __future__ import annotations

import random
import time

import pytest
from test_pipeline_support import (
    Proc,
    Replay,
    assert_published_once_by_id,
    assert_whole_transcripts,
    crash_env,
    expected_changes,
    make_traffic,
    score_counts,
    stored_changes,
    wait_until,
    with_duplicates,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TURNS = 7  # user turns 0, 2, 4, 6: four per session


def test_kill9_of_either_process_loses_and_duplicates_nothing(settings, db_url, phq_env, tmp_path):
    rng = random.Random(20260105)
    traffic = make_traffic(200, sessions=3, turns=TURNS, prefix="kill-")
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
        wait_until(lambda: len(score_counts(db_url, "kill-")) >= len(traffic.ended), 240, "every expected score",
                   [stream, worker], interval=2)
        time.sleep(3)  # anything extra (a duplicate trigger) would show up now
    finally:
        stream.stop(), worker.stop()

    assert score_counts(db_url, "kill-") == {rid: 1 for rid in traffic.ended}
    changes = stored_changes(db_url, "kill-")
    assert sorted(changes) == sorted(expected_changes(db_url, settings, "kill-")), "change events exactly once each"
    assert changes, "the hash scorer makes change events"

    assert_whole_transcripts(db_url, "kill-", user_turns_per_session=4)  # survived every crash

    assert_published_once_by_id(settings, "phq9.scores", {r for r in traffic.ended}, "request_id")
    assert_published_once_by_id(settings, "phq9.alerts", {(r, k) for r, k in changes}, None)
