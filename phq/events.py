"""Chat events as CONTRACT section 1 (v2) defines them, validated strictly, and the reasons they fail.

`parse_event` is the one gate every consumer uses: one msgspec decode into a typed struct (no
coercion), then the rules JSON types cannot say; its `InvalidEvent` carries a one-line reason that
goes into the DLQ's `error` header. tests/test_events_equivalence.py proves it accepts exactly
what the previous (pydantic) validator accepted, less the v2 bad inputs.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1
MAX_TEXT_BYTES = 32 * 1024
MAX_DEPTH = 64  # v2: deeper JSON is bad input (it once crashed the processor with RecursionError)
INT64_MAX = 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)

# RFC 3339 date-time: a full date, a 'T' (or space, which RFC 3339 allows), seconds, optional
# fraction, and a mandatory offset.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_LONG_FRACTION = re.compile(r"^(.*\.\d{6})\d+([+-].*)$")

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class InvalidEvent(ValueError):
    """An event that breaks the contract; `reason` is one line, fit for the DLQ's `error` header."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Wire(msgspec.Struct):
    """The JSON object as sent: typed, strict (no coercion), unknown fields skipped."""

    schema_version: int
    event_id: Id
    event_type: Literal["session_start", "message", "session_end"]
    user_id: Id
    session_id: Id
    ts: str
    role: Literal["user", "assistant"] | None = None
    turn: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)] | None = None
    text: str | None = None


class ChatEvent(msgspec.Struct, frozen=True):
    """One valid chat event; `ts` keeps its offset, `ts_us` is the same instant in UTC microseconds,
    `ts_iso` is `ts.isoformat()` (computed once)."""

    schema_version: int
    event_id: str
    event_type: str
    user_id: str
    session_id: str
    ts: datetime
    ts_us: int
    ts_iso: str
    role: str | None = None
    turn: int | None = None
    text: str | None = None


_DECODER = msgspec.json.Decoder(_Wire)


def parse_rfc3339(value: str) -> datetime:
    return _parse_rfc3339(value)[0]


def _parse_rfc3339(value: str) -> tuple[datetime, str]:
    """The instant, and its `isoformat()` (the input itself in the common case: no second call)."""
    if not isinstance(value, str) or not (m := _RFC3339.match(value)):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-01-31T09:15:00Z")
    fraction = m.group(1)
    if value[10] == "T" and value[-1] not in "zZ" and (fraction is None or len(fraction) <= 7):
        ts = datetime.fromisoformat(value)  # the common form, as fromisoformat reads it
        same = (fraction is None or len(fraction) == 7) and not value.endswith("-00:00")
        return ts, value if same else ts.isoformat()
    text = value.replace(" ", "T").replace("t", "T")
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    m = _LONG_FRACTION.match(text)  # fromisoformat takes at most 6 fractional digits
    if m:
        text = m.group(1) + m.group(2)
    ts = datetime.fromisoformat(text)
    return ts, ts.isoformat()


def utc_micros(ts: datetime) -> int:
    """Microseconds since 1970 (UTC); raises InvalidEvent for an instant before 1970."""
    us = (ts - EPOCH) // _US  # exact, and no OverflowError (0001-01-01T00:00:00+01:00 is year 0 in UTC)
    if us < 0:
        raise InvalidEvent(f"ts: {ts.isoformat()} is before 1970-01-01T00:00:00Z")
    return us


def json_depth_exceeds(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when arrays/objects nest deeper than `limit` (brackets inside strings do not count)."""
    if data.count(b"[") + data.count(b"{") <= limit:  # the common case, in C
        return False
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _reason(exc: msgspec.MsgspecError) -> str:
    """msgspec's message as `field: what was wrong` (one line)."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not isinstance(exc, msgspec.ValidationError):  # (a ValidationError is a DecodeError too)
        return f"event is not JSON: {msg}"
    if " - at `$." in msg:
        what, _, where = msg.rpartition(" - at `$.")
        return f"{where.rstrip('`')}: {what}"
    if msg.startswith("Expected `object`, got `"):
        return f"event must be a JSON object, not {msg.rsplit('`', 2)[1]}"
    return msg


def parse_event(
    raw: bytes | str,
    *,
    now: datetime | None = None,
    max_clock_skew_s: float = 300,
    max_event_bytes: int = 64 * 1024,
    now_us: int | None = None,
) -> ChatEvent:
    """Decode and validate one event, or raise InvalidEvent with a one-line reason. `now` (or `now_us`,
    UTC microseconds, for a caller checking a batch against one clock reading) bounds the future."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if data is None:
        raise InvalidEvent("event has no value (tombstone)")
    if len(data) > max_event_bytes:
        raise InvalidEvent(f"event is {len(data)} bytes, larger than the {max_event_bytes}-byte limit")
    if not data.isascii():
        try:
            data.decode("utf-8")  # msgspec checks only the strings it keeps
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"event is not valid UTF-8 (byte {exc.start})") from None
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and json_depth_exceeds(data):
        raise InvalidEvent(f"event is not JSON we accept: nested deeper than {MAX_DEPTH} levels")
    try:
        wire = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        wire = _last_of_repeated_keys(data, exc)
    except msgspec.MsgspecError as exc:
        raise InvalidEvent(_reason(exc)) from None
    if now_us is None:
        now_us = (now - EPOCH) // _US if now is not None else int(_wall_clock() * 1_000_000)
    return _validated(wire, now_us, max_clock_skew_s)


def _last_of_repeated_keys(data: bytes, exc: msgspec.ValidationError) -> _Wire:
    """msgspec validates every occurrence of a repeated key, JSON readers (and v1) keep the last one:
    where a key repeats, validate what the last occurrences say; else `exc` stands."""
    repeated = False

    def pairs(items):
        nonlocal repeated
        repeated = repeated or len({k for k, _ in items}) < len(items)
        return dict(items)

    def no_constant(token):
        raise InvalidEvent(f"event is not JSON: {token} is not a JSON number")

    try:
        obj = json.loads(data, object_pairs_hook=pairs, parse_constant=no_constant)
    except ValueError:  # not JSON after all: msgspec's reason says where
        raise InvalidEvent(_reason(exc)) from None
    if not repeated:
        raise InvalidEvent(_reason(exc))
    if _has_lone_surrogate(obj):
        raise InvalidEvent("event is not JSON we accept: a string holds a lone UTF-16 surrogate")
    try:
        return msgspec.convert(obj, _Wire)
    except msgspec.ValidationError as again:
        raise InvalidEvent(_reason(again)) from None


def _has_lone_surrogate(obj) -> bool:
    if isinstance(obj, str):
        return any("\ud800" <= c <= "\udfff" for c in obj)
    if isinstance(obj, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_lone_surrogate(v) for v in obj)
    return False


def _validated(w: _Wire, now_us: int, max_clock_skew_s: float) -> ChatEvent:
    """The rules JSON types cannot state: version, timestamp, text size, which fields a type has."""
    if w.schema_version != SCHEMA_VERSION:
        raise InvalidEvent(f"unknown schema_version {w.schema_version!r}; this consumer reads version {SCHEMA_VERSION}")
    if w.event_type == "message":
        if w.role is None or w.turn is None or w.text is None:
            missing = [name for name in ("role", "turn", "text") if getattr(w, name) is None]
            raise InvalidEvent(f"event: a message event needs {', '.join(missing)}")
        if len(w.text) > MAX_TEXT_BYTES // 4 and len(w.text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise InvalidEvent(f"text: is larger than {MAX_TEXT_BYTES} bytes of UTF-8")
    elif w.role is not None or w.turn is not None or w.text is not None:
        present = [name for name in ("role", "turn", "text") if getattr(w, name) is not None]
        raise InvalidEvent(f"event: {', '.join(present)} belong to message events only, not {w.event_type}")
    try:
        ts, ts_iso = _parse_rfc3339(w.ts)
    except ValueError as exc:
        raise InvalidEvent(f"ts: {exc}") from None
    ts_us = utc_micros(ts)
    if ts_us > now_us + max_clock_skew_s * 1_000_000:
        raise InvalidEvent(
            f"ts {ts_iso} is more than {max_clock_skew_s:g}s in the future (PHQ_MAX_CLOCK_SKEW_S)"
        )
    return ChatEvent(w.schema_version, w.event_id, w.event_type, w.user_id, w.session_id, ts, ts_us, ts_iso,
                     w.role, w.turn, w.text)


def _wall_clock() -> float:
    import time

    return time.time()


def event_json_schema() -> dict:
    """The JSON Schema of a chat event, as `phq schema` writes it to docs/event.schema.json."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://phq-monitor.example/schemas/chat-event-v1.json",
        "title": "phq-monitor chat event (schema_version 1)",
        "description": "One event on topic chat.events (key: user_id as UTF-8). Unknown extra fields are ignored.",
        "type": "object",
        "required": ["schema_version", "event_id", "event_type", "user_id", "session_id", "ts"],
        "properties": {
            "schema_version": {"const": 1},
            "event_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "event_type": {"enum": ["session_start", "message", "session_end"]},
            "user_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "session_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "ts": {
                "type": "string",
                "format": "date-time",
                "pattern": _RFC3339.pattern,
                "description": "event time, RFC 3339 with an offset; at most PHQ_MAX_CLOCK_SKEW_S in the future",
            },
            "role": {"enum": ["user", "assistant"]},
            "turn": {"type": "integer", "minimum": 0},
            "text": {"type": "string", "description": f"at most {MAX_TEXT_BYTES} bytes of UTF-8"},
        },
        "if": {"properties": {"event_type": {"const": "message"}}},
        "then": {"required": ["role", "turn", "text"]},
        "else": {
            "properties": {"role": {"type": "null"}, "turn": {"type": "null"}, "text": {"type": "null"}},
        },
    }
    return schema


def read_event_file(path, *, max_clock_skew_s: float = 300, max_event_bytes: int = 64 * 1024):
    """Yield (line_no, raw bytes, ChatEvent or InvalidEvent) for each non-blank line of a JSON-lines file.

    Callers report an InvalidEvent as `FILE:LINE: skipped: reason` and go on, so a bad line loses
    nothing else.
    """
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                yield line_no, raw, parse_event(raw, max_clock_skew_s=max_clock_skew_s, max_event_bytes=max_event_bytes)
            except InvalidEvent as exc:
                yield line_no, raw, exc
