"""Care teams: teams, hashed tokens, assignments, append-only audit log, webhooks, deliveries, erasures

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOW = sa.func.now()


def upgrade() -> None:
    op.create_table(
        "care_teams",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "care_tokens",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("team_id", sa.BigInteger, sa.ForeignKey("care_teams.id"), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        # SHA-256 of the token: a stolen table lets no one call the API.
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "care_assignments",
        # user_id as primary key: a user is in at most one team.
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("team_id", sa.BigInteger, sa.ForeignKey("care_teams.id"), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_care_assignments_team", "care_assignments", ["team_id", "user_id"])
    op.create_table(
        "care_audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        # No foreign keys: the log outlives tokens, assignments and erasures.
        sa.Column("team_id", sa.BigInteger, nullable=False),
        sa.Column("token_id", sa.BigInteger, nullable=False),
        sa.Column("token_label", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=True),
        sa.Column("alert_id", sa.BigInteger, nullable=True),
        sa.Column("action", sa.Text, nullable=False),
    )
    op.create_index("ix_care_audit_log_team", "care_audit_log", ["team_id", "id"])
    # Append-only in the database itself, not just by convention in the code.
    op.execute(
        """
        CREATE FUNCTION care_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'care_audit_log is append-only';
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER care_audit_log_no_change BEFORE UPDATE OR DELETE ON care_audit_log "
        "FOR EACH ROW EXECUTE FUNCTION care_audit_log_append_only()"
    )
    op.create_table(
        "care_webhooks",
        sa.Column("team_id", sa.BigInteger, sa.ForeignKey("care_teams.id"), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        # Kept in clear: notify needs it to sign each body (HMAC-SHA256).
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("alert_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("team_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("outcome IN ('delivered','retrying','failed')", name="ck_alert_deliveries_outcome"),
    )
    op.create_index("ix_alert_deliveries_alert", "alert_deliveries", ["alert_id", "team_id"])
    op.create_index("ix_alert_deliveries_user", "alert_deliveries", ["user_id"])
    op.create_table(
        "erasures",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erasures")
    op.drop_table("alert_deliveries")
    op.drop_table("care_webhooks")
    op.execute("DROP TABLE care_audit_log")
    op.execute("DROP FUNCTION care_audit_log_append_only()")
    op.drop_table("care_assignments")
    op.drop_table("care_tokens")
    op.drop_table("care_teams")
