"""Table definitions of CONTRACT section 3 (SQLAlchemy Core). Alembic in migrations/ owns the schema;
these mirror it for queries, and a test checks that they agree."""

from __future__ import annotations

from sqlalchemy import REAL as Real
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
)

metadata = MetaData()

phq9_scores = Table(
    "phq9_scores",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("request_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("score", Real, nullable=False),
    Column("severity", Text, nullable=False),
    Column("model_version", Text, nullable=False),
    Column("n_sessions", Integer, nullable=False),
    Column("n_user_turns", Integer, nullable=False),
    Column("n_tokens", Integer, nullable=False),
    Column("trigger_session_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # v2 (migration 0003): item scores 0..3 summing to `score`, and the calibrated 90% interval
    Column("items", ARRAY(Real), nullable=True),
    Column("score_low", Real, nullable=True),
    Column("score_high", Real, nullable=True),
    UniqueConstraint("request_id", "model_version", name="uq_phq9_scores_request_model"),
    Index("ix_phq9_scores_user_scored_at", "user_id", "scored_at"),
)

symptom_change_events = Table(
    "symptom_change_events",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("score_id", BigInteger, ForeignKey("phq9_scores.id", ondelete="CASCADE"), nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("direction", Text, nullable=False),
    Column("previous_score", Real, nullable=False),
    Column("current_score", Real, nullable=False),
    Column("delta", Real, nullable=False),
    Column("previous_severity", Text, nullable=False),
    Column("current_severity", Text, nullable=False),
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    Column("acknowledged_by", Text, nullable=True),
    Column("noise_bound", Real, nullable=True),  # v2: the calibrated 95% bound the delta exceeded
    UniqueConstraint("score_id", "kind", name="uq_symptom_change_events_score_kind"),
    Index("ix_symptom_change_events_user_detected", "user_id", "detected_at"),
)

phq9_item_evidence = Table(
    "phq9_item_evidence",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("score_id", BigInteger, ForeignKey("phq9_scores.id", ondelete="CASCADE"), nullable=False),
    Column("item", SmallInteger, nullable=False),
    Column("rank", SmallInteger, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("excerpt", Text, nullable=False),  # health data: at most 200 characters of one user turn
    Column("weight", Real, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("score_id", "item", "rank", name="uq_phq9_item_evidence_score_item_rank"),
    Index("ix_phq9_item_evidence_ts", "ts"),
)

# --- Care teams (migration 0002): teams, tokens, assignments, audit log, webhooks, deliveries, erasures.

care_teams = Table(
    "care_teams",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

care_tokens = Table(
    "care_tokens",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("team_id", BigInteger, ForeignKey("care_teams.id"), nullable=False),
    Column("label", Text, nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

care_assignments = Table(
    "care_assignments",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("team_id", BigInteger, ForeignKey("care_teams.id"), nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_care_assignments_team", "team_id", "user_id"),
)

care_audit_log = Table(
    "care_audit_log",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("team_id", BigInteger, nullable=True),  # v2 (0004): null for a denied unknown token
    Column("token_id", BigInteger, nullable=True),
    Column("token_label", Text, nullable=True),
    Column("user_id", Text, nullable=True),  # cleared by an erasure; user_key stays
    Column("user_key", Text, nullable=True),  # keyed hash of user_id (phq.erasures.user_key)
    Column("alert_id", BigInteger, nullable=True),
    Column("score_id", BigInteger, nullable=True),  # v2: the score whose evidence was read
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False, server_default="allowed"),  # allowed | denied
    Column("reason", Text, nullable=True),  # why it was denied
    Index("ix_care_audit_log_team", "team_id", "id"),
    Index("ix_care_audit_log_user_key", "user_key"),
)

care_webhooks = Table(
    "care_webhooks",
    metadata,
    Column("team_id", BigInteger, ForeignKey("care_teams.id"), primary_key=True),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

alert_outbox = Table(
    "alert_outbox",  # migration 0004: what `phq notify` still has to deliver, one row per alert and team
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("alert_id", BigInteger, ForeignKey("symptom_change_events.id", ondelete="CASCADE"), nullable=False),
    Column("team_id", BigInteger, ForeignKey("care_teams.id"), nullable=False),
    Column("state", Text, nullable=False, server_default="pending"),  # pending | delivered | failed | cancelled
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("horizon_from", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_attempt_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("last_http_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    UniqueConstraint("alert_id", "team_id", name="uq_alert_outbox_alert_team"),
    Index("ix_alert_outbox_due", "state", "next_attempt_at"),
    Index("ix_alert_outbox_team", "team_id", "id"),
)

alert_deliveries = Table(
    "alert_deliveries",  # every POST attempt; outlives an erasure, so it holds the keyed hash only
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("alert_id", BigInteger, nullable=False),
    Column("delivery_id", BigInteger, nullable=True),  # alert_outbox.id
    Column("user_key", Text, nullable=True),
    Column("team_id", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_alert_deliveries_alert", "alert_id", "team_id"),
    Index("ix_alert_deliveries_user_key", "user_key"),
)

erasures = Table(
    "erasures",
    metadata,
    Column("user_key", Text, primary_key=True),  # v2 (0004): keyed hash of the user id, never the id
    Column("erased_at", DateTime(timezone=True), nullable=False),
)
