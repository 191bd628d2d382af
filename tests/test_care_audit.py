"""Audit before disclosure (issue 12 item 4): the audit row (and an acknowledgement) is committed
before the response; a failed commit is a 5xx without data; refusals are audited with the token and
the reason; a request without a token never takes a database connection; a full pool answers 503;
the access log holds route templates, never user ids."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from test_care_support import bearer, build_world, client, db_env

from care.api import create_app
from phq.db import engine as make_engine
from phq.tables import care_audit_log, care_tokens, symptom_change_events

UNKNOWN_TOKEN = "phq_" + "x" * 43  # the shape of a token, issued to no one


@pytest.fixture(scope="module")
def world(db_url):
    return build_world(db_url, "aud")


@pytest.fixture(scope="module")
def api(world):
    with client(world) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def audit_rows(world, **where) -> list[dict]:
    query = select(care_audit_log).order_by(care_audit_log.c.id)
    for column, value in where.items():
        query = query.where(care_audit_log.c[column] == value)
    with make_engine(world.settings.db_url()).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def token_id(world, label: str) -> int:
    with make_engine(world.settings.db_url()).connect() as conn:
        return conn.execute(select(care_tokens.c.id).where(care_tokens.c.label == label)).scalar_one()


@pytest.fixture
def failing_commits(world):
    """Audit rows of users named aud-a1 make COMMIT fail (a deferred trigger: the real failure mode)."""
    engine = make_engine(world.settings.db_url())
    with engine.begin() as conn:
        conn.execute(text("CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$ BEGIN RAISE EXCEPTION 'simulated commit failure'; END $$"))
        conn.execute(text("CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON care_audit_log "
                          "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.user_id = 'aud-a1') "
                          "EXECUTE FUNCTION fail_at_commit()"))
    yield "aud-a1"
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER fail_at_commit ON care_audit_log"))
        conn.execute(text("DROP FUNCTION fail_at_commit()"))


def test_a_read_whose_audit_row_cannot_commit_discloses_nothing(api, world, failing_commits):
    response = api.get(f"/v1/users/{failing_commits}/trajectory", headers=bearer(world.tokens["A"]))
    assert response.status_code == 503 and set(response.json()) == {"detail"}
    assert "nothing was disclosed" in response.json()["detail"]
    assert not audit_rows(world, user_id=failing_commits)


def test_an_acknowledgement_that_cannot_commit_changes_nothing(api, world, failing_commits):
    with make_engine(world.settings.db_url()).connect() as conn:
        alert = conn.execute(select(symptom_change_events.c.id).where(
            symptom_change_events.c.user_id == failing_commits)).scalars().first()
    response = api.post(f"/v1/alerts/{alert}/acknowledge", headers=bearer(world.tokens["A"]))
    assert response.status_code == 503 and set(response.json()) == {"detail"}
    with make_engine(world.settings.db_url()).connect() as conn:
        acked = conn.execute(select(symptom_change_events.c.acknowledged_at)
                             .where(symptom_change_events.c.id == alert)).scalar()
    assert acked is None


def test_a_404_is_audited_with_the_token_the_id_asked_for_and_the_reason(api, world):
    other = world.users["B"][0]
    response = api.get(f"/v1/users/{other}/trajectory", headers=bearer(world.tokens["A"]))
    assert response.status_code == 404
    row = audit_rows(world, outcome="denied", user_id=other)[-1]
    assert (row["token_id"], row["reason"], row["action"]) == (token_id(world, "dr-a"), "not_found", "read_trajectory")
    listed = api.get("/v1/audit", headers=bearer(world.tokens["A"])).json()["items"]
    assert {"user_id": other, "outcome": "denied", "reason": "not_found"}.items() <= listed[0].items()


@pytest.mark.parametrize("which,reason", [("A_revoked", "revoked_token"), ("A_expired", "expired_token")])
def test_a_401_for_a_known_token_is_audited_with_its_id_and_reason(api, world, which, reason):
    response = api.get("/v1/users", headers=bearer(world.tokens[which]))
    assert response.status_code == 401
    row = audit_rows(world, reason=reason)[-1]
    assert row["token_id"] == token_id(world, {"A_revoked": "gone", "A_expired": "old"}[which])
    assert (row["outcome"], row["action"]) == ("denied", "list_users")


def test_a_401_for_an_unknown_token_is_audited_without_a_token_id(api, world):
    before = len(audit_rows(world, reason="unknown_token"))
    assert api.get("/v1/me", headers=bearer(UNKNOWN_TOKEN)).status_code == 401
    rows = audit_rows(world, reason="unknown_token")
    assert len(rows) == before + 1 and rows[-1]["token_id"] is None and rows[-1]["team_id"] is None


def test_no_token_is_refused_without_a_database_connection_and_a_full_pool_is_a_503(world):
    app = create_app(world.settings.model_copy(update={"api_pool_size": 1, "api_pool_timeout_s": 0.3}))
    with TestClient(app) as api, app.state.engine.connect():  # the pool's only connection, held
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic eDp5"}, bearer("phq_short")):
            started = time.monotonic()
            assert api.get("/v1/users", headers=headers).status_code == 401
            assert time.monotonic() - started < 0.3, "refused before waiting for a connection"
        busy = api.get("/v1/users", headers=bearer(world.tokens["A"]))
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "retry" in busy.json()["detail"]
    with TestClient(app) as api:
        assert api.get("/v1/users", headers=bearer(world.tokens["A"])).status_code == 200


def test_the_access_log_names_routes_not_user_ids(world, tmp_path):
    port = free_port()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "phq.cli", "api", "--port", str(port)],
                                env=db_env(world.settings.db_url()), stdout=out, stderr=subprocess.STDOUT)
    url, user = f"http://127.0.0.1:{port}", world.users["A"][0]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        for path in (f"/v1/users/{user}/trajectory", f"/v1/alerts?status=all&user_id={user}", "/v1/users/x%2Fy/trajectory"):
            assert httpx.get(url + path, headers=bearer(world.tokens["A"])).status_code in (200, 404)
    finally:
        proc.terminate()
        proc.wait(10)
    written = log.read_text()
    assert "/v1/users/{user_id}/trajectory" in written and "/v1/alerts" in written
    assert user not in written and "x/y" not in written and "x%2Fy" not in written
