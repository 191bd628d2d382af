"""The msgspec decoder validates exactly as strictly as the pydantic validator it replaced
(tests/legacy_events.py, the previous phq/events.py verbatim), except for the inputs CONTRACT v2
section 1 newly calls bad: over a corpus of valid, invalid and hostile events, both accept the
same events with the same fields and reject the same ones, and the new one rejects every v2 case."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import legacy_events
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from phq.events import InvalidEvent, parse_event

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
FIELDS = ("schema_version", "event_id", "event_type", "user_id", "session_id", "ts", "role", "turn", "text")


def old(raw: bytes):
    """The previous validator's verdict: ('ok', fields) or ('bad',); a crash is its own verdict."""
    try:
        e = legacy_events.parse_event(raw, now=NOW)
    except legacy_events.InvalidEvent:
        return ("bad",)
    except Exception as exc:  # RecursionError, OverflowError, ...: what v2 fixes
        return ("crash", type(exc).__name__)
    return ("ok", _fields(e))


def new(raw: bytes):
    try:
        e = parse_event(raw, now=NOW)
    except InvalidEvent as exc:
        assert exc.reason and "\n" not in exc.reason
        return ("bad",)
    return ("ok", _fields(e))


def _fields(e) -> tuple:
    return tuple((getattr(e, f), e.ts.utcoffset()) if f == "ts" else getattr(e, f) for f in FIELDS)


def v2_bad(raw: bytes) -> bool:
    """CONTRACT v2 section 1's new bad inputs, judged by the standard library (not by either validator)."""
    def no_constants(token):
        raise ValueError(token)

    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=no_constants)
    except RecursionError:
        return True  # deeper than 64, certainly
    except (ValueError, UnicodeDecodeError):
        return _has_constant_token(raw)
    if _depth(obj) > 64 or _has_lone_surrogate(obj):
        return True
    if not isinstance(obj, dict):
        return False
    version, turn = obj.get("schema_version"), obj.get("turn")
    if isinstance(version, float) or isinstance(turn, int) and not isinstance(turn, bool) and turn > 2**63 - 1:
        return True
    try:
        ts = legacy_events.parse_rfc3339(obj.get("ts"))
    except (ValueError, TypeError):
        return False
    try:
        return ts.astimezone(timezone.utc) < datetime(1970, 1, 1, tzinfo=timezone.utc)
    except OverflowError:
        return True


def _has_constant_token(raw: bytes) -> bool:
    try:
        json.loads(raw.decode("utf-8"))
        return True  # only parse_constant objected: NaN, Infinity or -Infinity
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def _depth(obj) -> int:
    if isinstance(obj, dict):
        return 1 + max((_depth(v) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((_depth(v) for v in obj), default=0)
    return 0


def _has_lone_surrogate(obj) -> bool:
    if isinstance(obj, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in obj)
    if isinstance(obj, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_lone_surrogate(v) for v in obj)
    return False


# ------------------------------------------------------------------------------ the corpus

BASE = {"schema_version": 1, "event_id": "e-1", "event_type": "message", "user_id": "u-1", "session_id": "s-1",
        "ts": "2026-11-28T11:00:00Z", "role": "user", "turn": 0, "text": "hello"}
TS = ["2026-11-28T11:00:00Z", "2026-11-28t11:00:00z", "2026-11-28 11:00:00+01:00", "2026-11-28T05:00:00.123456789-05:30",
      "2026-11-28T11:00:00.1+00:00", "2026-11-28T11:00:00", "2026-11-28", "2026-02-30T11:00:00Z", "2026-11-28T24:00:00Z",
      "2026-11-28T11:00:60Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00-01:00", "1969-12-31T23:59:59Z",
      "1970-01-01T00:00:00Z", "1970-01-01T00:59:59+01:00", "9999-12-31T23:59:59-01:00", "2027-11-28T11:00:00Z",
      "2026-11-28T12:04:59Z", "2026-11-28T12:05:01Z", "2026-11-28T11:00:00+24:00", "2026-11-28T11:00:00.Z",
      " 2026-11-28T11:00:00Z", "２０２６-11-28T11:00:00Z"]
VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, 1, -1, 1.0, 1.5, 1e2, 2**63 - 1, 2**63, -(2**63), 10**30, "", "1", "x" * 128,
                     "x" * 129, "é" * 128, "é" * 129, "user", "assistant", "system", "message", "session_start",
                     "session_end", "typing", [], {}, ["u"], {"t": 1}, "\x00", "\ud800", "a\udfffb", "\U0001f600" * 3]),
    st.sampled_from(TS),
    st.text(max_size=12),
    st.integers(-5, 5),
)


@st.composite
def events(draw) -> bytes:
    obj = dict(BASE)
    obj["event_type"] = draw(st.sampled_from(["message", "message", "session_start", "session_end"]))
    if obj["event_type"] != "message" and draw(st.booleans()):
        for f in ("role", "turn", "text"):
            obj.pop(f)
    obj["ts"] = draw(st.sampled_from(TS[:5] * 4 + TS))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        field = draw(st.sampled_from(FIELDS + ("extra", "schema")))
        action = draw(st.sampled_from(["set", "set", "drop"]))
        if action == "drop":
            obj.pop(field, None)
        else:
            obj[field] = draw(VALUES)
    if draw(st.integers(0, 9)) == 0:
        obj["text"] = draw(st.sampled_from(["a" * 32768, "a" * 32769, "é" * 16384, "é" * 16385]))
    raw = json.dumps(obj, ensure_ascii=draw(st.booleans()), allow_nan=True).encode("utf-8", "surrogatepass")
    return draw(_raw_mutation(raw))


@st.composite
def _raw_mutation(draw, raw: bytes) -> bytes:
    kind = draw(st.sampled_from(["none"] * 12 + ["nest", "constant", "float_int", "truncate", "byte", "duplicate",
                                                  "wrap", "bigint"]))
    if kind == "nest":
        depth = draw(st.sampled_from([1, 62, 63, 64, 65, 100, 3000]))
        bracket = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return raw[:-1] + b', "deep": ' + (bracket[0] * depth + bracket[1] * depth).encode() + b"}"
    if kind == "constant":
        return raw[:-1] + b', "x": ' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"])) + b"}"
    if kind == "float_int":
        return raw.replace(b'"turn": 0', b'"turn": ' + draw(st.sampled_from([b"0.0", b"0e0", b"1E2", b"-0"]))).replace(
            b'"schema_version": 1', b'"schema_version": ' + draw(st.sampled_from([b"1", b"1.0", b"1e0", b"10e-1"])))
    if kind == "bigint":
        return raw.replace(b'"turn": 0', b'"turn": ' + draw(st.sampled_from(
            [b"9223372036854775807", b"9223372036854775808", b"99999999999999999999999"])))
    if kind == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "byte":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\x00", b",", b"}"])) + raw[at:]
    if kind == "duplicate":
        return raw[:-1] + b', "turn": 7}'
    if kind == "wrap":
        return draw(st.sampled_from([b"[" + raw + b"]", b"\xef\xbb\xbf" + raw, b" " + raw + b" \n", b"null", b"1", b'"s"']))
    return raw


@hsettings(max_examples=3000, deadline=None, phases=[Phase.generate], database=None,
           suppress_health_check=list(HealthCheck))
@given(events())
def test_the_new_decoder_matches_the_old_validator_except_for_the_v2_bad_inputs(raw):
    if v2_bad(raw):
        assert new(raw) == ("bad",), raw[:200]
    else:
        assert new(raw) == old(raw), raw[:200]


@pytest.mark.parametrize("raw", [
    b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # RecursionError in json.loads
    json.dumps(dict(BASE, ts="0001-01-01T00:00:00+01:00")).encode(),  # OverflowError converting to UTC
    json.dumps(dict(BASE, extra=math.nan)).encode(),  # the NaN token
    json.dumps(dict(BASE, schema_version=1.0)).encode(),  # 1.0 where an int is expected
    json.dumps(dict(BASE, turn=2**63)).encode(),  # outside signed 64-bit
    json.dumps(dict(BASE, ts="1969-12-31T23:59:59Z")).encode(),  # before 1970
    json.dumps(dict(BASE, extra="\ud800")).encode(),  # not Unicode text (a lone surrogate)
])
def test_the_old_validator_accepted_or_crashed_on_each_v2_bad_input(raw):
    assert v2_bad(raw)
    assert old(raw) != ("bad",), "a v2 case the old validator already rejected proves nothing"
    assert new(raw) == ("bad",)


def test_each_timestamp_form_gets_the_same_verdict_from_both():
    verdicts = {}
    for ts in TS:
        raw = json.dumps(dict(BASE, ts=ts)).encode()
        verdicts[ts] = new(raw)[0]
        assert new(raw) == (("bad",) if v2_bad(raw) else old(raw)), ts
    assert set(verdicts.values()) == {"ok", "bad"}


def test_a_repeated_key_counts_once_with_its_last_value_as_before():
    raw = json.dumps(BASE).encode()[:-1] + b', "turn": "not yet", "turn": 7}'
    assert new(raw) == old(raw) and new(raw)[0] == "ok"
    assert parse_event(raw, now=NOW).turn == 7


def test_the_kept_timestamp_text_is_the_parsed_instant_in_isoformat():
    for ts in TS:
        try:
            event = parse_event(json.dumps(dict(BASE, ts=ts)).encode(), now=NOW)
        except InvalidEvent:
            continue
        assert event.ts_iso == event.ts.isoformat(), ts
