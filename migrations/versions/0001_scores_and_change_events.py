"""phq9_scores and symptom_change_events (CONTRACT section 3)

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "phq9_scores",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.REAL, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("n_sessions", sa.Integer, nullable=False),
        sa.Column("n_user_turns", sa.Integer, nullable=False),
        sa.Column("n_tokens", sa.Integer, nullable=False),
        sa.Column("trigger_session_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("request_id", "model_version", name="uq_phq9_scores_request_model"),
        sa.CheckConstraint("score >= 0 AND score <= 27", name="ck_phq9_scores_range"),
        sa.CheckConstraint(
            "severity IN ('minimal','mild','moderate','moderately_severe','severe')", name="ck_phq9_scores_severity"
        ),
    )
    op.create_index("ix_phq9_scores_user_scored_at", "phq9_scores", ["user_id", "scored_at"])
    op.create_table(
        "symptom_change_events",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("score_id", sa.BigInteger, sa.ForeignKey("phq9_scores.id", ondelete="CASCADE"), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("previous_score", sa.REAL, nullable=False),
        sa.Column("current_score", sa.REAL, nullable=False),
        sa.Column("delta", sa.REAL, nullable=False),
        sa.Column("previous_severity", sa.Text, nullable=False),
        sa.Column("current_severity", sa.Text, nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.Text, nullable=True),
        sa.UniqueConstraint("score_id", "kind", name="uq_symptom_change_events_score_kind"),
        sa.CheckConstraint(
            "kind IN ('reliable_change','threshold_crossing','severity_band_change')", name="ck_change_kind"
        ),
        sa.CheckConstraint("direction IN ('worsening','improvement')", name="ck_change_direction"),
    )
    op.create_index("ix_symptom_change_events_user_detected", "symptom_change_events", ["user_id", "detected_at"])


def downgrade() -> None:
    op.drop_table("symptom_change_events")
    op.drop_table("phq9_scores")
