"""Bad input never stops the pipeline: >= 1,000 hypothesis-made malformed or hostile events, sent as one
batch amid valid traffic, all land in chat.events.dlq with their reason and coordinates, and every valid
session (hostile but valid text included) is scored once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_pipeline_support import Proc, make_traffic, pipeline_env, produce, read_topic, score_counts, wait_until

from phq.events import InvalidEvent, parse_event

pytestmark = pytest.mark.integration

HOSTILE = ["'; DROP TABLE phq9_scores; --", "<script>alert(1)</script>", "\" OR 1=1 --", "<img src=x onerror=y>",
           "\u202e\u0000\ufeff", "${jndi:ldap://x}", "../../etc/passwd", "%s%s%n"]
REQUIRED = ["schema_version", "event_id", "event_type", "user_id", "session_id", "ts"]


def _with(event: dict, **fields) -> bytes:
    return json.dumps(dict(event, **fields)).encode()


V2_CASES = [
    lambda e: json.dumps(e).encode()[:-1] + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # RecursionError once
    lambda e: json.dumps(e).encode()[:-1] + b', "x": ' + b"[" * 65 + b"]" * 65 + b"}",  # just past 64 levels
    lambda e: _with(e, ts="0001-01-01T00:00:00+01:00"),  # OverflowError once
    lambda e: _with(e, ts="1969-12-31T23:59:59Z"),
    lambda e: json.dumps(e).encode()[:-1] + b', "x": NaN}',
    lambda e: json.dumps(e).encode()[:-1] + b', "x": -Infinity}',
    lambda e: json.dumps(e).encode().replace(b'"turn": 0', b'"turn": 0.0'),
    lambda e: json.dumps(e).encode().replace(b'"schema_version": 1', b'"schema_version": 1.0'),
    lambda e: json.dumps(e).encode().replace(b'"turn": 0', b'"turn": 9223372036854775808'),
    lambda e: _with(e, user_id="\ud800"),  # not Unicode text: its key could not be encoded
]


def base(user: str, n: int, text: str) -> dict:
    return {"schema_version": 1, "event_id": f"bad-{n}", "event_type": "message", "user_id": user,
            "session_id": f"{user}-bad", "ts": "2026-01-05T09:00:00Z", "role": "user", "turn": 0, "text": text}


@st.composite
def bad_event(draw, users: list[str]) -> tuple[str, bytes]:
    user = draw(st.sampled_from(users))
    event = base(user, draw(st.integers(0, 10**9)), draw(st.sampled_from(HOSTILE)) + draw(st.text(max_size=20)))
    kind = draw(st.sampled_from(["utf8", "json", "not_object", "missing", "wrong_type", "huge", "future",
                                 "message_fields", "schema", "v2"]))
    if kind == "v2":  # CONTRACT v2 section 1: each of these once stopped, or could stop, the processor
        return user, draw(st.sampled_from(V2_CASES))(event)
    if kind == "utf8":
        raw = json.dumps(event, ensure_ascii=False).encode()
        at = draw(st.integers(1, len(raw) - 1))
        return user, raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])) + raw[at:]
    if kind == "json":
        raw = json.dumps(event).encode()
        return user, raw[: draw(st.integers(0, len(raw) - 2))]
    if kind == "not_object":
        return user, json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=9),
                                               st.none(), st.booleans()))).encode()
    if kind == "missing":
        event.pop(draw(st.sampled_from(REQUIRED)))
    elif kind == "wrong_type":
        field, value = draw(st.sampled_from([
            ("turn", "3"), ("turn", 1.5), ("turn", True), ("turn", -1), ("ts", 1767603600), ("ts", "2026-01-05T09:00:00"),
            ("ts", "yesterday"), ("event_id", 12), ("event_id", ""), ("user_id", None), ("user_id", ["u"]),
            ("role", "system"), ("event_type", "msg"), ("text", {"t": 1}), ("session_id", 3.0)]))
        event[field] = value
    elif kind == "huge":
        field = draw(st.sampled_from(["text", "event_id", "user_id", "padding"]))
        size = {"text": 33 * 1024, "event_id": 129, "user_id": 129, "padding": 70 * 1024}[field]
        event[field] = "x" * (size + draw(st.integers(0, 100)))
    elif kind == "future":
        ahead = timedelta(seconds=draw(st.integers(3600, 10 * 365 * 86400)))
        event["ts"] = (datetime.now(timezone.utc) + ahead).isoformat()
    elif kind == "message_fields":
        if draw(st.booleans()):
            event.pop(draw(st.sampled_from(["role", "turn", "text"])))
        else:
            event["event_type"] = draw(st.sampled_from(["session_start", "session_end"]))
    else:
        event["schema_version"] = draw(st.sampled_from([2, 0, "1", True, None]))
    return user, json.dumps(event).encode()


def test_every_bad_event_goes_to_the_dlq_and_every_valid_session_is_scored_once(settings, db_url, phq_env, tmp_path):
    traffic = make_traffic(20, sessions=2, turns=4, prefix="dlq-")
    for i, event in enumerate(e for e in traffic.events if e["event_type"] == "message"):
        event["text"] = HOSTILE[i % len(HOSTILE)] + " " + event["text"]  # hostile but valid: scored like any text
    users = sorted({e["user_id"] for e in traffic.events})
    bad: list[tuple[str, bytes]] = []

    @hsettings(max_examples=1100, deadline=None, phases=[Phase.generate], database=None,
               suppress_health_check=list(HealthCheck))
    @given(bad_event(users))
    def rejected_by_the_gate(case):
        with pytest.raises(InvalidEvent) as info:
            parse_event(case[1])
        assert "\n" not in info.value.reason
        bad.append(case)

    rejected_by_the_gate()
    assert len(bad) >= 1000
    bad += [(users[0], case(base(users[0], 10**10 + i, "v2"))) for i, case in enumerate(V2_CASES)]  # each one surely

    half = len(traffic.events) // 2
    produce(settings, traffic.events[:half])
    sent = _produce_raw(settings, bad)
    produce(settings, traffic.events[half:])

    env = pipeline_env(phq_env, tmp_path)
    stream = Proc(["stream"], env, tmp_path / "stream.log")
    worker = Proc(["score-worker"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: len(score_counts(db_url, "dlq-")) >= len(traffic.ended), 120, "valid sessions scored",
                   [stream, worker])
        dlq = wait_until(lambda: (r := read_topic(settings, "chat.events.dlq")) and len(r) >= len(sent) and r, 60,
                         "every bad event in the DLQ", [stream])
    finally:
        stream.stop(), worker.stop()

    assert score_counts(db_url, "dlq-") == {rid: 1 for rid in traffic.ended}
    got = {}
    for msg in dlq:
        headers = dict(msg.headers())
        assert headers["source_topic"].decode() == settings.topic("chat.events")
        assert headers["error"] and b"\n" not in headers["error"]
        got[(int(headers["source_partition"]), int(headers["source_offset"]))] = msg.value()
    assert got == sent, "each bad event once in the DLQ, original bytes, its own coordinates"


def _produce_raw(settings, cases: list[tuple[str, bytes]]) -> dict[tuple[int, int], bytes]:
    """Produce as one batch; returns {(partition, offset): bytes} of what the broker stored."""
    stored = {}

    def on_delivery(err, msg):
        assert err is None, err
        stored[(msg.partition(), msg.offset())] = msg.value()

    producer = Producer({"bootstrap.servers": settings.kafka(), "linger.ms": 50, "message.max.bytes": 2 * 1024 * 1024})
    for user, raw in cases:
        producer.produce(settings.topic("chat.events"), key=user.encode(), value=raw, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(60) == 0
    return stored
