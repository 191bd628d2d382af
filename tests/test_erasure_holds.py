"""Erasure holds (CONTRACT v2 section 5): a user erased while their requests sit in the scoring worker's
inbox and in a running round gets nothing written or published afterwards, and `phq score --write`
skips an erased user; both check the erasure inside their write transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer
from test_pipeline_support import T0, Proc, db_rows, pipeline_env, read_topic, wait_until
from test_pipeline_observability import metric, metrics_of

from care.erase import erase
from phq.models import ScoringRequest, Turn, request_id

pytestmark = pytest.mark.integration


def request(user: str, n: int) -> ScoringRequest:
    session = f"{user}-s{n}"
    ts = T0 + timedelta(days=n)
    turns = [Turn(session_id=session, ts=ts, turn=0, role="user", text="slept badly again " * 8, event_id=f"{session}-0")]
    return ScoringRequest(request_id=request_id(user, session, ts), user_id=user, trigger_session_id=session,
                          trigger_ts=ts, turns=turns)


def send(settings, requests: list[ScoringRequest]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka()})
    for r in requests:  # one partition, so the inbox holds them in this order
        producer.produce(settings.topic("phq9.scoring.requests"), key=b"same", value=r.model_dump_json(), partition=0)
    assert producer.flush(30) == 0


def rows_of(db_url: str, user: str) -> list:
    return db_rows(db_url, "SELECT request_id FROM phq9_scores WHERE user_id = %s", (user,))


def test_nothing_is_written_or_published_for_a_user_erased_mid_round_and_in_the_inbox(settings, db_url, phq_env,
                                                                                       tmp_path):
    mark = tmp_path / "rounds"
    env = pipeline_env(phq_env, tmp_path, PHQ_WORKER_SCORER="test_pipeline_support:hash_scorer",
                       PHQ_TEST_SCORER_DELAY_S=4, PHQ_TEST_SCORER_MARK=mark, PHQ_BATCH_TOKEN_BUDGET=10,
                       PHQ_BATCH_MAX_WAIT_MS=20)  # one request per round, 4 s each
    erased, kept = "erh-x", "erh-y"
    worker = Proc(["score-worker"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: "partitions assigned" in worker.log(), 60, "the worker to join", [worker])
        send(settings, [request(erased, 0), request(erased, 1), request(erased, 2), request(kept, 0)])
        wait_until(lambda: mark.exists() and f"{erased}-s0" in mark.read_text(), 60, "the first round to start",
                   [worker])
        erase(settings, erased, datetime.now(UTC))  # mid-round for s0; s1 and s2 wait in the inbox
        wait_until(lambda: rows_of(db_url, kept), 60, "the other user's score", [worker])
        wait_until(lambda: metric(metrics_of(worker), 'phq_worker_requests_total{outcome="erased"}') >= 3, 30,
                   "the erased user's three requests counted as erased", [worker])
    finally:
        worker.stop()

    assert rows_of(db_url, erased) == [], "no row written after the erasure"
    published = [json.loads(m.value())["user_id"] for m in read_topic(settings, "phq9.scores")]
    assert published == [kept], "nothing of the erased user published"
    assert mark.read_text().split().count(f"{erased}-s0") == 1 and f"{erased}-s1" not in mark.read_text(), \
        "inbox requests of an erased user are not even scored"


def test_offline_write_skips_a_user_erased_after_their_data(settings, db_url, monkeypatch, tmp_path, capsys):
    from scoring.model import build_untrained
    from scoring.offline import main

    monkeypatch.setenv("PHQ_DATABASE_URL", db_url)
    events = tmp_path / "events.jsonl"
    lines = []
    for user in ("off-erased", "off-kept"):
        base = {"schema_version": 1, "user_id": user, "session_id": f"{user}-a"}
        lines.append(dict(base, event_id=f"{user}-1", event_type="message", ts=T0.isoformat(), role="user", turn=0,
                          text="tired all week"))
        lines.append(dict(base, event_id=f"{user}-2", event_type="session_end", ts=(T0 + timedelta(minutes=3)).isoformat()))
    events.write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    erase(settings, "off-erased", T0 + timedelta(days=1))
    model = build_untrained(tmp_path / "model")
    assert main([str(events), "--model", str(model), "--backend", "transformers", "--write", "--no-progress"]) == 0
    assert "stored 1 new row(s), 1 already there or erased" in capsys.readouterr().err
    assert rows_of(db_url, "off-erased") == [] and len(rows_of(db_url, "off-kept")) == 1
