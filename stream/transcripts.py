"""Each user's rolling transcript and the triggers of CONTRACT section 2, as plain functions over a store.

State is keyed per user and session, so one event writes two small records (the event and its
session's summary) instead of rewriting a user's 14-day transcript:

    b"v" + J(user) + J(session) + J(event_id) -> the turn (message) or {} (start, end); also the dedupe key
    b"m" + J(user) + J(session)               -> SessionMeta

J() is the JSON encoding of a string: self-delimiting, so b"v" + J(user) is a safe prefix for one user.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol

from phq.events import ChatEvent
from phq.models import ScoringRequest, Turn, request_id, utc
from phq.window import window_turns

OPEN, ENDED, SCORED = "open", "ended", "scored"  # ENDED: ended without a user turn, so never scored


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes | None) -> None: ...  # None deletes
    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


@dataclass
class SessionMeta:
    user_id: str
    session_id: str
    last_ts: str  # ISO 8601 of the newest event's ts: the trigger time of an idle end
    last_seen: float  # wall-clock seconds when the last event of the session arrived
    state: str = OPEN
    end_ts: str | None = None  # ts of session_end, when it came
    user_turns: int = 0
    bytes: int = 0  # stored size of its turns, for the per-user byte cap

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()  # not asdict(): it deep-copies

    @classmethod
    def from_bytes(cls, raw: bytes) -> "SessionMeta":
        return cls(**json.loads(raw))


@dataclass
class Outcome:
    """What one event (or one idle check) did."""

    duplicate: bool = False
    still_open: bool = False  # the event's session has not ended yet (an idle trigger may come)
    requests: list[ScoringRequest] = field(default_factory=list)
    sessions_ended: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Rules:
    window_days: float = 14
    transcript_max_bytes: int = 512 * 1024
    session_idle_s: float = 1800


@lru_cache(maxsize=65536)  # ids repeat for every event of a session: encode each once
def _j(value: str) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


_DECODER = json.JSONDecoder()


def meta_key(user_id: str, session_id: str) -> bytes:
    return b"m" + _j(user_id) + _j(session_id)


def event_key(user_id: str, session_id: str, event_id: str) -> bytes:
    return b"v" + _j(user_id) + _j(session_id) + _j(event_id)


def user_prefixes(user_id: str) -> tuple[bytes, bytes]:
    return b"m" + _j(user_id), b"v" + _j(user_id)


def _turn_value(event: ChatEvent) -> bytes:
    if event.event_type != "message":
        return b"{}"
    turn = {"ts": event.ts.isoformat(), "turn": event.turn, "role": event.role, "text": event.text}
    return json.dumps(turn, ensure_ascii=False, separators=(",", ":")).encode()


def _record_size(session_id: str, value: bytes) -> int:
    # what the turn costs in a request: its value plus the session id and JSON framing
    return len(value) + len(session_id) + 32


def apply_event(store: Store, event: ChatEvent, now: float, rules: Rules) -> Outcome:
    """Add one valid event to its user's transcript; a session_end triggers its session once."""
    key = event_key(event.user_id, event.session_id, event.event_id)
    if store.get(key) is not None:
        return Outcome(duplicate=True)
    value = _turn_value(event)
    store.put(key, value)
    mkey = meta_key(event.user_id, event.session_id)
    raw = store.get(mkey)
    meta = SessionMeta.from_bytes(raw) if raw else SessionMeta(event.user_id, event.session_id, event.ts.isoformat(), now)
    meta.last_seen = now
    if utc(event.ts) > utc(datetime.fromisoformat(meta.last_ts)):
        meta.last_ts = event.ts.isoformat()
    if event.event_type == "message":
        meta.bytes += _record_size(event.session_id, value)
        meta.user_turns += event.role == "user"
    outcome = Outcome()
    if event.event_type == "session_end" and meta.state == OPEN:
        meta.end_ts = event.ts.isoformat()
        outcome = end_session(store, meta, event.ts, rules)
    else:
        store.put(mkey, meta.to_bytes())
        outcome.still_open = meta.state == OPEN
    if event.event_type == "message" and meta.bytes > rules.transcript_max_bytes:
        enforce_byte_cap(store, event.user_id, rules.transcript_max_bytes)  # one session alone is too big
    return outcome


def end_session(store: Store, meta: SessionMeta, trigger_ts: datetime, rules: Rules) -> Outcome:
    """Mark a session ended and, when it holds a user turn, build its one scoring request."""
    outcome = Outcome(sessions_ended=[(meta.user_id, meta.session_id)])
    meta.state = SCORED if meta.user_turns else ENDED
    store.put(meta_key(meta.user_id, meta.session_id), meta.to_bytes())
    if meta.user_turns:
        prune_old_sessions(store, meta.user_id, trigger_ts, rules.window_days)
        enforce_byte_cap(store, meta.user_id, rules.transcript_max_bytes)
        outcome.requests.append(build_request(store, meta.user_id, meta.session_id, trigger_ts, rules))
    return outcome


def idle_trigger(store: Store, user_id: str, session_id: str, now: float, rules: Rules) -> Outcome:
    """End a session that has been silent for session_idle_s of wall-clock time (trigger: its last ts)."""
    raw = store.get(meta_key(user_id, session_id))
    if raw is None:
        return Outcome()
    meta = SessionMeta.from_bytes(raw)
    if meta.state != OPEN or now - meta.last_seen < rules.session_idle_s:
        return Outcome()
    return end_session(store, meta, datetime.fromisoformat(meta.last_ts), rules)


def user_turns(store: Store, user_id: str) -> list[Turn]:
    turns = []
    _, vprefix = user_prefixes(user_id)
    for key, value in store.scan(vprefix):
        if value == b"{}":
            continue
        session_id, event_id = _session_and_event(key[len(vprefix):].decode())
        turns.append(Turn(session_id=session_id, event_id=event_id, **json.loads(value)))
    return turns


def _session_and_event(rest: str) -> tuple[str, str]:
    """The session and event ids that follow a user's prefix in an event key."""
    session_id, end = _DECODER.raw_decode(rest)
    return session_id, _DECODER.raw_decode(rest, end)[0]


def build_request(store: Store, user_id: str, session_id: str, trigger_ts: datetime, rules: Rules) -> ScoringRequest:
    turns = window_turns(user_turns(store, user_id), trigger_ts, rules.window_days)
    return ScoringRequest(
        request_id=request_id(user_id, session_id, trigger_ts),
        user_id=user_id,
        trigger_session_id=session_id,
        trigger_ts=trigger_ts,
        turns=turns,
    )


def user_sessions(store: Store, user_id: str) -> list[SessionMeta]:
    mprefix, _ = user_prefixes(user_id)
    return [SessionMeta.from_bytes(value) for _, value in store.scan(mprefix)]


def drop_session(store: Store, user_id: str, session_id: str) -> None:
    for key, _ in list(store.scan(b"v" + _j(user_id) + _j(session_id))):
        store.put(key, None)
    store.put(meta_key(user_id, session_id), None)


def drop_user(store: Store, user_id: str) -> int:
    """Erase every record of a user; returns how many sessions went."""
    sessions = user_sessions(store, user_id)
    for meta in sessions:
        drop_session(store, user_id, meta.session_id)
    return len(sessions)


def prune_old_sessions(store: Store, user_id: str, trigger_ts: datetime, window_days: float) -> None:
    """Drop ended sessions that no window at or after `trigger_ts` can hold again."""
    horizon = utc(trigger_ts) - timedelta(days=window_days)
    for meta in user_sessions(store, user_id):
        if meta.state != OPEN and utc(datetime.fromisoformat(meta.last_ts)) <= horizon:
            drop_session(store, user_id, meta.session_id)


def enforce_byte_cap(store: Store, user_id: str, max_bytes: int) -> None:
    """Keep a user's stored turns under max_bytes by dropping the oldest turns first."""
    metas = {m.session_id: m for m in user_sessions(store, user_id)}
    total = sum(m.bytes for m in metas.values())
    if total <= max_bytes:
        return
    for turn, key, value in _oldest_first(store, user_id):
        meta = metas[turn.session_id]
        size = _record_size(turn.session_id, value)
        store.put(key, b"{}")  # keep the dedupe key, drop the text
        meta.bytes -= size
        total -= size
        if total <= max_bytes:
            break
    for meta in metas.values():
        store.put(meta_key(user_id, meta.session_id), meta.to_bytes())


def _oldest_first(store: Store, user_id: str) -> Iterable[tuple[Turn, bytes, bytes]]:
    _, vprefix = user_prefixes(user_id)
    rows = []
    for key, value in store.scan(vprefix):
        if value == b"{}":
            continue
        session_id = _DECODER.raw_decode(key[len(vprefix):].decode())[0]
        rows.append((Turn(session_id=session_id, **json.loads(value)), key, value))
    return sorted(rows, key=lambda row: row[0].order_key())
