"""Chat events as CONTRACT section 1 defines them, validated strictly, and the reasons they fail.

`parse_event` is the one gate every consumer uses: it never coerces, and its `InvalidEvent`
carries a one-line reason that goes into the DLQ's `error` header.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

SCHEMA_VERSION = 1
MAX_TEXT_BYTES = 32 * 1024

# RFC 3339 date-time: a full date, a 'T' (or space, which RFC 3339 allows), seconds, optional
# fraction, and a mandatory offset.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strict=True)]


class InvalidEvent(ValueError):
    """An event that breaks the contract; `reason` is one line, fit for the DLQ's `error` header."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_rfc3339(value: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-01-31T09:15:00Z")
    text = value.replace(" ", "T").replace("t", "T")
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    # fromisoformat takes at most 6 fractional digits
    m = re.match(r"^(.*\.\d{6})\d+([+-].*)$", text)
    if m:
        text = m.group(1) + m.group(2)
    return datetime.fromisoformat(text)


class ChatEvent(BaseModel):
    """One chat event. Unknown extra fields are ignored; nothing is coerced."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    schema_version: Literal[1]
    event_id: Id
    event_type: Literal["session_start", "message", "session_end"]
    user_id: Id
    session_id: Id
    ts: datetime
    role: Literal["user", "assistant"] | None = None
    turn: Annotated[int, Field(ge=0, strict=True)] | None = None
    text: str | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _ts_is_rfc3339(cls, value: object) -> datetime:
        if not isinstance(value, str):
            raise ValueError("must be a string holding an RFC 3339 timestamp with an offset")
        return parse_rfc3339(value)

    @field_validator("text")
    @classmethod
    def _text_fits(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode("utf-8")) > MAX_TEXT_BYTES:
            raise ValueError(f"is larger than {MAX_TEXT_BYTES} bytes of UTF-8")
        return value

    @model_validator(mode="after")
    def _message_fields(self) -> "ChatEvent":
        fields = {"role": self.role, "turn": self.turn, "text": self.text}
        if self.event_type == "message":
            missing = [name for name, value in fields.items() if value is None]
            if missing:
                raise ValueError(f"a message event needs {', '.join(missing)}")
        else:
            present = [name for name, value in fields.items() if value is not None]
            if present:
                raise ValueError(f"{', '.join(present)} belong to message events only, not {self.event_type}")
        return self

    def to_json(self) -> dict:
        out = self.model_dump(mode="json", exclude_none=True)
        out["ts"] = self.ts.isoformat()
        return out


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"]) or "event"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {msg}{more}"


def parse_event(
    raw: bytes | str,
    *,
    now: datetime | None = None,
    max_clock_skew_s: float = 300,
    max_event_bytes: int = 64 * 1024,
) -> ChatEvent:
    """Decode and validate one event, or raise InvalidEvent with a one-line reason."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if data is None:
        raise InvalidEvent("event has no value (tombstone)")
    if len(data) > max_event_bytes:
        raise InvalidEvent(f"event is {len(data)} bytes, larger than the {max_event_bytes}-byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"event is not valid UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"event is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise InvalidEvent(f"event must be a JSON object, not {type(obj).__name__}")
    version = obj.get("schema_version")
    if "schema_version" in obj and version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidEvent(f"unknown schema_version {version!r}; this consumer reads version {SCHEMA_VERSION}")
    try:
        event = ChatEvent.model_validate(obj)
    except ValidationError as exc:
        raise InvalidEvent(_first_error(exc)) from None
    now = now or datetime.now(timezone.utc)
    if event.ts > now + timedelta(seconds=max_clock_skew_s):
        raise InvalidEvent(
            f"ts {event.ts.isoformat()} is more than {max_clock_skew_s:g}s in the future (PHQ_MAX_CLOCK_SKEW_S)"
        )
    return event


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
