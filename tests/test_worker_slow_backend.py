"""The model runs off the poll thread: a backend slower than max.poll.interval.ms neither loses the
worker its partitions nor scores anything twice."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from test_pipeline_support import T0, Proc, db_rows, pipeline_env, read_topic, wait_until

from phq.models import ScoringRequest, Turn, request_id

pytestmark = pytest.mark.integration


def requests(n: int, tag: str) -> list[ScoringRequest]:
    out = []
    for i in range(n):
        user, session = f"slow-{tag}-{i}", f"slow-{tag}-{i}-s0"
        turns = [Turn(session_id=session, ts=T0, turn=0, role="user", text="not much sleep lately")]
        out.append(ScoringRequest(request_id=request_id(user, session, T0), user_id=user, trigger_session_id=session,
                                  trigger_ts=T0, turns=turns))
    return out


def slow_rows(db_url: str) -> list:
    return db_rows(db_url, "SELECT request_id FROM phq9_scores WHERE user_id LIKE 'slow-%%'")


def send(settings, batch: list[ScoringRequest]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka()})
    for r in batch:
        producer.produce(settings.topic("phq9.scoring.requests"), key=r.user_id.encode(), value=r.model_dump_json())
    assert producer.flush(30) == 0


def test_a_backend_slower_than_max_poll_interval_keeps_the_partitions(settings, db_url, phq_env, tmp_path):
    env = pipeline_env(phq_env, tmp_path, PHQ_WORKER_SCORER="test_pipeline_support:hash_scorer",
                       PHQ_TEST_SCORER_DELAY_S=9, PHQ_WORKER_MAX_POLL_INTERVAL_MS=6000, PHQ_SESSION_TIMEOUT_MS=6000,
                       PHQ_BATCH_MAX_WAIT_MS=50)
    worker = Proc(["score-worker"], env, tmp_path / "worker.log")
    first, second = requests(5, "a"), requests(5, "b")
    try:
        send(settings, first)
        wait_until(lambda: "partitions assigned" in worker.log(), 30, "the worker to join", [worker])
        wait_until(lambda: len(slow_rows(db_url)) >= 1, 40, "a first slow round", [worker])
        send(settings, second)  # arrives while a 9 s round runs
        wait_until(lambda: len(slow_rows(db_url)) >= 10, 60, "every request scored", [worker])
        wait_until(lambda: len(read_topic(settings, "phq9.scores")) >= 10, 30, "outputs published", [worker])
    finally:
        code = worker.stop(timeout=60)

    log = worker.log()
    assert log.count("partitions assigned") == 1, "no rebalance: the poll thread kept polling"
    assert "MAXPOLL" not in log and "max.poll" not in log
    assert len(read_topic(settings, "phq9.scores")) == 10, "no round redone"
    assert len(slow_rows(db_url)) == 10
    assert code == 0
