"""The stream processor's transcript rules (stream.transcripts) on an in-memory store: no Kafka."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from phq.events import parse_event
from phq.models import request_id
from stream.store import PartitionStore
from stream.transcripts import (
    ENDED,
    LATE,
    SCORED,
    Rules,
    apply_event,
    decode_record,
    expire_sessions,
    idle_trigger,
    load_window,
    meta_key,
    sweep_user,
    user_turns,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
RULES = Rules(window_days=14, transcript_max_bytes=100_000, session_idle_s=60, expire_after_days=21)
DAY_MS = 86400 * 1000


def ev(event_id, kind, user="u1", session="s1", minutes=0, days=0, **message):
    ts = T0 + timedelta(days=days, minutes=minutes)
    raw = {"schema_version": 1, "event_id": event_id, "event_type": kind, "user_id": user, "session_id": session,
           "ts": ts.isoformat(), **message}
    return parse_event(json.dumps(raw), now=T0 + timedelta(days=60))


def msg(event_id, turn, role="user", text="hello", **kw):
    return ev(event_id, "message", role=role, turn=turn, text=text, **kw)


def run(store, *events, arrival=1_000_000, rules=RULES):
    return [apply_event(store, e, arrival, rules) for e in events]


def requests(outcome):
    return [r.to_model() for r in outcome.requests]


def state(store, user="u1", session="s1"):
    return store.record(meta_key(user, session), decode_record).state


def test_session_end_produces_one_request_with_the_contract_id():
    store = PartitionStore(0, None)
    outcomes = run(store, ev("a", "session_start"), msg("b", 0), msg("c", 1, role="assistant"),
                   ev("d", "session_end", minutes=5))
    (request,) = requests(outcomes[-1])
    assert request.request_id == request_id("u1", "s1", T0 + timedelta(minutes=5))
    assert [t.turn for t in request.turns] == [0, 1]
    assert [t.event_id for t in request.turns] == ["b", "c"], "evidence cites each turn's event id"
    assert request.trigger_ts == T0 + timedelta(minutes=5)


def test_a_duplicate_event_id_changes_nothing():
    store = PartitionStore(0, None)
    run(store, msg("b", 0))
    store.flush_records()
    before = dict(store.pending)
    (outcome,) = run(store, msg("b", 0))
    store.flush_records()
    assert outcome.duplicate and store.pending == before


def test_a_session_is_scored_once_and_late_events_join_later_windows():
    store = PartitionStore(0, None)
    run(store, msg("b", 0), ev("d", "session_end", minutes=5))
    late = run(store, msg("e", 1, minutes=3), ev("d2", "session_end", minutes=9))
    assert not late[0].requests and not late[1].requests
    outcomes = run(store, msg("x", 0, session="s2", days=1), ev("y", "session_end", session="s2", days=1, minutes=1))
    (request,) = requests(outcomes[-1])
    assert [(t.session_id, t.turn) for t in request.turns] == [("s1", 0), ("s1", 1), ("s2", 0)]


def test_out_of_order_turns_are_ordered_by_ts_then_turn():
    store = PartitionStore(0, None)
    outcomes = run(store, msg("c", 2, minutes=2), msg("a", 0, minutes=1), msg("b", 1, minutes=1),
                   ev("z", "session_end", minutes=3))
    assert [t.turn for t in requests(outcomes[-1])[0].turns] == [0, 1, 2]


def test_a_session_without_a_user_turn_is_not_scored():
    store = PartitionStore(0, None)
    outcomes = run(store, msg("a", 0, role="assistant"), ev("z", "session_end", minutes=1))
    assert not outcomes[-1].requests and list(outcomes[-1].sessions_ended) == [("u1", "s1")]
    assert state(store) == ENDED


def test_a_user_turn_after_an_empty_end_is_scored_once_when_idle():
    store = PartitionStore(0, None)
    run(store, ev("z", "session_end", minutes=9), arrival=1_000)  # the end overtook the messages
    (outcome,) = run(store, msg("a", 0, minutes=1), arrival=2_000)
    assert not outcome.requests and outcome.waiting == 2_000 and state(store) == LATE
    assert not idle_trigger(store, "u1", "s1", 2_000 + 59_999, RULES).requests
    (request,) = requests(idle_trigger(store, "u1", "s1", 2_000 + 60_000, RULES))
    assert request.trigger_ts == T0 + timedelta(minutes=9), "trigger: the ts of its last event"
    assert [t.turn for t in request.turns] == [0]
    assert not idle_trigger(store, "u1", "s1", 10**9, RULES).requests and state(store) == SCORED
    assert not run(store, msg("b", 1, minutes=2))[0].requests


def test_idle_session_triggers_at_its_last_event_ts_after_idle_arrival_time():
    store = PartitionStore(0, None)
    run(store, msg("a", 0, minutes=1), msg("b", 1, minutes=7, role="assistant"), arrival=1_000_000)
    assert not idle_trigger(store, "u1", "s1", 1_059_999, RULES).requests
    (request,) = requests(idle_trigger(store, "u1", "s1", 1_060_000, RULES))
    assert request.trigger_ts == T0 + timedelta(minutes=7)
    assert not idle_trigger(store, "u1", "s1", 5_000_000, RULES).requests  # scored once
    assert state(store) == SCORED


def test_window_holds_fourteen_days_of_sessions_and_old_ones_are_pruned():
    store = PartitionStore(0, None)
    run(store, msg("old", 0, session="s-old"), ev("old-end", "session_end", session="s-old", minutes=1))
    run(store, msg("mid", 0, session="s-mid", days=5), ev("mid-end", "session_end", session="s-mid", days=5, minutes=1))
    outcomes = run(store, msg("new", 0, session="s-new", days=15), ev("new-end", "session_end", session="s-new", days=15))
    (request,) = requests(outcomes[-1])
    assert {t.session_id for t in request.turns} == {"s-mid", "s-new"}
    store.commit(1)
    store.windows.clear()  # read back from the store itself
    assert {t.session_id for t in user_turns(store, "u1")} == {"s-mid", "s-new"}


def test_a_pruned_session_keeps_its_scored_and_dedupe_marker():
    store = PartitionStore(0, None)
    run(store, msg("old", 0, session="s-old"), ev("old-end", "session_end", session="s-old", minutes=1))
    run(store, msg("new", 0, session="s-new", days=15), ev("new-end", "session_end", session="s-new", days=15))
    replayed = run(store, msg("old", 0, session="s-old"), ev("old-end", "session_end", session="s-old", minutes=1))
    assert all(o.duplicate for o in replayed), "a replayed event of a pruned session is a duplicate"
    very_late = run(store, msg("old2", 1, session="s-old", minutes=1), ev("old-end2", "session_end", session="s-old"))
    assert [list(o.requests) for o in very_late] == [[], []], "a pruned session is never scored again"


def test_byte_cap_drops_the_oldest_turns_first():
    store = PartitionStore(0, None)
    rules = Rules(window_days=14, transcript_max_bytes=2_000, session_idle_s=60)
    run(store, *[msg(f"m{k}", k, minutes=k, text="x" * 300) for k in range(10)], rules=rules)
    kept = [t.turn for t in user_turns(store, "u1")]
    assert kept == list(range(10 - len(kept), 10)) and 3 <= len(kept) < 10
    (outcome,) = run(store, msg("m3", 3, minutes=3, text="x" * 300), rules=rules)
    assert outcome.duplicate, "a dropped turn still counts for dedupe"
    store.commit(1)
    store.windows.clear()
    assert [t.turn for t in user_turns(store, "u1")] == kept, "the store holds what the kept window holds"


def test_byte_cap_bookkeeping_stays_exact_over_many_sessions():
    store = PartitionStore(0, None)
    rules = Rules(window_days=14, transcript_max_bytes=5_000, session_idle_s=60)
    for s in range(8):
        run(store, *[msg(f"s{s}m{k}", k, session=f"s{s}", minutes=10 * s + k, text="y" * 200) for k in range(5)],
            rules=rules)
    store.commit(1)
    stored = sum(len(v) for _, v in store.scan(b"v"))
    assert store.windows.get("u1").bytes == stored <= 5_000
    assert sum(decode_record(k, v).size for k, v in store.scan(b"m")) == stored
    store.windows.clear()
    assert load_window(store, "u1").bytes == stored, "read back from the store, the same"


def test_user_ids_that_share_a_prefix_keep_separate_transcripts():
    store = PartitionStore(0, None)
    run(store, msg("a", 0, user="ab"), msg("b", 0, user='a"b'), msg("c", 0, user="a"))
    assert [t.text for t in user_turns(store, "a")] == ["hello"]
    assert len(user_turns(store, "ab")) == 1


def test_an_erasure_sweep_keeps_what_came_after_the_erasure():
    store = PartitionStore(0, None)
    run(store, msg("a", 0, session="before"), ev("a-end", "session_end", session="before", minutes=1))
    run(store, msg("b", 0, session="after", days=2))
    erased_us = int((T0 + timedelta(days=1) - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1e6)
    gone = sweep_user(store, "u1", erased_us)
    assert gone == [("u1", "before")]
    assert [t.session_id for t in user_turns(store, "u1")] == ["after"]


def test_sessions_unseen_past_the_horizon_expire_and_the_rest_stay():
    store = PartitionStore(0, None)
    run(store, msg("a", 0, session="old"), ev("a-end", "session_end", session="old", minutes=1), arrival=0)
    run(store, msg("b", 0, session="recent", days=20), ev("b-end", "session_end", session="recent", days=20),
        arrival=20 * DAY_MS)
    store.commit(1)
    cursor, n = expire_sessions(store, 21 * DAY_MS + 1, RULES, None, 1000)
    assert (cursor, n) == (None, 1)
    store.flush_records()
    assert any(v is None for v in store.pending.values()), "the deletes go through the changelog"
    store.commit(2)
    assert [t.session_id for t in user_turns(store, "u1")] == ["recent"]
    assert store.get(meta_key("u1", "old")) is None


def test_overlay_reaches_the_store_only_on_commit(tmp_path):
    store = PartitionStore(0, tmp_path / "p0")
    run(store, msg("a", 0))
    store.discard()
    assert store.get(meta_key("u1", "s1")) is None
    run(store, msg("a", 0))
    store.commit(41)
    store.close()
    reopened = PartitionStore(0, tmp_path / "p0")
    assert reopened.checkpoint() == 41 and len(user_turns(reopened, "u1")) == 1
    reopened.close()
