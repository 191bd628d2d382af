"""Each user's rolling transcript and the triggers of CONTRACT section 2 (v2), as plain functions over a store.

State is keyed per user and session, so one event writes its own small record and its session's
summary instead of rewriting a user's 14-day transcript. I(x) is a 2-byte length and the UTF-8 of
x: self-delimiting, so b"v" + I(user) is a safe prefix for one user.

    b"v" + I(user) + I(session) + I(event_id) -> a message turn: <ts_us, turn, is_user> + its request JSON
    b"m" + I(user) + I(session)               -> SessionMeta (msgpack): state, times, sizes, dedupe hashes
    b"u" + I(user)                            -> UserMeta (msgpack): the user's turn bytes and sessions

Times: `ts` is event time (microseconds, UTC); arrival is the Kafka record's timestamp (milliseconds,
LogAppendTime on chat.events), the only clock that ends idle sessions. Dedupe hashes live in the
session summary, so they outlive turns dropped by pruning or the byte cap.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from dataclasses import dataclass, field
from functools import lru_cache

import msgspec

from phq.events import ChatEvent
from phq.models import ScoringRequest, Turn, request_id_us

# Session states. ENDED: ended without a user turn (nothing to score), until a late user turn makes
# it LATE: then it is scored once it has been idle (CONTRACT v2 section 2).
OPEN, SCORED, ENDED, LATE = 0, 1, 2, 3
WAITING = (OPEN, LATE)  # states an idle trigger may end
_TURN_HEAD = struct.Struct("<qqB")  # ts_us, turn, is_user
_HEAD = _TURN_HEAD.size
_LAST = (1 << 63,)  # sorts after any (ts_us, ...) tuple with the same ts_us


class SessionMeta(msgspec.Struct, array_like=True):
    state: int = OPEN
    last_ts_us: int = -1  # newest event ts: the trigger time of an idle end
    last_ts: str = ""  # the same, as sent (RFC 3339 with its offset)
    arrival_ms: int = 0  # record timestamp of the session's newest event
    user_turns: int = 0
    size: int = 0  # stored bytes of its turns, for the per-user byte cap
    seen: bytes = b""  # 8-byte hashes of its event ids (dedupe)


class UserMeta(msgspec.Struct, array_like=True):
    size: int = 0  # sum of its sessions' sizes: the byte cap is checked without reading them
    sessions: int = 0


class _TurnJson(msgspec.Struct):
    session_id: str
    ts: str
    turn: int
    role: str
    text: str
    event_id: str


_ENC = msgspec.msgpack.Encoder()
_META = msgspec.msgpack.Decoder(SessionMeta)
_USER = msgspec.msgpack.Decoder(UserMeta)
_JSON = msgspec.json.Encoder()


@dataclass(frozen=True)
class Rules:
    window_days: float = 14
    transcript_max_bytes: int = 512 * 1024
    session_idle_s: float = 1800
    expire_after_days: float = 21  # a session unseen this long (arrival) is forgotten: window + replay horizon

    @property
    def window_us(self) -> int:
        return int(self.window_days * 86400 * 1_000_000)

    @property
    def idle_ms(self) -> int:
        return int(self.session_idle_s * 1000)

    @property
    def expire_ms(self) -> int:
        return int(self.expire_after_days * 86400 * 1000)


@dataclass
class PendingRequest:
    """A scoring request, encoded but for `emitted_at` (set when it is produced)."""

    user_id: str
    session_id: str
    request_id: str
    head: bytes  # the JSON object without its closing brace

    def encode(self, emitted_at: str) -> bytes:
        return self.head + b',"emitted_at":' + _JSON.encode(emitted_at) + b"}"

    def to_model(self) -> ScoringRequest:
        return ScoringRequest.model_validate_json(self.encode("1970-01-01T00:00:00Z"))


@dataclass
class Outcome:
    """What one event (or one idle check) did."""

    duplicate: bool = False
    waiting: int | None = None  # arrival (ms) of a session an idle trigger may end, to (re)index it
    requests: list[PendingRequest] = field(default_factory=list)
    sessions_ended: list[tuple[str, str]] = field(default_factory=list)


class Window:
    """A user's kept turns in (ts, turn, session) order: (ts_us, turn, session_id, event_id, value)."""

    __slots__ = ("entries", "bytes")

    def __init__(self, entries: list | None = None):
        self.entries = entries or []
        self.bytes = sum(len(e[4]) for e in self.entries)


# ------------------------------------------------------------------------------ keys and codecs


@lru_cache(maxsize=65536)  # ids repeat for every event of a session: encode each once
def _i(value: str) -> bytes:
    raw = value.encode()
    return len(raw).to_bytes(2, "big") + raw


def meta_key(user_id: str, session_id: str) -> bytes:
    return b"m" + _i(user_id) + _i(session_id)


def user_key(user_id: str) -> bytes:
    return b"u" + _i(user_id)


def event_key(user_id: str, session_id: str, event_id: str) -> bytes:
    return b"v" + _i(user_id) + _i(session_id) + _i(event_id)


def parse_ids(key: bytes) -> list[str]:
    """The ids after a key's one-byte prefix."""
    out, at = [], 1
    while at < len(key):
        n = int.from_bytes(key[at:at + 2], "big")
        out.append(key[at + 2:at + 2 + n].decode())
        at += 2 + n
    return out


def decode_record(key: bytes, raw: bytes):
    return _META.decode(raw) if key[:1] == b"m" else _USER.decode(raw)


def encode_record(value) -> bytes:
    return _ENC.encode(value)


def event_hash(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def has_seen(seen: bytes, h: bytes) -> bool:
    at = seen.find(h)
    while at >= 0:
        if at % 8 == 0:
            return True
        at = seen.find(h, at + 1)
    return False


def turn_value(event: ChatEvent) -> bytes:
    body = _JSON.encode(_TurnJson(event.session_id, event.ts.isoformat(), event.turn, event.role, event.text,
                                  event.event_id))
    return _TURN_HEAD.pack(event.ts_us, event.turn, event.role == "user") + body


def _entry(session_id: str, event_id: str, value: bytes) -> tuple:
    ts_us, turn, _ = _TURN_HEAD.unpack_from(value)
    return (ts_us, turn, session_id, event_id, value)


# ------------------------------------------------------------------------------ records of a transaction


def _meta(store, user_id: str, session_id: str) -> SessionMeta | None:
    return store.record(meta_key(user_id, session_id), decode_record)


def _set_meta(store, user_id: str, session_id: str, meta: SessionMeta | None) -> None:
    store.set_record(meta_key(user_id, session_id), meta, encode_record)


def _user(store, user_id: str) -> UserMeta | None:
    return store.record(user_key(user_id), decode_record)


def _set_user(store, user_id: str, user: UserMeta | None) -> None:
    store.set_record(user_key(user_id), user if user is None or user.sessions > 0 else None, encode_record)


def prefetch(store, events: list[ChatEvent]) -> None:
    """One multi-get for the summaries a batch of events will read."""
    keys = []
    for e in events:
        keys.append(meta_key(e.user_id, e.session_id))
        keys.append(user_key(e.user_id))
    store.prefetch(keys, decode_record)


# ------------------------------------------------------------------------------ events and triggers


def apply_event(store, event: ChatEvent, arrival_ms: int, rules: Rules) -> Outcome:
    """Add one valid event to its user's transcript; a session_end triggers its session once."""
    u, s = event.user_id, event.session_id
    meta = _meta(store, u, s)
    h = event_hash(event.event_id)
    if meta is not None and has_seen(meta.seen, h):
        return Outcome(duplicate=True)
    user = _user(store, u)
    if user is None:
        user = UserMeta()
        store.windows.put(u, Window())  # a new user: the (empty) window is known without a read
    if meta is None:
        meta = SessionMeta(last_ts_us=event.ts_us, last_ts=event.ts.isoformat())
        user.sessions += 1
    meta.seen = (meta.seen if isinstance(meta.seen, bytearray) else bytearray(meta.seen)) + h
    meta.arrival_ms = max(meta.arrival_ms, arrival_ms)
    if event.ts_us > meta.last_ts_us:
        meta.last_ts_us, meta.last_ts = event.ts_us, event.ts.isoformat()
    if event.event_type == "message":
        _add_turn(store, event, meta, user)
    outcome = Outcome()
    if event.event_type == "session_end" and meta.state == OPEN:
        outcome = end_session(store, u, s, meta, user, event.ts_us, event.ts.isoformat(), rules)
    else:
        if event.role == "user" and meta.state == ENDED:
            meta.state = LATE  # a user turn after an empty end: scored once it has been idle
        _set_meta(store, u, s, meta)
        if meta.state in WAITING:
            outcome.waiting = meta.arrival_ms
    _set_user(store, u, user)
    if user.size > rules.transcript_max_bytes:
        enforce_byte_cap(store, u, user, rules.transcript_max_bytes)
    return outcome


def _add_turn(store, event: ChatEvent, meta: SessionMeta, user: UserMeta) -> None:
    value = turn_value(event)
    store.put(event_key(event.user_id, event.session_id, event.event_id), value)
    meta.size += len(value)
    meta.user_turns += event.role == "user"
    user.size += len(value)
    window = store.windows.get(event.user_id)
    if window is not None:  # else it is read from the store when a trigger needs it
        bisect.insort(window.entries, (event.ts_us, event.turn, event.session_id, event.event_id, value))
        window.bytes += len(value)
        store.windows.resized(len(value))
        store.touched.add(event.user_id)


def end_session(store, user_id: str, session_id: str, meta: SessionMeta, user: UserMeta, trigger_us: int,
                trigger_ts: str, rules: Rules) -> Outcome:
    """Mark a session ended and, when it holds a user turn, build its one scoring request."""
    outcome = Outcome(sessions_ended=[(user_id, session_id)])
    meta.state = SCORED if meta.user_turns else ENDED
    _set_meta(store, user_id, session_id, meta)
    if meta.user_turns:
        window = load_window(store, user_id)
        prune_old_sessions(store, user_id, user, window, trigger_us, rules.window_us)
        outcome.requests.append(build_request(user_id, session_id, trigger_us, trigger_ts, window, rules.window_us))
    return outcome


def idle_trigger(store, user_id: str, session_id: str, now_ms: int, rules: Rules) -> Outcome:
    """End a session no event of which has arrived for session_idle_s (trigger: its last ts)."""
    meta = _meta(store, user_id, session_id)
    if meta is None or meta.state not in WAITING:
        return Outcome()
    if now_ms - meta.arrival_ms < rules.idle_ms:
        return Outcome(waiting=meta.arrival_ms)
    user = _user(store, user_id) or UserMeta()
    outcome = end_session(store, user_id, session_id, meta, user, meta.last_ts_us, meta.last_ts, rules)
    _set_user(store, user_id, user)
    return outcome


# ------------------------------------------------------------------------------ the kept window


def load_window(store, user_id: str) -> Window:
    """The user's turns, from memory, else read once from the store (and kept)."""
    store.touched.add(user_id)
    window = store.windows.get(user_id)
    if window is None:
        prefix = b"v" + _i(user_id)
        entries = []
        for key, value in store.scan(prefix):
            _, session_id, event_id = parse_ids(key)
            entries.append(_entry(session_id, event_id, value))
        entries.sort()
        window = Window(entries)
        store.windows.put(user_id, window)
    return window


def build_request(user_id: str, session_id: str, trigger_us: int, trigger_ts: str, window: Window,
                  window_us: int) -> PendingRequest:
    """The window rule (phq.window) on the kept turns: sessions with a turn in (T - window, T], whole,
    up to T, in (ts, turn) order; the request's JSON is the turns' stored JSON joined."""
    entries = window.entries
    end = bisect.bisect_right(entries, (trigger_us, *_LAST))
    start = bisect.bisect_right(entries, (trigger_us - window_us, *_LAST))
    sessions = {e[2] for e in entries[start:end]}
    turns = b",".join(e[4][_HEAD:] for e in entries[:end] if e[2] in sessions)
    rid = request_id_us(user_id, session_id, trigger_us)
    head = (b'{"request_id":"' + rid.encode() + b'","user_id":' + _JSON.encode(user_id)
            + b',"trigger_session_id":' + _JSON.encode(session_id) + b',"trigger_ts":' + _JSON.encode(trigger_ts)
            + b',"turns":[' + turns + b"]")
    return PendingRequest(user_id, session_id, rid, head)


def prune_old_sessions(store, user_id: str, user: UserMeta, window: Window, trigger_us: int, window_us: int) -> None:
    """Drop the turns of ended sessions that no window at or after `trigger_us` can hold again; their
    summaries stay (scored once, dedupe) until they expire."""
    horizon = trigger_us - window_us
    old = window.entries[:bisect.bisect_right(window.entries, (horizon, *_LAST))]
    for session_id in {e[2] for e in old}:
        meta = _meta(store, user_id, session_id)
        if meta is not None and meta.state in (SCORED, ENDED) and meta.last_ts_us <= horizon:
            _drop_turns(store, user_id, window, lambda e, sid=session_id: e[2] == sid)
            user.size -= meta.size
            meta.size = 0
            _set_meta(store, user_id, session_id, meta)
    _set_user(store, user_id, user)


def _drop_turns(store, user_id: str, window: Window, which) -> None:
    kept = []
    for e in window.entries:
        if which(e):
            store.put(event_key(user_id, e[2], e[3]), None)
            window.bytes -= len(e[4])
            store.windows.resized(-len(e[4]))
        else:
            kept.append(e)
    window.entries = kept


def enforce_byte_cap(store, user_id: str, user: UserMeta, max_bytes: int) -> None:
    """Keep a user's stored turns under max_bytes by dropping the oldest turns first (from the kept
    window: no re-sort, work in proportion to what is dropped)."""
    window = load_window(store, user_id)
    n, freed = 0, {}
    while user.size > max_bytes and n < len(window.entries):
        e = window.entries[n]
        store.put(event_key(user_id, e[2], e[3]), None)
        freed[e[2]] = freed.get(e[2], 0) + len(e[4])
        user.size -= len(e[4])
        n += 1
    dropped = sum(freed.values())
    del window.entries[:n]
    window.bytes -= dropped
    store.windows.resized(-dropped)
    for session_id, size in freed.items():
        meta = _meta(store, user_id, session_id)
        if meta is not None:
            meta.size -= size
            _set_meta(store, user_id, session_id, meta)
    _set_user(store, user_id, user)


def user_turns(store, user_id: str) -> list[Turn]:
    """The user's kept turns as contract Turns (tests and diagnosis)."""
    return [Turn.model_validate_json(e[4][_HEAD:]) for e in load_window(store, user_id).entries]


# ------------------------------------------------------------------------------ forgetting


def sweep_user(store, user_id: str, erased_us: int) -> list[tuple[str, str]]:
    """Erasure: drop every record of the user from at or before `erased_us` (event time), keep what is
    newer (the user came back); returns the sessions that went."""
    gone, user = [], UserMeta()
    for key, _raw in list(store.scan(b"m" + _i(user_id))):
        _, session_id = parse_ids(key)
        meta = store.record(key, decode_record)
        kept_bytes = kept_user_turns = 0
        for vkey, value in list(store.scan(b"v" + _i(user_id) + _i(session_id))):
            ts_us, _, is_user = _TURN_HEAD.unpack_from(value)
            if ts_us <= erased_us:
                store.put(vkey, None)
            else:
                kept_bytes, kept_user_turns = kept_bytes + len(value), kept_user_turns + is_user
        if meta.last_ts_us <= erased_us:
            _set_meta(store, user_id, session_id, None)
            gone.append((user_id, session_id))
        else:
            meta.size, meta.user_turns = kept_bytes, kept_user_turns
            _set_meta(store, user_id, session_id, meta)
            user.size += kept_bytes
            user.sessions += 1
    _set_user(store, user_id, user)
    store.windows.drop(user_id)
    store.touched.add(user_id)
    return gone


def expire_sessions(store, now_ms: int, rules: Rules, cursor: bytes | None, limit: int) -> tuple[bytes | None, int]:
    """Forget ended sessions that no event has reached for expire_after_days (arrival time), `limit`
    summaries at a time from `cursor`; the deletes go through the changelog like any write, so a
    restored store equals this one. Returns the next cursor (None: start over) and how many went."""
    cut, n, expired = now_ms - rules.expire_ms, 0, 0
    for key, raw in store.committed_items(b"m", cursor):
        n += 1
        if n > limit:
            return key, expired
        if key in store.records or key in store.pending:
            continue  # written in this transaction: not idle
        meta = decode_record(key, raw)
        if meta.state in WAITING or meta.arrival_ms >= cut:
            continue
        user_id, session_id = parse_ids(key)
        for vkey, _value in list(store.scan(b"v" + _i(user_id) + _i(session_id))):
            store.put(vkey, None)
        _set_meta(store, user_id, session_id, None)
        user = _user(store, user_id) or UserMeta(sessions=1)
        user.size -= meta.size
        user.sessions -= 1
        _set_user(store, user_id, user)
        store.windows.drop(user_id)
        store.touched.add(user_id)
        expired += 1
    return None, expired


def waiting_sessions(store) -> tuple[list[tuple[int, str, str]], int]:
    """(arrival_ms, user, session) of every session an idle trigger may end, oldest first, and the
    newest arrival in the store (a lower bound of the partition's stream time)."""
    out, newest = [], 0
    for key, raw in store.committed_items(b"m"):
        meta = _META.decode(raw)
        newest = max(newest, meta.arrival_ms)
        if meta.state in WAITING:
            user_id, session_id = parse_ids(key)
            out.append((meta.arrival_ms, user_id, session_id))
    out.sort()
    return out, newest
