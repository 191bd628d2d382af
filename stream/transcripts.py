"""Each user's rolling transcript and the triggers of CONTRACT section 2 (v2), as plain functions over a store.

State is keyed per user and session, so one event writes its own small record and its session's
summary instead of rewriting a user's 14-day transcript. I(x) is a 2-byte length and the UTF-8 of
x: self-delimiting, so b"v" + I(user) is a safe prefix for one user.

    b"v" + I(user) + I(session) + I(event_id) -> a message turn: <ts_us, turn, is_user> + its request JSON
    b"m" + I(user) + I(session)               -> SessionMeta (msgpack): state, times, size, dedupe hashes

A user's turns are also kept in memory, in window order (`Window`, bounded by
PHQ_STREAM_WINDOW_CACHE_MB): a trigger builds its request from there, and the byte cap drops the
oldest from there, without re-reading or re-sorting two weeks of turns.

Times: `ts` is event time (microseconds, UTC); arrival is the Kafka record's timestamp (milliseconds,
LogAppendTime on chat.events), the only clock that ends idle sessions. Dedupe hashes live in the
session summary, so they outlive turns dropped by pruning or the byte cap.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from dataclasses import dataclass
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


class _TurnJson(msgspec.Struct):
    session_id: str
    ts: str
    turn: int
    role: str
    text: str
    event_id: str


_ENC = msgspec.msgpack.Encoder()
_META = msgspec.msgpack.Decoder(SessionMeta)
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


@dataclass(slots=True)
class Outcome:
    """What one event (or one idle check) did."""

    duplicate: bool = False
    waiting: int | None = None  # arrival (ms) of a session an idle trigger may end, to (re)index it
    requests: tuple[PendingRequest, ...] | list[PendingRequest] = ()
    sessions_ended: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()


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


@lru_cache(maxsize=65536)
def meta_key(user_id: str, session_id: str) -> bytes:
    return b"m" + _i(user_id) + _i(session_id)


def event_key(user_id: str, session_id: str, event_id: str) -> bytes:
    raw = event_id.encode()
    return b"v" + meta_key(user_id, session_id)[1:] + len(raw).to_bytes(2, "big") + raw


def parse_ids(key: bytes) -> list[str]:
    """The ids after a key's one-byte prefix."""
    out, at = [], 1
    while at < len(key):
        n = int.from_bytes(key[at:at + 2], "big")
        out.append(key[at + 2:at + 2 + n].decode())
        at += 2 + n
    return out


def decode_record(_key: bytes, raw: bytes) -> SessionMeta:
    return _META.decode(raw)


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
    body = _JSON.encode(_TurnJson(event.session_id, event.ts_iso, event.turn, event.role, event.text,
                                  event.event_id))
    return _TURN_HEAD.pack(event.ts_us, event.turn, event.role == "user") + body


def _entry(session_id: str, event_id: str, value: bytes) -> tuple:
    ts_us, turn, _ = _TURN_HEAD.unpack_from(value)
    return (ts_us, turn, session_id, event_id, value)


# ------------------------------------------------------------------------------ events and triggers


def prefetch(store, events: list[ChatEvent]) -> None:
    """One multi-get for the session summaries a batch of events will read."""
    store.prefetch([meta_key(e.user_id, e.session_id) for e in events], decode_record)


def apply_event(store, event: ChatEvent, arrival_ms: int, rules: Rules) -> Outcome:
    """Add one valid event to its user's transcript; a session_end triggers its session once."""
    u, s = event.user_id, event.session_id
    mkey = meta_key(u, s)
    meta = store.record(mkey, decode_record)
    h = event_hash(event.event_id)
    if meta is None:
        meta = SessionMeta(last_ts_us=event.ts_us, last_ts=event.ts_iso)
    elif has_seen(meta.seen, h):
        return Outcome(duplicate=True)
    seen = meta.seen
    if type(seen) is not bytearray:
        seen = meta.seen = bytearray(seen)
    seen += h
    if arrival_ms > meta.arrival_ms:
        meta.arrival_ms = arrival_ms
    if event.ts_us > meta.last_ts_us:
        meta.last_ts_us, meta.last_ts = event.ts_us, event.ts_iso
    window = None
    if event.event_type == "message":
        window = _add_turn(store, event, meta)
    if event.event_type == "session_end" and meta.state == OPEN:
        outcome = end_session(store, u, s, meta, event.ts_us, event.ts_iso, rules)
    else:
        if event.role == "user" and meta.state == ENDED:
            meta.state = LATE  # a user turn after an empty end: scored once it has been idle
        store.set_record(mkey, meta, encode_record)
        outcome = Outcome(waiting=meta.arrival_ms if meta.state in WAITING else None)
    if window is not None and window.bytes > rules.transcript_max_bytes:
        enforce_byte_cap(store, u, window, rules.transcript_max_bytes)
    return outcome


def _add_turn(store, event: ChatEvent, meta: SessionMeta) -> Window:
    window = load_window(store, event.user_id)  # before the put: a window read from the store has not got it
    value = turn_value(event)
    store.put(event_key(event.user_id, event.session_id, event.event_id), value)
    meta.size += len(value)
    meta.user_turns += event.role == "user"
    bisect.insort(window.entries, (event.ts_us, event.turn, event.session_id, event.event_id, value))
    window.bytes += len(value)
    store.windows.resized(len(value))
    return window


def end_session(store, user_id: str, session_id: str, meta: SessionMeta, trigger_us: int, trigger_ts: str,
                rules: Rules) -> Outcome:
    """Mark a session ended and, when it holds a user turn, build its one scoring request."""
    outcome = Outcome(sessions_ended=[(user_id, session_id)], requests=[])
    meta.state = SCORED if meta.user_turns else ENDED
    store.set_record(meta_key(user_id, session_id), meta, encode_record)
    if meta.user_turns:
        window = load_window(store, user_id)
        prune_old_sessions(store, user_id, window, trigger_us, rules.window_us)
        outcome.requests.append(build_request(user_id, session_id, trigger_us, trigger_ts, window, rules.window_us))
    return outcome


def idle_trigger(store, user_id: str, session_id: str, now_ms: int, rules: Rules) -> Outcome:
    """End a session no event of which has arrived for session_idle_s (trigger: its last ts)."""
    meta = store.record(meta_key(user_id, session_id), decode_record)
    if meta is None or meta.state not in WAITING:
        return Outcome()
    if now_ms - meta.arrival_ms < rules.idle_ms:
        return Outcome(waiting=meta.arrival_ms)
    return end_session(store, user_id, session_id, meta, meta.last_ts_us, meta.last_ts, rules)


# ------------------------------------------------------------------------------ the kept window


def load_window(store, user_id: str) -> Window:
    """All the user's kept turns (and their bytes, for the cap), from memory, else read once from the
    store and kept; the windows a transaction touched are dropped if it aborts."""
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
    turns = b",".join([e[4][_HEAD:] for e in entries[:end] if e[2] in sessions])
    rid = request_id_us(user_id, session_id, trigger_us)
    head = (b'{"request_id":"' + rid.encode() + b'","user_id":' + _JSON.encode(user_id)
            + b',"trigger_session_id":' + _JSON.encode(session_id) + b',"trigger_ts":' + _JSON.encode(trigger_ts)
            + b',"turns":[' + turns + b"]")
    return PendingRequest(user_id, session_id, rid, head)


def prune_old_sessions(store, user_id: str, window: Window, trigger_us: int, window_us: int) -> None:
    """Drop the turns of ended sessions that no window at or after `trigger_us` can hold again; their
    summaries stay (scored once, dedupe) until they expire."""
    horizon = trigger_us - window_us
    old = window.entries[:bisect.bisect_right(window.entries, (horizon, *_LAST))]
    for session_id in {e[2] for e in old}:
        mkey = meta_key(user_id, session_id)
        meta = store.record(mkey, decode_record)
        if meta is not None and meta.state in (SCORED, ENDED) and meta.last_ts_us <= horizon:
            _drop_turns(store, user_id, window, lambda e, sid=session_id: e[2] == sid)
            meta.size = 0
            store.set_record(mkey, meta, encode_record)


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


def enforce_byte_cap(store, user_id: str, window: Window, max_bytes: int) -> None:
    """Keep a user's stored turns under max_bytes by dropping the oldest turns first (from the kept
    window: no re-sort, work in proportion to what is dropped)."""
    n, freed = 0, {}
    while window.bytes > max_bytes and n < len(window.entries):
        e = window.entries[n]
        store.put(event_key(user_id, e[2], e[3]), None)
        freed[e[2]] = freed.get(e[2], 0) + len(e[4])
        window.bytes -= len(e[4])
        n += 1
    del window.entries[:n]
    store.windows.resized(-sum(freed.values()))
    for session_id, size in freed.items():
        mkey = meta_key(user_id, session_id)
        meta = store.record(mkey, decode_record)
        if meta is not None:
            meta.size -= size
            store.set_record(mkey, meta, encode_record)


def user_turns(store, user_id: str) -> list[Turn]:
    """The user's kept turns as contract Turns (tests and diagnosis)."""
    return [Turn.model_validate_json(e[4][_HEAD:]) for e in load_window(store, user_id).entries]


# ------------------------------------------------------------------------------ forgetting


def sweep_user(store, user_id: str, erased_us: int) -> list[tuple[str, str]]:
    """Erasure: drop every record of the user from at or before `erased_us` (event time), keep what is
    newer (the user came back); returns the sessions that went."""
    gone = []
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
            store.set_record(key, None, encode_record)
            gone.append((user_id, session_id))
        else:
            meta.size, meta.user_turns = kept_bytes, kept_user_turns
            store.set_record(key, meta, encode_record)
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
        store.set_record(key, None, encode_record)
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
