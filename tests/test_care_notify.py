"""`phq notify`: alerts reach the webhook of the user's team, built from the stored rows and signed;
pending deliveries live in Postgres, survive restarts and are retried until their horizon, then
failed, listed and re-sendable; one dead receiver delays no other team; https:// only."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from test_care_support import Receiver, add_scores, change_event_rows, publish_alerts, run_phq
from test_pipeline_support import Proc, wait_until

from care import store
from care.notify import backoff_delay, next_state, signature, verify
from care.webhooks import masked, url_problem
from phq.db import engine as make_engine
from phq.erasures import user_key
from phq.settings import Settings
from phq.tables import alert_deliveries, alert_outbox

FAST = {"PHQ_WEBHOOK_BACKOFF_S": "0.05", "PHQ_WEBHOOK_MAX_BACKOFF_S": "0.2", "PHQ_WEBHOOK_TIMEOUT_S": "2"}
OLD_RETRY_BUDGET = 8  # attempts per alert before v1 of `phq notify` dropped it


def test_signature_covers_timestamp_and_body():
    sig = signature("s3cret", "1700000000", b'{"id": 1}')
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert sig != signature("s3cret", "1700000001", b'{"id": 1}') != signature("s3cret", "1700000000", b'{"id":1}')


def test_a_receiver_rejects_stale_or_forged_deliveries():
    now = str(int(time.time()))
    assert verify("k", now, b"x", signature("k", now, b"x"))
    assert not verify("k", now, b"x", signature("other", now, b"x"))
    assert not verify("k", str(int(time.time()) - 3600), b"x", signature("k", str(int(time.time()) - 3600), b"x"))


def test_backoff_doubles_and_is_capped():
    care = Settings(webhook_backoff_s=1, webhook_max_backoff_s=5)
    assert [backoff_delay(attempt, care) for attempt in range(1, 7)] == [1, 2, 4, 5, 5, 5]


def test_retries_last_until_the_horizon_and_not_past_it():
    care = Settings(webhook_backoff_s=1, webhook_max_backoff_s=60)
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert next_state(204, 1, now + timedelta(hours=1), now, care) == ("delivered", None)
    assert next_state(503, 3, now + timedelta(hours=1), now, care) == ("pending", 4)
    assert next_state(None, 20, now + timedelta(seconds=10), now, care) == ("pending", 10), "last try at the horizon"
    assert next_state(503, 20, now, now, care) == ("failed", None)
    assert next_state(429, 1, now + timedelta(hours=1), now, care)[0] == "pending"
    assert next_state(410, 1, now + timedelta(hours=1), now, care) == ("failed", None), "a retry cannot fix a 410"


def test_webhooks_are_https_unless_http_is_allowed_for_loopback():
    assert url_problem("https://ehr.example/hooks") is None
    assert "https://" in url_problem("http://ehr.example/hooks")
    assert "--allow-http" in url_problem("http://127.0.0.1:9/hooks")
    assert url_problem("http://127.0.0.1:9/hooks", allow_http=True) is None
    assert url_problem("http://[::1]:9/hooks", allow_http=True) is None
    assert "loopback" in url_problem("http://ehr.example/hooks", allow_http=True)
    assert url_problem("ftp://ehr.example/x", allow_http=True) is not None
    assert masked("https://bot:pw@ehr.example/h?key=abc") == "https://bot:***@ehr.example/h?***"


def team_with_receiver(settings, name: str, users: list[str], receiver: Receiver) -> int:
    with make_engine(settings.db_url()).begin() as conn:
        team = store.create_team(conn, settings.topic_prefix + name)
        receiver.secret = store.set_webhook(conn, team, receiver.url, rotate_secret=False)
        store.assign(conn, team, users)
    return team


def outbox(settings, team: int) -> list[dict]:
    with make_engine(settings.db_url()).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(alert_outbox).where(alert_outbox.c.team_id == team).order_by(alert_outbox.c.id))]


def attempts(settings, alert_ids: list[int]) -> list[dict]:
    with make_engine(settings.db_url()).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(alert_deliveries).where(alert_deliveries.c.alert_id.in_(alert_ids))
            .order_by(alert_deliveries.c.id))]


def notify(phq_env, tmp_path, name: str, *args: str, **env) -> Proc:
    return Proc(["notify", "--allow-http", *args], phq_env(**{**FAST, **env}), tmp_path / f"{name}.log")


def test_a_webhook_gets_the_stored_alert_with_fixed_fields_signed_after_retries(settings, phq_env, tmp_path):
    receiver = Receiver(fail_first=3)
    out = run_phq(["team", "create", settings.topic_prefix + "alpha"], phq_env())
    assert out.returncode == 0, out.stderr
    refused = run_phq(["team", "webhook", settings.topic_prefix + "alpha", receiver.url], phq_env())
    assert refused.returncode == 1 and "https://" in refused.stderr, "plain http needs the explicit flag"
    out = run_phq(["team", "webhook", settings.topic_prefix + "alpha", receiver.url, "--allow-http"], phq_env())
    assert out.returncode == 0, out.stderr
    receiver.secret = out.stdout.strip().splitlines()[-1]
    ours, theirs = settings.topic_prefix + "u1", settings.topic_prefix + "elsewhere"
    assert run_phq(["team", "assign", settings.topic_prefix + "alpha", ours], phq_env()).returncode == 0
    with make_engine(settings.db_url()).begin() as conn:
        ids = add_scores(conn, ours, [3, 12, 4], half_width=2.5, noise_bound=3.9)[1]
        other = add_scores(conn, theirs, [1, 9])[1]
        rows = change_event_rows(conn, ids + other)
    # on the topic but never stored, a stored id with altered fields, and records no worker writes
    forged = {**rows[0], "id": 9_000_000, "current_score": 27.0}
    tampered = {**rows[0], "delta": 99.0}
    poison = [{"id": 10**30, "user_id": ours}, {"id": str(ids[0]), "user_id": ours}, {"user_id": ours}]
    publish_alerts(settings, rows + [forged, tampered] + poison)
    done = run_phq(["notify", "--allow-http", "--idle-exit", "2"], phq_env(**FAST), timeout=90)
    receiver.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(a["id"] for a in receiver.delivered()) == sorted(ids), "each stored alert of the team, once"
    assert all(r["ok"] for r in receiver.requests), "every delivery carries a valid signature"
    stored = {r["id"]: r for r in rows}
    for body in receiver.delivered():
        assert set(body) == set(store.WEBHOOK_FIELDS)
        assert body["delta"] == stored[body["id"]]["delta"] and body["noise_bound"] == 3.9
        assert body["score_low"] is not None and body["model_version"] == "m1"
    log = attempts(settings, ids)
    first = [r for r in log if r["alert_id"] == receiver.requests[0]["alert"]["id"]]
    assert [r["outcome"] for r in first] == ["retrying"] * 3 + ["delivered"]
    assert [r["http_status"] for r in first] == [503, 503, 503, 204]
    assert {r["user_key"] for r in log} == {user_key(ours)}, "the attempt log keeps a keyed hash, not the id"


def test_a_receiver_down_longer_than_the_old_retry_budget_gets_every_alert_once_across_a_restart(
        settings, phq_env, tmp_path):
    receiver = Receiver()
    receiver.down = True
    user = settings.topic_prefix + "down"
    team = team_with_receiver(settings, "down", [user], receiver)
    with make_engine(settings.db_url()).begin() as conn:
        ids = add_scores(conn, user, [2, 14, 3, 19])[1]
        publish_alerts(settings, change_event_rows(conn, ids))
    first = notify(phq_env, tmp_path, "notify-1")
    try:
        # deliveries go oldest first per team, so the oldest carries the outage's attempts
        wait_until(lambda: len(outbox(settings, team)) == len(ids)
                   and outbox(settings, team)[0]["attempts"] > OLD_RETRY_BUDGET,
                   120, f"more than {OLD_RETRY_BUDGET} attempts at the oldest alert", [first])
        first.kill9()  # mid-outage, possibly mid-attempt: its lease runs out and the next process retries
        failed_so_far = len(receiver.requests)
        second = notify(phq_env, tmp_path, "notify-2")
        wait_until(lambda: len(receiver.requests) >= failed_so_far + 3, 60, "the restarted notify retrying",
                   [second])
        receiver.down = False
        wait_until(lambda: all(r["state"] == "delivered" for r in outbox(settings, team)), 90,
                   "every delivery delivered", [second])
        assert second.stop() == 0
    finally:
        receiver.close()
    delivered = [a["id"] for a in receiver.delivered()]
    assert sorted(delivered) == sorted(ids), "every alert exactly once by id"
    assert len({r["delivery_id"] for r in receiver.requests if r["status"] == 204}) == len(ids)


def test_one_dead_receiver_delays_no_other_team(settings, phq_env, tmp_path):
    hung, healthy = Receiver(), Receiver()
    hung.gate.clear()  # accepts the connection, never answers until released
    hung_user, ok_user = settings.topic_prefix + "hung", settings.topic_prefix + "fine"
    hung_team = team_with_receiver(settings, "hung", [hung_user], hung)
    team_with_receiver(settings, "fine", [ok_user], healthy)
    with make_engine(settings.db_url()).begin() as conn:
        hung_ids = add_scores(conn, hung_user, [1, 20])[1]
        ok_ids = add_scores(conn, ok_user, [2, 15, 3])[1]
        publish_alerts(settings, change_event_rows(conn, hung_ids))  # queued first
        publish_alerts(settings, change_event_rows(conn, ok_ids))
    proc = notify(phq_env, tmp_path, "notify", PHQ_WEBHOOK_TIMEOUT_S="60")
    try:
        wait_until(lambda: sorted(a["id"] for a in healthy.delivered()) == sorted(ok_ids), 60,
                   "the healthy team's alerts", [proc])
        assert not hung.requests, "the hung receiver still holds its first request"
        assert all(r["state"] == "pending" for r in outbox(settings, hung_team))
        hung.gate.set()
        wait_until(lambda: sorted(a["id"] for a in hung.delivered()) == sorted(hung_ids), 60,
                   "the slow team's alerts once released", [proc])
        assert proc.stop() == 0
    finally:
        hung.close(), healthy.close()


def test_a_delivery_past_its_horizon_is_failed_counted_listed_and_redelivered(settings, phq_env):
    receiver = Receiver()
    receiver.down = True
    user = settings.topic_prefix + "u-late"
    team = team_with_receiver(settings, "late", [user], receiver)
    team_name = settings.topic_prefix + "late"
    with make_engine(settings.db_url()).begin() as conn:
        ids = add_scores(conn, user, [1, 20])[1]
        publish_alerts(settings, change_event_rows(conn, ids))
    try:
        done = run_phq(["notify", "--allow-http", "--idle-exit", "1.5"],
                       phq_env(**FAST, PHQ_WEBHOOK_RETRY_HORIZON_S="1.5"), timeout=90)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = outbox(settings, team)
        assert [r["state"] for r in rows] == ["failed"] * len(ids) and rows[0]["attempts"] > 1
        assert not receiver.delivered()
        listed = run_phq(["team", "deliveries", team_name, "--failed"], phq_env())
        assert listed.returncode == 0 and f"failed {len(ids)}" in listed.stderr
        assert {int(line.split("\t")[1]) for line in listed.stdout.splitlines()[1:]} == set(ids)
        assert user not in listed.stdout, "deliveries are listed by alert id, not user id"

        receiver.down = False
        again = run_phq(["team", "redeliver", "--failed", "--team", team_name], phq_env())
        assert again.returncode == 0, again.stderr
        assert run_phq(["team", "redeliver", "999999"], phq_env()).returncode == 1
        done = run_phq(["notify", "--allow-http", "--idle-exit", "1.5"], phq_env(**FAST), timeout=90)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        receiver.close()
    assert sorted(a["id"] for a in receiver.delivered()) == sorted(ids)
    assert [r["state"] for r in outbox(settings, team)] == ["delivered"] * len(ids)


def test_notify_does_not_post_to_plain_http_without_the_flag(settings, phq_env):
    receiver = Receiver()
    user = settings.topic_prefix + "plain"
    team = team_with_receiver(settings, "plain", [user], receiver)
    with make_engine(settings.db_url()).begin() as conn:
        ids = add_scores(conn, user, [1, 20])[1]
        publish_alerts(settings, change_event_rows(conn, ids))
    done = run_phq(["notify", "--idle-exit", "1.5"], phq_env(**FAST), timeout=90)
    receiver.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert not receiver.requests
    assert all(r["state"] == "failed" and "https://" in r["last_error"] for r in outbox(settings, team))


def test_an_alert_already_delivered_is_not_sent_again_on_replay(settings, phq_env):
    receiver = Receiver()
    user = settings.topic_prefix + "replay"
    team_with_receiver(settings, "replay", [user], receiver)
    with make_engine(settings.db_url()).begin() as conn:
        ids = add_scores(conn, user, [2, 14])[1]
        publish_alerts(settings, change_event_rows(conn, ids))
    try:
        for group in ("first", "replay"):  # a new group reads the topic from the start again
            done = run_phq(["notify", "--allow-http", "--idle-exit", "1.5"],
                           phq_env(PHQ_NOTIFY_GROUP=group), timeout=90)
            assert done.returncode == 0, done.stderr[-2000:]
    finally:
        receiver.close()
    assert sorted(a["id"] for a in receiver.delivered()) == sorted(ids)
