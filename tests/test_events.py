"""The chat event contract (CONTRACT section 1): each rule, one test."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from phq.events import MAX_TEXT_BYTES, InvalidEvent, event_json_schema, parse_event

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def event(**overrides):
    base = {
        "schema_version": 1, "event_id": "e-1", "event_type": "message", "user_id": "u-1",
        "session_id": "s-1", "ts": "2026-11-28T11:00:00Z", "role": "user", "turn": 0, "text": "hello",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def parse(obj, **kw):
    raw = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    return parse_event(raw, now=NOW, **kw)


def rejects(obj, fragment, **kw):
    with pytest.raises(InvalidEvent) as info:
        parse(obj, **kw)
    assert fragment in info.value.reason
    assert "\n" not in info.value.reason
    return info.value.reason


def test_a_valid_message_is_accepted():
    e = parse(event())
    assert (e.user_id, e.role, e.turn, e.text) == ("u-1", "user", 0, "hello")
    assert e.ts == datetime(2026, 11, 28, 11, 0, tzinfo=timezone.utc)


def test_session_start_and_end_need_no_message_fields():
    for kind in ("session_start", "session_end"):
        assert parse(event(event_type=kind, role=..., turn=..., text=...)).event_type == kind


def test_unknown_extra_fields_are_ignored():
    assert parse(event(synthetic=True, client="ios")).event_id == "e-1"


def test_not_json_is_rejected():
    rejects(b"{not json", "not JSON")


def test_broken_utf8_is_rejected():
    rejects(b'{"a": "\xff\xfe"}', "UTF-8")


def test_a_json_value_that_is_not_an_object_is_rejected():
    rejects("[1, 2]", "JSON object")


@pytest.mark.parametrize("field", ["schema_version", "event_id", "event_type", "user_id", "session_id", "ts"])
def test_a_missing_required_field_is_rejected(field):
    rejects(event(**{field: ...}), field)


@pytest.mark.parametrize("field", ["role", "turn", "text"])
def test_a_message_without_its_fields_is_rejected(field):
    rejects(event(**{field: ...}), field)


def test_message_fields_on_other_events_are_rejected():
    rejects(event(event_type="session_end", turn=..., text=...), "message events only")


def test_unknown_schema_version_is_rejected():
    rejects(event(schema_version=2), "schema_version")
    rejects(event(schema_version="1"), "schema_version")
    rejects(event(schema_version=True), "schema_version")


def test_unknown_event_type_is_rejected():
    rejects(event(event_type="typing"), "event_type")


def test_unknown_role_is_rejected():
    rejects(event(role="system"), "role")


def test_turn_is_not_coerced_from_a_string():
    rejects(event(turn="3"), "turn")


def test_turn_is_not_a_bool_or_float():
    rejects(event(turn=True), "turn")
    rejects(event(turn=1.0), "turn")


def test_negative_turn_is_rejected():
    rejects(event(turn=-1), "turn")


@pytest.mark.parametrize("field", ["event_id", "user_id", "session_id"])
def test_ids_are_1_to_128_characters(field):
    rejects(event(**{field: ""}), field)
    rejects(event(**{field: "x" * 129}), field)
    assert parse(event(**{field: "x" * 128}))


@pytest.mark.parametrize("field", ["event_id", "user_id", "session_id", "text"])
def test_string_fields_are_not_coerced_from_numbers(field):
    rejects(event(**{field: 42}), field)


def test_text_at_most_32_kib_of_utf8():
    assert parse(event(text="a" * MAX_TEXT_BYTES), max_event_bytes=10**6)
    rejects(event(text="é" * (MAX_TEXT_BYTES // 2 + 1)), "text", max_event_bytes=10**6)


def test_an_event_over_the_size_limit_is_rejected():
    rejects(event(text="a" * 2000), "larger than", max_event_bytes=1000)


@pytest.mark.parametrize("ts", ["2026-11-28T11:00:00", "2026-11-28", "1764327600", "2026-11-28T11:00Z", "yesterday"])
def test_ts_without_an_offset_or_not_rfc3339_is_rejected(ts):
    rejects(event(ts=ts), "ts")


def test_ts_as_a_number_is_rejected():
    rejects(event(ts=1764327600), "ts")


@pytest.mark.parametrize("ts", ["2026-11-28T11:00:00+01:00", "2026-11-28T05:00:00.123456789-05:30", "2026-11-28t11:00:00z"])
def test_rfc3339_offsets_and_fractions_are_accepted(ts):
    assert parse(event(ts=ts)).ts.tzinfo is not None


def test_ts_too_far_in_the_future_is_rejected():
    future = (NOW + timedelta(seconds=301)).isoformat()
    rejects(event(ts=future), "future", max_clock_skew_s=300)
    assert parse(event(ts=(NOW + timedelta(seconds=299)).isoformat()), max_clock_skew_s=300)


def test_the_checked_in_json_schema_is_current():
    path = Path(__file__).resolve().parent.parent / "docs" / "event.schema.json"
    assert json.loads(path.read_text()) == event_json_schema(), "run `phq schema` to refresh docs/event.schema.json"
