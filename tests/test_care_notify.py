"""`phq notify`: alerts reach the webhook of the user's team, signed, retried with backoff while the
receiver fails, logged attempt by attempt; other users' alerts go nowhere."""

from __future__ import annotations

import json

from sqlalchemy import select
from test_care_support import (
    Receiver,
    add_scores,
    change_event_rows,
    publish_alerts,
    run_phq,
)

from care import store
from care.notify import backoff_delays, signature, verify
from phq.settings import Settings
from phq.db import engine as make_engine
from phq.tables import alert_deliveries

FAST_RETRIES = {"PHQ_WEBHOOK_BACKOFF_S": "0.05", "PHQ_WEBHOOK_MAX_ATTEMPTS": "6"}


def test_signature_covers_timestamp_and_body():
    sig = signature("s3cret", "1700000000", b'{"id": 1}')
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert sig != signature("s3cret", "1700000001", b'{"id": 1}') != signature("s3cret", "1700000000", b'{"id":1}')


def test_a_receiver_rejects_stale_or_forged_deliveries():
    import time

    now = str(int(time.time()))
    assert verify("k", now, b"x", signature("k", now, b"x"))
    assert not verify("k", now, b"x", signature("other", now, b"x"))
    assert not verify("k", str(int(time.time()) - 3600), b"x", signature("k", str(int(time.time()) - 3600), b"x"))


def test_backoff_doubles_and_is_capped():
    care = Settings(webhook_backoff_s=1, webhook_max_attempts=6, webhook_max_backoff_s=5)
    assert backoff_delays(care) == [1, 2, 4, 5, 5]


def test_alerts_are_delivered_signed_with_retries_and_logged(settings, phq_env):
    engine = make_engine(settings.db_url())
    receiver = Receiver(fail_first=3)
    with engine.begin() as conn:
        store.create_team(conn, "notify-alpha")
        store.create_team(conn, "notify-beta")
    out = run_phq(["team", "webhook", "notify-alpha", receiver.url], phq_env())
    assert out.returncode == 0, out.stderr
    receiver.secret = out.stdout.strip().splitlines()[-1]
    assert run_phq(["team", "assign", "notify-alpha", "n-u1"], phq_env()).returncode == 0
    assert run_phq(["team", "assign", "notify-beta", "n-u2"], phq_env()).returncode == 0  # beta: no webhook
    with engine.begin() as conn:
        ours = add_scores(conn, "n-u1", [3, 12, 4])[1]
        theirs = add_scores(conn, "n-u2", [2, 15])[1] + add_scores(conn, "n-nobody", [1, 9])[1]
        publish_alerts(settings, change_event_rows(conn, ours + theirs))
    try:
        done = run_phq(["notify", "--idle-exit", "2"], phq_env(**FAST_RETRIES), timeout=90)
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(a["id"] for a in receiver.delivered()) == sorted(ours)
    assert all(r["ok"] for r in receiver.requests), "every delivery carries a valid signature"
    assert {a["user_id"] for a in receiver.delivered()} == {"n-u1"}
    with engine.connect() as conn:
        log = conn.execute(select(alert_deliveries).where(alert_deliveries.c.user_id == "n-u1")
                           .order_by(alert_deliveries.c.id)).mappings().all()
    first = [row for row in log if row["alert_id"] == receiver.requests[0]["alert"]["id"]]
    assert [r["outcome"] for r in first] == ["retrying"] * 3 + ["delivered"]
    assert [r["http_status"] for r in first] == [503, 503, 503, 204]
    assert {r["alert_id"] for r in log if r["outcome"] == "delivered"} == set(ours)


def test_notify_gives_up_after_the_last_attempt_and_moves_on(settings, phq_env):
    engine = make_engine(settings.db_url())
    receiver = Receiver(fail_first=10_000)
    with engine.begin() as conn:
        team = store.create_team(conn, "notify-down")
        store.set_webhook(conn, team, receiver.url, rotate_secret=False)
        store.assign(conn, team, ["n-down"])
        ids = add_scores(conn, "n-down", [1, 20])[1]
        publish_alerts(settings, change_event_rows(conn, ids))
    try:
        done = run_phq(["notify", "--idle-exit", "2"],
                       phq_env(PHQ_WEBHOOK_BACKOFF_S="0.01", PHQ_WEBHOOK_MAX_ATTEMPTS="3"), timeout=90)
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(receiver.requests) == 3 * len(ids)
    with engine.connect() as conn:
        outcomes = conn.execute(select(alert_deliveries.c.outcome).where(alert_deliveries.c.user_id == "n-down"))
        assert sorted(o for (o,) in outcomes) == sorted(["retrying", "retrying", "failed"] * len(ids))
    assert json.dumps(receiver.requests[0]["alert"])  # the body was the alert's JSON


def test_an_alert_already_delivered_is_not_sent_again_on_replay(settings, phq_env):
    engine = make_engine(settings.db_url())
    receiver = Receiver()
    with engine.begin() as conn:
        team = store.create_team(conn, "notify-replay")
        receiver.secret = store.set_webhook(conn, team, receiver.url, rotate_secret=False)
        store.assign(conn, team, ["n-replay"])
        ids = add_scores(conn, "n-replay", [2, 14])[1]
        publish_alerts(settings, change_event_rows(conn, ids))
    try:
        for group in ("first", "replay"):  # a new group reads the topic from the start again
            done = run_phq(["notify", "--idle-exit", "1.5"], phq_env(PHQ_NOTIFY_GROUP=group), timeout=90)
            assert done.returncode == 0, done.stderr[-2000:]
    finally:
        receiver.close()
    assert sorted(a["id"] for a in receiver.delivered()) == sorted(ids)
