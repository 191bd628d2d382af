"""Migration 0004 on a database with v1 data: erasure records, audit rows and delivery attempts that
held user ids hold their keyed hashes afterwards, and the audit log stays append-only."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from phq.db import engine as make_engine
from phq.db import migrate
from phq.erasures import erased_at, user_key


@pytest.fixture
def v1_database(dev_services):
    base = make_url(dev_services["database_url"])
    admin = dict(host=base.host, port=base.port, user=base.username, dbname=base.database, autocommit=True)
    name = f"phq_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    migrate(url, "0003")
    yield url
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_user_ids_that_outlive_an_erasure_become_keyed_hashes(v1_database):
    engine = make_engine(v1_database)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO erasures (user_id, erased_at) VALUES ('gone-1', '2026-10-01T00:00:00Z')"))
        conn.execute(text("INSERT INTO care_audit_log (team_id, token_id, token_label, user_id, action) "
                          "VALUES (1, 1, 'dr', 'kept-2', 'read_trajectory')"))
        conn.execute(text("INSERT INTO alert_deliveries (alert_id, user_id, team_id, attempt, outcome) "
                          "VALUES (5, 'kept-2', 1, 1, 'delivered')"))
    migrate(v1_database)
    with engine.begin() as conn:
        assert erased_at(conn, "gone-1") is not None
        assert conn.execute(text("SELECT user_key FROM erasures")).scalar() == user_key("gone-1")
        audit = conn.execute(text("SELECT user_id, user_key, outcome FROM care_audit_log")).one()
        assert tuple(audit) == ("kept-2", user_key("kept-2"), "allowed")
        assert conn.execute(text("SELECT user_key FROM alert_deliveries")).scalar() == user_key("kept-2")
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE care_audit_log SET action = 'edited'"))
