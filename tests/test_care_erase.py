"""`phq erase USER_ID` (CONTRACT section 5), the parts in care/: no Postgres table holds the user's id
any more, what survives (the erasure record, audit rows, the delivery log) holds only its keyed hash,
the erasure is on `phq.erasures`, and `phq notify` drops the user's alerts from before it. The stream
processor's and scoring worker's parts extend `test_erasing_a_user_leaves_nothing_of_theirs` with
their own state checks."""

from __future__ import annotations

import json

from datetime import datetime, timedelta, timezone

from sqlalchemy import String, Text, cast, func, or_, select
from test_care_support import (
    Receiver,
    add_evidence,
    add_scores,
    bearer,
    change_event_rows,
    client,
    publish_alerts,
    run_phq,
)

from care import store
from phq.db import engine as make_engine
from phq.erasures import erased_at, erasure_value, is_erased, parse_erasure, read_erasures, user_key
from phq.settings import Settings
from phq.tables import alert_deliveries, care_audit_log, erasures, metadata

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_is_erased_covers_only_what_happened_before_the_erasure():
    erased = {"u": NOW}
    assert is_erased(erased, "u", NOW - timedelta(seconds=1))
    assert is_erased(erased, "u", NOW)
    assert not is_erased(erased, "u", NOW + timedelta(seconds=1))  # the user came back afterwards
    assert not is_erased(erased, "someone-else", NOW - timedelta(days=1))


def test_erasure_values_round_trip_and_malformed_ones_are_ignored():
    key = user_key("u", b"k")
    assert parse_erasure(erasure_value(key, NOW)) == (key, NOW)
    assert parse_erasure(json.dumps({"user_id": "u", "erased_at": NOW.isoformat()}).encode(), b"k") == (key, NOW)
    for bad in (None, b"", b"not json", b'{"user_id": "u"}', b'{"user_id": "u", "erased_at": "2026-11-01T00:00:00"}'):
        assert parse_erasure(bad) is None


def rows_of(conn, user_id: str) -> dict[str, int]:
    """{table: rows} of every table with a user_id column that still holds the user."""
    counts = {t.name: conn.execute(select(func.count()).select_from(t).where(t.c.user_id == user_id)).scalar()
              for t in metadata.sorted_tables if "user_id" in t.c}
    return {name: n for name, n in counts.items() if n}


def seed(settings: Settings, receiver: Receiver) -> dict:
    """A team with a webhook and two users, E (to be erased) and F, with scores, evidence, alerts, a
    delivery and audit rows (a read and a denied one); E's alerts are already on the alerts topic."""
    e, f = settings.topic_prefix + "E", settings.topic_prefix + "F"  # apart from other tests' users
    engine = make_engine(settings.db_url())
    with engine.begin() as conn:
        team = store.create_team(conn, settings.topic_prefix + "erase-team")
        receiver.secret = store.set_webhook(conn, team, receiver.url, rotate_secret=False)
        store.assign(conn, team, [e, f])
        token = store.create_token(conn, team, "dr-e", None)[1]
        e_scores, e_alerts = add_scores(conn, e, [2, 11, 19], half_width=2)
        add_evidence(conn, e_scores[-1], {2: ["everything feels pointless lately"]})
        f_alerts = add_scores(conn, f, [4, 13])[1]
        delivery = store.enqueue_delivery(conn, e_alerts[0], e)
        store.record_attempt(conn, {"id": delivery, "alert_id": e_alerts[0], "team_id": team, "attempts": 0}, e,
                             "delivered", "delivered", 204, None, None)
        publish_alerts(settings, change_event_rows(conn, e_alerts))
    with client(type("W", (), {"settings": settings})) as api:
        assert api.get(f"/v1/users/{e}/trajectory", headers=bearer(token)).status_code == 200
        store_score = api.get(f"/v1/scores/{e_scores[-1]}/evidence", headers=bearer(token))
        assert store_score.status_code == 200
    return {"team": team, "E": e, "F": f, "e_alerts": e_alerts, "f_alerts": f_alerts, "token": token}


def cells_holding(conn, value: str) -> list[str]:
    """Every table.column whose text holds `value` anywhere (an exhaustive search for a user id)."""
    found = []
    for table in metadata.sorted_tables:
        texts = [c for c in table.c if isinstance(c.type, (String, Text))]
        if texts and conn.execute(select(func.count()).select_from(table).where(
                or_(*(cast(c, Text).contains(value, autoescape=True) for c in texts)))).scalar():
            found.append(table.name)
    return found


def test_erasing_a_user_leaves_nothing_of_theirs(settings, phq_env):
    receiver = Receiver()
    world = seed(settings, receiver)
    e, f = world["E"], world["F"]
    engine = make_engine(settings.db_url())
    with engine.connect() as conn:
        assert set(rows_of(conn, e)) >= {"phq9_scores", "symptom_change_events", "care_assignments",
                                           "care_audit_log"}

    out = run_phq(["erase", e], phq_env())
    assert out.returncode == 0, out.stderr

    with engine.connect() as conn:
        assert rows_of(conn, e) == {} and cells_holding(conn, e) == [], "no table holds the id"
        key = user_key(e)
        audit_rows = conn.execute(select(care_audit_log).where(care_audit_log.c.user_key == key)).mappings().all()
        assert {r["action"] for r in audit_rows} >= {"read_trajectory", "read_evidence"}
        assert all(r["user_id"] is None for r in audit_rows), "audit rows keep the keyed hash only"
        assert conn.execute(select(func.count()).select_from(alert_deliveries)
                            .where(alert_deliveries.c.user_key == key)).scalar() == 1
        stored_at = conn.execute(select(erasures.c.erased_at).where(erasures.c.user_key == key)).scalar()
        assert erased_at(conn, e) == stored_at is not None, "writers find the erasure through the hash"
        assert set(rows_of(conn, f)) >= {"phq9_scores", "symptom_change_events"}
    assert read_erasures(settings)[user_key(e)] == stored_at
    from test_pipeline_support import read_topic

    from phq import topics

    records = read_topic(settings, topics.ERASURES)
    assert records and not any(e.encode() in (m.key() or b"") + (m.value() or b"") for m in records), \
        "the erasures topic keeps the keyed hash, never the id"
    assert run_phq(["erase", e], phq_env()).returncode == 0, "erasing again is safe"
    receiver.close()


def test_the_keyed_hash_needs_the_key():
    assert user_key("u-1", b"k1") == user_key("u-1", b"k1") != user_key("u-1", b"k2")
    assert user_key("u-1", b"k1") != user_key("u-2", b"k1") and "u-1" not in user_key("u-1", b"k1")


def test_notify_drops_alerts_from_before_the_erasure_but_not_after(settings, phq_env):
    receiver = Receiver()
    world = seed(settings, receiver)  # E's old alerts are on the topic already
    assert run_phq(["erase", world["E"]], phq_env()).returncode == 0
    engine = make_engine(settings.db_url())
    with engine.begin() as conn:
        store.assign(conn, world["team"], [world["E"]])  # E comes back and is scored again
        fresh = add_scores(conn, world["E"], [3, 16], start=NOW, model="m2")[1]
        publish_alerts(settings, change_event_rows(conn, world["f_alerts"] + fresh))
    try:
        done = run_phq(["notify", "--allow-http", "--idle-exit", "2"], phq_env(), timeout=90)
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr[-2000:]
    delivered = sorted(a["id"] for a in receiver.delivered())
    assert delivered == sorted(world["f_alerts"] + fresh)
    assert not set(delivered) & set(world["e_alerts"])
