"""`phq erase` mid-replay: the user's rows leave Postgres, the stream processor drops their transcript,
and both processes ignore that user's events and requests from before the erasure (later ones count again)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from confluent_kafka import Producer
from test_pipeline_support import T0, Proc, db_rows, make_traffic, pipeline_env, produce, wait_until

from care.erase import erase
from phq.models import ScoringRequest, Turn, request_id

pytestmark = pytest.mark.integration


def rows_of(db_url: str, user: str) -> dict[str, tuple[int, int]]:
    return {r[0]: (r[1], r[2]) for r in db_rows(
        db_url, "SELECT trigger_session_id, n_sessions, n_user_turns FROM phq9_scores WHERE user_id = %s", (user,))}


def test_erased_users_transcript_is_dropped_and_earlier_events_ignored(settings, db_url, phq_env, tmp_path):
    traffic = make_traffic(1, sessions=4, turns=2, prefix="era-")  # era-0000: sessions on days 0..3, one user turn each
    user = "era-0000"
    by_session = {}
    for event in traffic.events:
        by_session.setdefault(event["session_id"], []).append(event)
    env = pipeline_env(phq_env, tmp_path)
    stream = Proc(["stream"], env, tmp_path / "stream.log")
    worker = Proc(["score-worker"], env, tmp_path / "worker.log")
    try:
        produce(settings, by_session[f"{user}-s0"] + by_session[f"{user}-s1"])
        wait_until(lambda: len(rows_of(db_url, user)) == 2, 60, "two scores before the erasure", [stream, worker])

        erase(settings, user, T0 + timedelta(days=1, hours=12))
        assert rows_of(db_url, user) == {}, "the erasure deletes the user's scores"
        time.sleep(2)  # both processes poll the erasures topic between batches
        late = dict(by_session[f"{user}-s2"][1], event_id="late-from-before", ts=(T0 + timedelta(hours=3)).isoformat())
        produce(settings, [late] + by_session[f"{user}-s2"] + by_session[f"{user}-s3"])
        _send_request(settings, user, f"{user}-old", T0 + timedelta(days=1))  # replayed request from before
        wait_until(lambda: len(rows_of(db_url, user)) == 2, 60, "scores after the erasure", [stream, worker])
        time.sleep(2)
    finally:
        stream.stop(), worker.stop()

    rows = rows_of(db_url, user)
    assert set(rows) == {f"{user}-s2", f"{user}-s3"}, "nothing from before the erasure is scored again"
    assert rows[f"{user}-s2"] == (1, 1), "the transcript before the erasure is gone; the late event was ignored"
    assert rows[f"{user}-s3"] == (2, 2), "events after the erasure count again"


def _send_request(settings, user: str, session: str, ts) -> None:
    request = ScoringRequest(request_id=request_id(user, session, ts), user_id=user, trigger_session_id=session,
                             trigger_ts=ts, turns=[Turn(session_id=session, ts=ts, turn=0, role="user", text="hi")])
    producer = Producer({"bootstrap.servers": settings.kafka()})
    producer.produce(settings.topic("phq9.scoring.requests"), key=user.encode(), value=request.model_dump_json())
    assert producer.flush(30) == 0
