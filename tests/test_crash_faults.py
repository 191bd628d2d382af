"""Service faults mid-replay, on services these tests start themselves (never the shared dev ones):
Postgres stopped and restarted (the worker backs off and retries, nothing lost), and the Kafka broker
stopped and restarted (both processes ride it out)."""

from __future__ import annotations

import shutil
import time

import pytest
from test_pipeline_support import (
    Proc,
    Replay,
    assert_whole_transcripts,
    crash_env,
    expected_changes,
    make_traffic,
    score_counts,
    stored_changes,
    wait_until,
    with_duplicates,
)

from phq import devservices
from phq.db import migrate
from phq.kafka_admin import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_with_fault(settings, db_url, env, tmp_path, prefix: str, fault) -> tuple[Proc, Proc]:
    traffic = make_traffic(60, sessions=2, turns=4, prefix=prefix)  # user turns 0, 2: two per session
    stream = Proc(["stream"], env, tmp_path / "stream.log")
    worker = Proc(["score-worker"], env, tmp_path / "worker.log")
    try:
        replay = Replay(settings, with_duplicates(traffic.events, share=0.1), seconds=10)
        replay.start()
        time.sleep(4)
        fault()
        replay.join(180)
        assert replay.error is None
        wait_until(lambda: len(score_counts(db_url, prefix)) >= len(traffic.ended), 180, "every expected score",
                   [stream, worker], interval=2)
        time.sleep(2)
    finally:
        stream.stop(), worker.stop()
    assert score_counts(db_url, prefix) == {rid: 1 for rid in traffic.ended}
    assert sorted(stored_changes(db_url, prefix)) == sorted(expected_changes(db_url, settings, prefix))
    assert_whole_transcripts(db_url, prefix, user_turns_per_session=2)
    return stream, worker


def test_postgres_restart_mid_run_loses_nothing(settings, phq_env, tmp_path):
    state = devservices.State(tmp_path / "pg-dev")
    url = devservices.pg_up(state)
    try:
        migrate(url)

        def restart_postgres():
            devservices.pg_down(state)
            time.sleep(5)
            devservices.pg_up(state)

        env = crash_env(phq_env, tmp_path, PHQ_DATABASE_URL=url)
        _, worker = run_with_fault(settings, url, env, tmp_path, "pgf-", restart_postgres)
        assert "Postgres unavailable; retrying" in worker.log()
    finally:
        devservices.pg_down(state)
        shutil.rmtree(devservices.pg_home(state.dir), ignore_errors=True)


def test_kafka_broker_restart_mid_run_loses_nothing(settings, db_url, phq_env, tmp_path):
    state = devservices.State(tmp_path / "kafka-dev")
    bootstrap = devservices.kafka_up(state)
    try:
        own = settings.model_copy(update={"kafka_bootstrap": bootstrap})
        ensure_topics(own)

        def restart_broker():
            devservices.kafka_down(state)
            time.sleep(3)
            devservices.kafka_up(state)

        env = crash_env(phq_env, tmp_path, PHQ_KAFKA_BOOTSTRAP=bootstrap)
        run_with_fault(own, db_url, env, tmp_path, "kbr-", restart_broker)
    finally:
        devservices.kafka_down(state)
