"""Least privilege and secrets (issue 12 item 5): each process connects as its own database role with
only the grants it needs (the audit log insert-only); passwords and SQL parameters reach no output."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from care.api import create_app
from phq.db import engine as make_engine
from phq.settings import Settings

# (role, statement) pairs a process of that role must not be able to run
REFUSED = [
    ("api", "UPDATE care_audit_log SET action = 'x'"),
    ("api", "DELETE FROM care_audit_log"),
    ("api", "INSERT INTO phq9_scores (request_id) VALUES ('x')"),
    ("api", "SELECT * FROM erasures"),
    ("api", "SELECT * FROM care_webhooks"),
    ("worker", "INSERT INTO care_audit_log (action) VALUES ('x')"),
    ("worker", "SELECT * FROM care_tokens"),
    ("worker", "DELETE FROM phq9_scores"),
    ("notify", "SELECT * FROM care_audit_log"),
    ("notify", "SELECT * FROM care_tokens"),
    ("notify", "DELETE FROM alert_outbox"),
]
ALLOWED = [
    ("api", "INSERT INTO care_audit_log (action) VALUES ('probe')"),
    ("api", "SELECT count(*) FROM phq9_item_evidence"),
    ("worker", "SELECT count(*) FROM erasures"),
    ("notify", "SELECT count(*) FROM care_webhooks"),
]


def as_role(db_url: str, role: str) -> psycopg.Connection:
    url = make_url(Settings(database_url=db_url).db_url(role))
    return psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True)


@pytest.mark.parametrize("role,statement", REFUSED)
def test_a_process_role_cannot_go_beyond_its_grants(db_url, role, statement):
    with as_role(db_url, role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_each_process_role_can_do_its_job(db_url):
    for role, statement in ALLOWED:
        with as_role(db_url, role) as conn:
            conn.execute(statement)


def test_the_api_connects_as_its_role(db_url):
    app = create_app(Settings(database_url=db_url))
    assert app.state.engine.url.username == "phq_api"


def test_role_urls_derive_from_the_owner_url_without_its_password_unless_set():
    s = Settings(database_url="postgresql+psycopg://phq:owner-secret@db:5432/phq",
                 worker_database_url="postgresql+psycopg://w:w-secret@db:5432/phq")
    assert s.db_url("api") == "postgresql+psycopg://phq_api@db:5432/phq"
    assert s.db_url("worker") == "postgresql+psycopg://w:w-secret@db:5432/phq"
    with pytest.raises(ValueError, match="unknown database role"):
        s.db_url("root")


def test_phq_dev_status_masks_passwords(tmp_path):
    env = {**os.environ, "PHQ_DEV_DIR": str(tmp_path), "PHQ_DATABASE_URL": "postgresql+psycopg://phq:s3cr3t@db:5/x",
           "PHQ_KAFKA_BOOTSTRAP": "kafka:9092"}
    out = subprocess.run([sys.executable, "-m", "phq.cli", "dev", "status"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "postgresql+psycopg://phq:***@db:5/x" in out.stdout
    assert "s3cr3t" not in out.stdout + out.stderr


def test_a_failed_statement_does_not_carry_its_parameters(db_url):
    with pytest.raises(DBAPIError) as failed, make_engine(db_url).connect() as conn:
        conn.execute(text("SELECT 1 / CAST(:zero AS int), CAST(:excerpt AS text)"),
                     {"zero": 0, "excerpt": "user-written-excerpt-xyz"})
    assert "division by zero" in str(failed.value) and "parameters hidden" in str(failed.value)
    assert "user-written-excerpt-xyz" not in str(failed.value)
