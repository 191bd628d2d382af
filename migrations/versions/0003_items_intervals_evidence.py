"""CONTRACT v2 section 3: item scores and calibrated intervals on phq9_scores, the evidence table

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("phq9_scores", sa.Column("items", postgresql.ARRAY(sa.REAL), nullable=True))
    op.add_column("phq9_scores", sa.Column("score_low", sa.REAL, nullable=True))
    op.add_column("phq9_scores", sa.Column("score_high", sa.REAL, nullable=True))
    op.create_check_constraint(
        "ck_phq9_scores_items", "phq9_scores",
        "items IS NULL OR (array_length(items, 1) = 9 AND 0 <= ALL(items) AND 3 >= ALL(items))",
    )
    op.create_check_constraint(
        "ck_phq9_scores_interval", "phq9_scores",
        "(score_low IS NULL) = (score_high IS NULL) AND (score_low IS NULL OR score_low <= score_high)",
    )
    # How far beyond the model's noise a change is: the calibrated 95% bound it was compared with
    # (null under the v1 rules, for a model without calibration).
    op.add_column("symptom_change_events", sa.Column("noise_bound", sa.REAL, nullable=True))
    op.create_table(
        "phq9_item_evidence",
        # The only table with message text (at most 200 characters of one user turn): kept at most
        # PHQ_EVIDENCE_RETENTION_DAYS after the turn was written, deleted with the score and by `phq erase`.
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("score_id", sa.BigInteger, sa.ForeignKey("phq9_scores.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item", sa.SmallInteger, nullable=False),
        sa.Column("rank", sa.SmallInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("excerpt", sa.Text, nullable=False),
        sa.Column("weight", sa.REAL, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("score_id", "item", "rank", name="uq_phq9_item_evidence_score_item_rank"),
        sa.CheckConstraint("item BETWEEN 1 AND 9", name="ck_phq9_item_evidence_item"),
        sa.CheckConstraint("rank >= 1", name="ck_phq9_item_evidence_rank"),
        sa.CheckConstraint("char_length(excerpt) <= 200", name="ck_phq9_item_evidence_excerpt"),
    )
    op.create_index("ix_phq9_item_evidence_ts", "phq9_item_evidence", ["ts"])


def downgrade() -> None:
    op.drop_table("phq9_item_evidence")
    op.drop_column("symptom_change_events", "noise_bound")
    op.drop_constraint("ck_phq9_scores_interval", "phq9_scores")
    op.drop_constraint("ck_phq9_scores_items", "phq9_scores")
    op.drop_column("phq9_scores", "score_high")
    op.drop_column("phq9_scores", "score_low")
    op.drop_column("phq9_scores", "items")
