"""Care v2: a database role per process with least privilege, keyed user hashes where records outlive
an erasure, denied lookups in the audit log, and the persistent alert-delivery outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Roles: phq_api, phq_worker and phq_notify are created NOLOGIN when missing (`phq dev up`, or an
administrator, gives them LOGIN and a password; README, security). The migrations' own role owns the
tables. The audit log is insert-only for every process role; its trigger refuses any change but the
one an erasure makes: clearing `user_id` where the keyed hash `user_key` stays.

Existing rows with a user id (erasures, audit rows, delivery attempts) get their keyed hash here, so
PHQ_ID_HASH_KEY (or the dev services' key) must be set when those tables hold rows. Downgrading keeps
the hashes in place of the ids (they cannot be turned back into ids).
"""

import hashlib
import hmac

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ROLES = ("phq_api", "phq_worker", "phq_notify")
# Every table a process touches, and no more. A new table needs its line here (or in its own migration).
GRANTS = {
    "phq_api": [
        "SELECT ON care_teams, care_tokens, care_assignments, phq9_scores, symptom_change_events, "
        "phq9_item_evidence",
        "UPDATE (acknowledged_at, acknowledged_by) ON symptom_change_events",
        "SELECT, INSERT ON care_audit_log",
    ],
    "phq_worker": [
        "SELECT, INSERT ON phq9_scores, symptom_change_events",
        "SELECT, INSERT, DELETE ON phq9_item_evidence",  # DELETE: the evidence retention sweep
        "SELECT ON erasures",
    ],
    "phq_notify": [
        "SELECT ON symptom_change_events, phq9_scores, care_assignments, care_webhooks",
        "SELECT, INSERT, UPDATE ON alert_outbox",
        "SELECT, INSERT ON alert_deliveries",  # SELECT: INSERT ... RETURNING id
    ],
}


def _hasher():
    """HMAC-SHA256 with the deployment's key, needed only when rows with user ids exist."""
    from phq.settings import Settings

    key = Settings().hash_key()
    return lambda user_id: hmac.new(key, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _hash_column(table: str, key_column: str) -> None:
    """Fill `user_key` from `user_id` for the rows already there."""
    conn = op.get_bind()
    ids = [r[0] for r in conn.execute(sa.text(f"SELECT DISTINCT {key_column} FROM {table} "
                                              f"WHERE {key_column} IS NOT NULL"))]
    if not ids:
        return
    hashed = _hasher()
    for user_id in ids:
        conn.execute(sa.text(f"UPDATE {table} SET user_key = :k WHERE {key_column} = :u"),
                     {"k": hashed(user_id), "u": user_id})


def _roles() -> None:
    for role in ROLES:
        op.execute(f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {role} NOLOGIN;
                END IF;
            EXCEPTION WHEN duplicate_object THEN NULL;  -- created meanwhile by another migration run
            END $$""")


def _erasures() -> None:
    op.add_column("erasures", sa.Column("user_key", sa.Text, nullable=True))
    _hash_column("erasures", "user_id")
    op.drop_constraint("erasures_pkey", "erasures")
    op.drop_column("erasures", "user_id")
    op.alter_column("erasures", "user_key", nullable=False)
    op.create_primary_key("erasures_pkey", "erasures", ["user_key"])


def _audit_log() -> None:
    op.add_column("care_audit_log", sa.Column("user_key", sa.Text, nullable=True))
    op.add_column("care_audit_log", sa.Column("outcome", sa.Text, nullable=False, server_default="allowed"))
    op.add_column("care_audit_log", sa.Column("reason", sa.Text, nullable=True))
    op.add_column("care_audit_log", sa.Column("score_id", sa.BigInteger, nullable=True))  # evidence reads
    op.create_check_constraint("ck_care_audit_log_outcome", "care_audit_log", "outcome IN ('allowed', 'denied')")
    for column in ("team_id", "token_id", "token_label"):  # a denied unknown token has none of them
        op.alter_column("care_audit_log", column, nullable=True)
    op.execute("ALTER TABLE care_audit_log DISABLE TRIGGER care_audit_log_no_change")
    _hash_column("care_audit_log", "user_id")
    op.execute("ALTER TABLE care_audit_log ENABLE TRIGGER care_audit_log_no_change")
    op.create_index("ix_care_audit_log_user_key", "care_audit_log", ["user_key"])
    op.execute(
        """
        CREATE OR REPLACE FUNCTION care_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- The one change allowed: an erasure clears the readable user id and keeps its keyed hash.
            IF TG_OP = 'UPDATE' AND OLD.user_id IS NOT NULL AND NEW.user_id IS NULL AND OLD.user_key IS NOT NULL
               AND ROW(NEW.id, NEW.at, NEW.team_id, NEW.token_id, NEW.token_label, NEW.user_key, NEW.alert_id,
                       NEW.score_id, NEW.action, NEW.outcome, NEW.reason)
                   IS NOT DISTINCT FROM
                   ROW(OLD.id, OLD.at, OLD.team_id, OLD.token_id, OLD.token_label, OLD.user_key, OLD.alert_id,
                       OLD.score_id, OLD.action, OLD.outcome, OLD.reason) THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'care_audit_log is append-only';
        END $$;
        """
    )


def _deliveries() -> None:
    op.add_column("alert_deliveries", sa.Column("user_key", sa.Text, nullable=True))
    op.add_column("alert_deliveries", sa.Column("delivery_id", sa.BigInteger, nullable=True))
    _hash_column("alert_deliveries", "user_id")
    op.drop_index("ix_alert_deliveries_user", "alert_deliveries")
    op.drop_column("alert_deliveries", "user_id")
    op.create_index("ix_alert_deliveries_user_key", "alert_deliveries", ["user_key"])
    op.create_table(
        "alert_outbox",
        # One row per alert and team: what `phq notify` still has to deliver, survives restarts.
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("symptom_change_events.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("team_id", sa.BigInteger, sa.ForeignKey("care_teams.id"), nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        # retries end PHQ_WEBHOOK_RETRY_HORIZON_S after this (`phq team redeliver` resets it)
        sa.Column("horizon_from", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_http_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint("alert_id", "team_id", name="uq_alert_outbox_alert_team"),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed', 'cancelled')", name="ck_alert_outbox_state"),
    )
    op.create_index("ix_alert_outbox_due", "alert_outbox", ["state", "next_attempt_at"])
    op.create_index("ix_alert_outbox_team", "alert_outbox", ["team_id", "id"])


def _grants() -> None:
    for role, grants in GRANTS.items():
        for grant in grants:
            op.execute(f"GRANT {grant} TO {role}")


def upgrade() -> None:
    _roles()
    _erasures()
    _audit_log()
    _deliveries()
    _grants()


def downgrade() -> None:
    for role, grants in GRANTS.items():
        for grant in grants:
            if "alert_outbox" not in grant:
                op.execute(f"REVOKE {grant} FROM {role}")
    op.drop_table("alert_outbox")
    op.drop_index("ix_alert_deliveries_user_key", "alert_deliveries")
    op.alter_column("alert_deliveries", "user_key", new_column_name="user_id")
    op.execute("UPDATE alert_deliveries SET user_id = '' WHERE user_id IS NULL")
    op.alter_column("alert_deliveries", "user_id", nullable=False)
    op.drop_column("alert_deliveries", "delivery_id")
    op.create_index("ix_alert_deliveries_user", "alert_deliveries", ["user_id"])
    op.execute(
        """
        CREATE OR REPLACE FUNCTION care_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'care_audit_log is append-only';
        END $$;
        """
    )
    op.drop_index("ix_care_audit_log_user_key", "care_audit_log")
    op.execute("ALTER TABLE care_audit_log DISABLE TRIGGER care_audit_log_no_change")
    op.execute("DELETE FROM care_audit_log WHERE team_id IS NULL OR token_id IS NULL OR token_label IS NULL")
    op.execute("UPDATE care_audit_log SET user_id = user_key WHERE user_id IS NULL")
    op.execute("ALTER TABLE care_audit_log ENABLE TRIGGER care_audit_log_no_change")
    for column in ("team_id", "token_id", "token_label"):
        op.alter_column("care_audit_log", column, nullable=False)
    op.drop_constraint("ck_care_audit_log_outcome", "care_audit_log")
    op.drop_column("care_audit_log", "score_id")
    op.drop_column("care_audit_log", "reason")
    op.drop_column("care_audit_log", "outcome")
    op.drop_column("care_audit_log", "user_key")
    op.alter_column("erasures", "user_key", new_column_name="user_id")
