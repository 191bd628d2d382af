"""Scale-out: two stream processors and two scoring workers share the partitions (one consumer group
per role); stopping one of each mid-replay loses and duplicates nothing."""

from __future__ import annotations

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


def test_two_of_each_role_share_partitions_and_survive_losing_one(settings, db_url, phq_env, tmp_path):
    traffic = make_traffic(120, sessions=3, turns=5, prefix="scale-")  # user turns 0, 2, 4: three per session
    env = crash_env(phq_env, tmp_path)
    streams = [Proc(["stream"], env, tmp_path / f"stream{i}.log") for i in range(2)]
    workers = [Proc(["score-worker"], env, tmp_path / f"worker{i}.log") for i in range(2)]
    everyone = streams + workers
    try:
        wait_until(lambda: all("assigned" in p.log() for p in everyone), 60, "all four to get partitions", everyone)
        replay = Replay(settings, with_duplicates(traffic.events, share=0.1), seconds=14)
        replay.start()
        time.sleep(6)
        assert streams[1].stop() == 0 and workers[1].stop() == 0  # the scale-down, mid-replay
        replay.join(60)
        assert replay.error is None
        wait_until(lambda: len(score_counts(db_url, "scale-")) >= len(traffic.ended), 180, "every expected score",
                   [streams[0], workers[0]], interval=2)
        time.sleep(3)
    finally:
        for proc in everyone:
            proc.stop()

    assert score_counts(db_url, "scale-") == {rid: 1 for rid in traffic.ended}
    changes = stored_changes(db_url, "scale-")
    assert sorted(changes) == sorted(expected_changes(db_url, settings, "scale-"))
    assert_whole_transcripts(db_url, "scale-", user_turns_per_session=3)
    assert_published_once_by_id(settings, "phq9.scores", set(traffic.ended), "request_id")
    assert_published_once_by_id(settings, "phq9.alerts", set(changes), None)
