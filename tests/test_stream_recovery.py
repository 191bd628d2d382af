"""Stream processor v2 across stops and faults, on the real broker: sessions continued while it was down
are not ended early on restart, expiry leaves a store the changelog restores exactly, and a batch that
keeps failing is split until it commits."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from confluent_kafka import KafkaError, KafkaException
from test_pipeline_support import T0, make_traffic, produce, wait_until
from test_stream_v2 import Running, _committed, end, msg, requests, requests_by_session, user_turns

from phq.models import request_id
from stream import app as stream_app
from stream.changelog import changelog_topic, restore
from stream.store import CHECKPOINT_KEY, PartitionStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def stream_settings(settings, tmp_path):
    return settings.model_copy(update={"stream_state_dir": str(tmp_path / "state"), "session_idle_s": 4,
                                       "stream_transaction_timeout_ms": 6000, "session_timeout_ms": 6000})


def test_sessions_continued_during_downtime_are_scored_by_their_end_not_ended_on_restart(stream_settings):
    users = [f"down-{u:03d}" for u in range(20)]
    first = [e for u in users for e in (msg(u, f"{u}-s0", 0, 0), msg(u, f"{u}-s0", 1, 1, role="assistant"))]
    rest = [e for u in users for e in (msg(u, f"{u}-s0", 2, 2), msg(u, f"{u}-s0", 3, 3, role="assistant"),
                                       msg(u, f"{u}-s0", 4, 4), end(u, f"{u}-s0", 5))]
    running = Running(stream_settings)
    try:
        produce(stream_settings, first)
        wait_until(lambda: sum(_committed(stream_settings).values()) == len(first), 60, "the first turns processed")
    finally:
        running.stop()
    stopped = time.monotonic()
    produce(stream_settings, rest)  # the platform goes on, well within the idle limit
    time.sleep(max(0.0, 2 * stream_settings.session_idle_s - (time.monotonic() - stopped)))  # down 2x the limit
    running = Running(stream_settings)
    try:
        wait_until(lambda: len(requests(stream_settings)) >= len(users), 60, "every session's request")
        time.sleep(stream_settings.session_idle_s + 2)  # an idle end on top would show up now
    finally:
        running.stop()
    by_session = requests_by_session(stream_settings)
    assert sorted(by_session) == sorted(f"{u}-s0" for u in users)
    for u in users:
        (request,) = by_session[f"{u}-s0"]
        assert request["request_id"] == request_id(u, f"{u}-s0", T0 + timedelta(minutes=5)), "ended by session_end"
        assert user_turns(request) == [0, 2, 4]


def test_expiry_goes_through_the_changelog_so_a_restored_store_equals_the_original(stream_settings, monkeypatch,
                                                                                   tmp_path):
    monkeypatch.setattr(stream_app, "EXPIRY_EVERY_S", 0.5)
    tiny = stream_settings.model_copy(update={"window_days": 2 / 86400, "stream_replay_horizon_days": 2 / 86400})
    old, recent = make_traffic(10, sessions=2, prefix="exp-old-"), make_traffic(5, sessions=1, prefix="exp-new-")
    running = Running(tiny)
    try:
        produce(tiny, old.events)
        wait_until(lambda: len(requests(tiny)) >= len(old.ended), 60, "the old sessions scored")
        time.sleep(5)  # past window + horizon (4 s of arrival time): the old sessions expire
        produce(tiny, recent.events)
        wait_until(lambda: len(requests(tiny)) >= len(old.ended) + len(recent.ended), 60, "the recent ones scored")
        time.sleep(2)
        stores = dict(running.processor.stores)
        original = {p: _contents(s) for p, s in stores.items()}
    finally:
        running.stop()
    kept = [k for contents in original.values() for k in contents if k.startswith(b"m")]
    assert kept and all(b"exp-new-" in k for k in kept), "old sessions expired, recent ones kept"
    for partition, contents in original.items():
        fresh = PartitionStore(partition, None)
        restore(tiny, changelog_topic(tiny), fresh)
        assert _contents(fresh) == contents, f"partition {partition}: the changelog restores the same store"


def _contents(store) -> dict[bytes, bytes]:
    return {k: v for k, v in store.committed_items(b"") if k != CHECKPOINT_KEY}


def test_a_batch_that_fails_twice_is_split_until_it_commits(stream_settings, monkeypatch, caplog):
    traffic = make_traffic(40, sessions=1, turns=8, prefix="split-")
    real = stream_app.StreamProcessor._send_offsets

    def send_offsets(self, batch):  # a broker that times out on any batch of more than 50 events
        if stream_app.msgs_left(batch) > 50:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "simulated: batch too large"))
        real(self, batch)

    monkeypatch.setattr(stream_app.StreamProcessor, "_send_offsets", send_offsets)
    produce(stream_settings, traffic.events)
    caplog.set_level(logging.WARNING, logger="phq.stream")
    running = Running(stream_settings)
    try:
        wait_until(lambda: len(requests(stream_settings)) >= len(traffic.ended), 120, "every request")
    finally:
        running.stop()
    assert sorted(r["request_id"] for r in requests(stream_settings)) == sorted(traffic.ended)
    assert "batch failed twice; retrying it in halves" in caplog.text
