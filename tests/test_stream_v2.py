"""Stream processor v2 on the real broker, run in this process (so a test can reach into it): an event
that raises goes to the DLQ, idleness follows arrival time (CONTRACT v2 section 2), every transaction
carries every assigned partition's offset, requests go by key, and stores no process owns are deleted."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from confluent_kafka.admin import NewTopic
from test_pipeline_support import T0, _event, make_traffic, produce, read_topic, wait_until

from phq.kafka_admin import admin
from phq.models import request_id
from stream import app as stream_app
from stream.app import StreamProcessor, group_id

pytestmark = pytest.mark.integration


class Running:
    """A StreamProcessor on a thread of this test."""

    def __init__(self, settings, prepare=lambda processor: None):
        self.processor = StreamProcessor(settings)
        prepare(self.processor)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.processor.run()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self):
        self.processor.stop()
        self.thread.join(60)
        assert not self.thread.is_alive() and self.error is None, self.error


@pytest.fixture
def stream_settings(settings, tmp_path):
    return settings.model_copy(update={"stream_state_dir": str(tmp_path / "state"), "session_idle_s": 4,
                                       "stream_transaction_timeout_ms": 6000, "session_timeout_ms": 6000})


def requests(settings) -> list[dict]:
    return [json.loads(m.value()) for m in read_topic(settings, "phq9.scoring.requests")]


def requests_by_session(settings) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in requests(settings):
        out.setdefault(r["trigger_session_id"], []).append(r)
    return out


def user_turns(request: dict) -> list[int]:
    return [t["turn"] for t in request["turns"] if t["role"] == "user"]


def msg(user, session, k, minutes, role="user"):
    return _event(f"{session}-m{k}", "message", user, session, T0 + timedelta(minutes=minutes), role=role, turn=k,
                  text=f"turn {k}")


def end(user, session, minutes):
    return _event(f"{session}-end", "session_end", user, session, T0 + timedelta(minutes=minutes))


def test_an_event_that_raises_while_processed_goes_to_the_dlq_and_the_rest_is_scored(stream_settings, monkeypatch):
    traffic = make_traffic(6, sessions=1, turns=4, prefix="boom-")
    boom = msg("boom-0000", "boom-0000-s0", 9, 2)
    boom["event_id"] = "boom"
    events = traffic.events[:10] + [boom] + traffic.events[10:]
    real = stream_app.apply_event

    def apply_event(store, event, arrival, rules):
        if event.event_id == "boom":
            raise RecursionError("maximum recursion depth exceeded")
        return real(store, event, arrival, rules)

    monkeypatch.setattr(stream_app, "apply_event", apply_event)
    produce(stream_settings, events)
    running = Running(stream_settings)
    try:
        wait_until(lambda: len(requests(stream_settings)) >= len(traffic.ended), 60, "every session's request")
        dlq = wait_until(lambda: read_topic(stream_settings, "chat.events.dlq"), 30, "the failing event in the DLQ")
    finally:
        running.stop()
    assert sorted(r["request_id"] for r in requests(stream_settings)) == sorted(traffic.ended)
    (record,) = dlq
    assert json.loads(record.value())["event_id"] == "boom"
    assert b"RecursionError" in dict(record.headers())["error"]


def test_a_session_end_that_overtakes_its_messages_is_scored_once_with_them(stream_settings):
    user, session = "ooo-0001", "ooo-0001-s0"
    running = Running(stream_settings)
    try:
        produce(stream_settings, [end(user, session, 10)])
        time.sleep(1)
        produce(stream_settings, [msg(user, session, 0, 1), msg(user, session, 1, 2, role="assistant"),
                                  msg(user, session, 2, 3)])
        (request,) = wait_until(lambda: requests_by_session(stream_settings).get(session), 30, "the late turns scored")
        time.sleep(stream_settings.session_idle_s + 2)  # a second request would show up now
    finally:
        running.stop()
    assert requests_by_session(stream_settings) == {session: [request]}
    assert user_turns(request) == [0, 2]
    assert request["request_id"] == request_id(user, session, T0 + timedelta(minutes=10))


def test_a_lagging_processor_ends_sessions_by_arrival_time_not_by_its_own_clock(stream_settings):
    """While no processor runs: A falls silent for longer than the idle limit before it goes on; B goes
    on within the limit. Read later in one go, A was idle (and its late turn does not score it again),
    B was not (it is scored by its session_end, whole)."""
    idle = stream_settings.session_idle_s
    produce(stream_settings, [msg("lag-a", "lag-a-s0", 0, 0), msg("lag-b", "lag-b-s0", 0, 0)])
    time.sleep(idle * 0.5)
    produce(stream_settings, [msg("lag-b", "lag-b-s0", 2, 1)])
    time.sleep(idle * 0.5 + 1.5)  # A: idle + 1.5 s of arrival time since its only turn; B: idle / 2 + 1.5 s
    produce(stream_settings, [msg("lag-a", "lag-a-s0", 2, 1), msg("lag-b", "lag-b-s0", 4, 2), end("lag-b", "lag-b-s0", 3)])
    running = Running(stream_settings)
    try:
        wait_until(lambda: {"lag-a-s0", "lag-b-s0"} <= set(requests_by_session(stream_settings)), 30, "both requests")
        time.sleep(idle + 2)
    finally:
        running.stop()
    by_session = requests_by_session(stream_settings)
    (a,), (b,) = by_session["lag-a-s0"], by_session["lag-b-s0"]
    assert user_turns(a) == [0] and a["trigger_ts"].startswith(T0.isoformat()[:19]), "A ended idle, at its last ts"
    assert user_turns(b) == [0, 2, 4], "B was never idle: scored by its end, whole"


def test_every_transaction_commits_the_offsets_of_every_assigned_partition(stream_settings):
    produce(stream_settings, [msg("off-u", "off-u-s0", 0, 0)], key_of=lambda _e: None)
    running = Running(stream_settings)
    try:
        committed = wait_until(lambda: (c := _committed(stream_settings)) and sum(c.values()) == 1 and c, 60,
                               "the event's offset committed")
    finally:
        running.stop()
    assert len(committed) == stream_settings.partitions, "partitions without events have their offsets committed too"


def _committed(settings) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topic("chat.events")
    consumer = Consumer({"bootstrap.servers": settings.kafka(), "group.id": group_id(settings)})
    found = consumer.committed([TopicPartition(topic, p) for p in range(settings.partitions)], timeout=10)
    consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def test_requests_go_by_key_to_a_requests_topic_with_fewer_partitions(stream_settings, topic_prefix):
    narrow = f"{topic_prefix}narrow.requests"
    client = admin(stream_settings.kafka())
    for future in client.create_topics([NewTopic(narrow, 1, 1)]).values():
        future.result(30)
    traffic = make_traffic(12, sessions=1, turns=2, prefix="few-")
    produce(stream_settings, traffic.events)

    def to_narrow(processor):  # chat.events has 3 partitions, this requests topic 1
        processor.requests_topic = narrow

    running = Running(stream_settings, to_narrow)
    try:
        wait_until(lambda: len(_all(stream_settings, narrow)) >= len(traffic.ended), 60, "every request sent")
    finally:
        running.stop()
    assert sorted(json.loads(m.value())["request_id"] for m in _all(stream_settings, narrow)) == sorted(traffic.ended)


def _all(settings, topic: str) -> list:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka(), "group.id": "reader", "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    while (m := consumer.poll(5)) is not None and not m.error():
        out.append(m)
    consumer.close()
    return out


def test_stores_no_running_process_owns_are_deleted(stream_settings, tmp_path):
    base = tmp_path / "state" / group_id(stream_settings)
    orphan = base / "slot-0" / "p7"  # a partition this topic does not have: never assigned here
    free = base / "slot-5" / "p0"  # the store of a slot no process holds
    for path in (orphan, free):
        path.mkdir(parents=True)
        (path / "CURRENT").write_text("x")
    (base / "slot-5.lock").touch()
    running = Running(stream_settings)
    try:
        wait_until(lambda: not orphan.exists(), 60, "the orphaned store deleted")
    finally:
        running.stop()
    assert not free.exists()
    assert (base / "slot-0" / "p0").exists(), "the stores it owns stay"
