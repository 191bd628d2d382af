"""The contract's shapes between processes: turns, scoring requests, severity, and request ids.

Nothing here touches Kafka or Postgres; the stream processor, the scoring worker, offline
scoring and training all build on these.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Literal

import msgspec
from pydantic import BaseModel, ConfigDict

Severity = Literal["minimal", "mild", "moderate", "moderately_severe", "severe"]

# Lower bounds of the published PHQ-9 bands, read as "at least".
SEVERITY_BANDS: tuple[tuple[float, Severity], ...] = (
    (20, "severe"),
    (15, "moderately_severe"),
    (10, "moderate"),
    (5, "mild"),
    (0, "minimal"),
)
PHQ9_MIN, PHQ9_MAX = 0.0, 27.0

_REQUEST_NS = uuid.UUID("6f1c3f0e-6a55-4d0c-9b8e-7d1b8f5e2a10")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def severity(score: float) -> Severity:
    """The contract's band of a real-valued score: minimal < 5 <= mild < 10 <= moderate < 15 ..."""
    for lower, band in SEVERITY_BANDS:
        if score >= lower:
            return band
    return "minimal"


def clip_score(raw: float) -> float:
    return min(PHQ9_MAX, max(PHQ9_MIN, float(raw)))


def utc(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc)


def request_id(user_id: str, trigger_session_id: str, trigger_ts: datetime) -> str:
    """Deterministic id of a scoring request, so a retried or replayed request gets the same one."""
    return request_id_us(user_id, trigger_session_id, (utc(trigger_ts) - _EPOCH) // _US)


def request_id_us(user_id: str, trigger_session_id: str, trigger_us: int) -> str:
    """request_id from the trigger time in UTC microseconds. The name hashed is a JSON array, an
    injective encoding: no choice of ids can make two different triples collide (v1 joined with
    a separator that ids may contain)."""
    name = msgspec.json.encode([user_id, trigger_session_id, trigger_us])
    digest = hashlib.sha1(_REQUEST_NS.bytes + name).digest()  # uuid5, with a bytes name on any Python
    return str(uuid.UUID(bytes=digest[:16], version=5))


class Turn(BaseModel):
    """One message of a transcript, as the window and the model see it."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    ts: datetime
    turn: int
    role: Literal["user", "assistant"]
    text: str
    event_id: str = ""  # the chat event it came from (evidence cites it); empty in data that predates v2

    def order_key(self) -> tuple:
        return (utc(self.ts), self.turn, self.session_id)


class ScoringRequest(BaseModel):
    """What the stream processor sends to `phq9.scoring.requests` (key: user_id)."""

    request_id: str
    user_id: str
    trigger_session_id: str
    trigger_ts: datetime
    turns: list[Turn]
    emitted_at: datetime | None = None  # wall-clock time the request was produced (latency metrics)

    @property
    def n_sessions(self) -> int:
        return len({t.session_id for t in self.turns})

    @property
    def n_user_turns(self) -> int:
        return sum(1 for t in self.turns if t.role == "user")
