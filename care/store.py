"""All Postgres access of care/: teams, tokens, assignments, scores, evidence and alerts as a team
may see them, the audit log, webhooks, the delivery outbox and its log, and erasure. Routes and
commands call these.

Every read for a team filters by its assignments inside the same query, so a user, score or alert
of another team is indistinguishable from a missing one (same query, same empty result). Records
that outlive an erasure (audit rows, delivery attempts, the erasure itself) carry `user_key`, the
keyed hash of the user id (phq.erasures.user_key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, text, tuple_, update

from care.tokens import new_token, new_webhook_secret, token_hash
from phq.erasures import lock_user, user_key
from phq.tables import (
    alert_deliveries,
    alert_outbox,
    care_assignments,
    care_audit_log,
    care_teams,
    care_tokens,
    care_webhooks,
    metadata,
    phq9_item_evidence,
    phq9_scores,
    symptom_change_events,
)

ALERT_STATUSES = ("open", "acknowledged", "all")


@dataclass(frozen=True)
class Principal:
    """Who is calling: one token of one team."""

    token_id: int
    team_id: int
    team_name: str
    label: str


# --- Teams, tokens, assignments, webhooks (the `phq team` commands)


def create_team(conn: Connection, name: str) -> int | None:
    """The new team's id, or None when the name is taken."""
    row = conn.execute(
        text("INSERT INTO care_teams (name) VALUES (:n) ON CONFLICT (name) DO NOTHING RETURNING id"), {"n": name}
    ).first()
    return row[0] if row else None


def team_id(conn: Connection, name: str) -> int | None:
    return conn.execute(select(care_teams.c.id).where(care_teams.c.name == name)).scalar()


def create_token(conn: Connection, team: int, label: str, expires_at: datetime | None) -> tuple[int, str]:
    token = new_token()
    token_id = conn.execute(
        insert(care_tokens)
        .values(team_id=team, label=label, token_hash=token_hash(token), expires_at=expires_at)
        .returning(care_tokens.c.id)
    ).scalar_one()
    return token_id, token


def revoke_token(conn: Connection, token_id: int) -> bool:
    """False when there is no such token; revoking twice keeps the first time."""
    exists = conn.execute(select(care_tokens.c.id).where(care_tokens.c.id == token_id)).scalar()
    conn.execute(
        update(care_tokens)
        .where(care_tokens.c.id == token_id, care_tokens.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return exists is not None


def list_tokens(conn: Connection, team: int) -> list[dict]:
    rows = conn.execute(
        select(care_tokens.c.id, care_tokens.c.label, care_tokens.c.created_at, care_tokens.c.expires_at,
               care_tokens.c.revoked_at).where(care_tokens.c.team_id == team).order_by(care_tokens.c.id)
    )
    return [dict(r._mapping) for r in rows]


def assignments_elsewhere(conn: Connection, team: int, user_ids: list[str]) -> dict[str, str]:
    """{user_id: other team's name} for the users already assigned to another team."""
    rows = conn.execute(
        select(care_assignments.c.user_id, care_teams.c.name)
        .join(care_teams, care_teams.c.id == care_assignments.c.team_id)
        .where(care_assignments.c.user_id.in_(user_ids), care_assignments.c.team_id != team)
    )
    return {r.user_id: r.name for r in rows}


def assign(conn: Connection, team: int, user_ids: list[str]) -> None:
    for user_id in user_ids:
        conn.execute(
            text("INSERT INTO care_assignments (user_id, team_id) VALUES (:u, :t) ON CONFLICT (user_id) DO NOTHING"),
            {"u": user_id, "t": team},
        )


def unassign(conn: Connection, user_ids: list[str]) -> int:
    return conn.execute(delete(care_assignments).where(care_assignments.c.user_id.in_(user_ids))).rowcount


def set_webhook(conn: Connection, team: int, url: str, rotate_secret: bool) -> str | None:
    """Sets the team's webhook URL; returns the secret when it is new (first webhook or rotated)."""
    current = conn.execute(select(care_webhooks.c.secret).where(care_webhooks.c.team_id == team)).scalar()
    secret = new_webhook_secret() if current is None or rotate_secret else current
    conn.execute(
        text(
            "INSERT INTO care_webhooks (team_id, url, secret) VALUES (:t, :u, :s) ON CONFLICT (team_id) "
            "DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret, updated_at = now()"
        ),
        {"t": team, "u": url, "s": secret},
    )
    return secret if secret != current else None


# --- Authentication and audit


@dataclass(frozen=True)
class Denial:
    """Why a presented token was refused, with what is known of it (nothing for an unknown token)."""

    reason: str  # unknown_token | expired_token | revoked_token
    token_id: int | None = None
    team_id: int | None = None
    label: str | None = None


def authenticate(conn: Connection, presented_token: str) -> Principal | Denial:
    """The caller a token stands for, or why it is refused (unknown, expired or revoked)."""
    row = conn.execute(
        select(care_tokens.c.id, care_tokens.c.team_id, care_tokens.c.label, care_teams.c.name,
               care_tokens.c.revoked_at, (care_tokens.c.expires_at <= func.now()).label("expired"))
        .join(care_teams, care_teams.c.id == care_tokens.c.team_id)
        .where(care_tokens.c.token_hash == token_hash(presented_token))
    ).first()
    if row is None:
        return Denial("unknown_token")
    if row.revoked_at is not None or row.expired:
        return Denial("revoked_token" if row.revoked_at is not None else "expired_token", row.id, row.team_id,
                      row.label)
    return Principal(row.id, row.team_id, row.name, row.label)


def principal(conn: Connection, presented_token: str) -> Principal | None:
    """The caller a token stands for, or None when it is unknown, expired or revoked."""
    who = authenticate(conn, presented_token)
    return who if isinstance(who, Principal) else None


def audit(conn: Connection, who: Principal, action: str, user_ids=(), alert_id: int | None = None,
          score_id: int | None = None) -> None:
    """One append-only row per user the action touched (or one row without a user)."""
    users = sorted(set(user_ids)) or [None]
    conn.execute(
        insert(care_audit_log),
        [
            {"team_id": who.team_id, "token_id": who.token_id, "token_label": who.label,
             "user_id": u, "user_key": user_key(u) if u is not None else None, "alert_id": alert_id,
             "score_id": score_id, "action": action, "outcome": "allowed"}
            for u in users
        ],
    )


def audit_denied(conn: Connection, who: Principal | Denial, action: str, reason: str, user_id: str | None = None,
                 alert_id: int | None = None, score_id: int | None = None) -> None:
    """One row for a refused request: the token (when known), what was asked for, and why."""
    user_id = user_id if user_id is not None and storable(user_id) else None
    conn.execute(insert(care_audit_log).values(
        team_id=who.team_id, token_id=who.token_id, token_label=who.label, user_id=user_id,
        user_key=user_key(user_id) if user_id is not None else None, alert_id=alert_id, score_id=score_id,
        action=action, outcome="denied", reason=reason,
    ))


def audit_page(conn: Connection, team: int, limit: int, before_id: int | None) -> list[dict]:
    a = care_audit_log.c
    query = select(a.id, a.at, a.token_label, a.user_id, a.alert_id, a.score_id, a.action, a.outcome,
                   a.reason).where(
        a.team_id == team)
    if before_id is not None:
        query = query.where(care_audit_log.c.id < before_id)
    rows = conn.execute(query.order_by(care_audit_log.c.id.desc()).limit(limit + 1))
    return [dict(r._mapping) for r in rows]


# --- What a team reads


def _team_users(team: int):
    return select(care_assignments.c.user_id).where(care_assignments.c.team_id == team)


def storable(value: str) -> bool:
    """Postgres text cannot hold NUL: an id with one matches nothing, so it is looked up as nothing."""
    return "\x00" not in value


def is_visible(conn: Connection, team: int, user_id: str) -> bool:
    if not storable(user_id):
        return False
    return conn.execute(
        select(care_assignments.c.user_id).where(care_assignments.c.team_id == team,
                                                 care_assignments.c.user_id == user_id)
    ).first() is not None


_USERS_SQL = text(
    """
    SELECT a.user_id, a.assigned_at,
           l.id AS score_id, l.score, l.severity, l.scored_at, l.window_end, l.model_version,
           p.score AS previous_score,
           (SELECT count(*) FROM symptom_change_events e
             WHERE e.user_id = a.user_id AND e.acknowledged_at IS NULL) AS open_alerts,
           (SELECT count(*) FROM symptom_change_events e
             WHERE e.user_id = a.user_id AND e.acknowledged_at IS NULL AND e.direction = 'worsening')
             AS open_worsening_alerts
      FROM care_assignments a
      LEFT JOIN LATERAL (
            SELECT s.id, s.score, s.severity, s.scored_at, s.window_end, s.model_version
              FROM phq9_scores s WHERE s.user_id = a.user_id
             ORDER BY s.scored_at DESC, s.id DESC LIMIT 1) l ON true
      LEFT JOIN LATERAL (
            SELECT s.score FROM phq9_scores s
             WHERE s.user_id = a.user_id AND s.model_version = l.model_version
               AND (s.scored_at, s.id) < (l.scored_at, l.id)
             ORDER BY s.scored_at DESC, s.id DESC LIMIT 1) p ON true
     WHERE a.team_id = :team AND (CAST(:after AS text) IS NULL OR a.user_id > :after)
     ORDER BY a.user_id
     LIMIT :limit
    """
)


def users_page(conn: Connection, team: int, limit: int, after_user: str | None) -> list[dict]:
    rows = conn.execute(_USERS_SQL, {"team": team, "after": after_user, "limit": limit + 1})
    return [dict(r._mapping) for r in rows]


def trajectory_page(
    conn: Connection, team: int, user_id: str, start: datetime | None, end: datetime | None,
    limit: int, after: tuple[datetime, int] | None,
) -> list[dict] | None:
    """The user's scores oldest first, or None when the team may not see the user (or it is unknown)."""
    if not is_visible(conn, team, user_id):
        return None
    s = phq9_scores.c
    query = select(phq9_scores).where(s.user_id == user_id)
    if start is not None:
        query = query.where(s.scored_at >= start)
    if end is not None:
        query = query.where(s.scored_at <= end)
    if after is not None:
        query = query.where(tuple_(s.scored_at, s.id) > tuple_(*after))
    rows = conn.execute(query.order_by(s.scored_at, s.id).limit(limit + 1))
    return [dict(r._mapping) for r in rows]


def score_with_evidence(conn: Connection, team: int, score_id: int) -> tuple[dict, list[dict]] | None:
    """(the score, its evidence rows by item and rank), or None when the team may not see the score."""
    s = phq9_scores.c
    score = conn.execute(select(phq9_scores).where(s.id == score_id, s.user_id.in_(_team_users(team)))).first()
    if score is None:
        return None
    v = phq9_item_evidence.c
    rows = conn.execute(select(v.item, v.rank, v.event_id, v.session_id, v.ts, v.excerpt, v.weight)
                        .where(v.score_id == score_id).order_by(v.item, v.rank))
    return dict(score._mapping), [dict(r._mapping) for r in rows]


def _alerts_query(team: int):
    e = symptom_change_events.c
    return (
        select(symptom_change_events, phq9_scores.c.scored_at, phq9_scores.c.model_version)
        .join(phq9_scores, phq9_scores.c.id == e.score_id)
        .where(e.user_id.in_(_team_users(team)))
    )


def alerts_page(
    conn: Connection, team: int, status: str, since: datetime | None, user_id: str | None,
    limit: int, before_id: int | None,
) -> list[dict]:
    e = symptom_change_events.c
    query = _alerts_query(team)
    if status == "open":
        query = query.where(e.acknowledged_at.is_(None))
    elif status == "acknowledged":
        query = query.where(e.acknowledged_at.is_not(None))
    if since is not None:
        query = query.where(e.detected_at >= since)
    if user_id is not None:
        query = query.where(e.user_id == (user_id if storable(user_id) else None))
    if before_id is not None:
        query = query.where(e.id < before_id)
    rows = conn.execute(query.order_by(e.id.desc()).limit(limit + 1))
    return [dict(r._mapping) for r in rows]


def acknowledge(conn: Connection, team: int, alert_id: int, label: str) -> tuple[dict, bool] | None:
    """(the alert, whether this call acknowledged it); None when the team may not see it.

    One conditional UPDATE, so two clinicians acknowledging at once record only the first.
    """
    e = symptom_change_events.c
    changed = conn.execute(
        update(symptom_change_events)
        .where(e.id == alert_id, e.acknowledged_at.is_(None), e.user_id.in_(_team_users(team)))
        .values(acknowledged_at=func.now(), acknowledged_by=label)
        .returning(e.id)
    ).first()
    row = conn.execute(_alerts_query(team).where(e.id == alert_id)).first()
    return (dict(row._mapping), changed is not None) if row else None


# --- Alert delivery (`phq notify`, `phq team deliveries`, `phq team redeliver`)

# What a webhook receives: these fields of the stored alert and its score, nothing else.
WEBHOOK_FIELDS = ("id", "user_id", "score_id", "detected_at", "scored_at", "model_version", "kind", "direction",
                  "previous_score", "current_score", "delta", "noise_bound", "previous_severity",
                  "current_severity", "score_low", "score_high")

_ENQUEUE_SQL = text(
    """
    INSERT INTO alert_outbox (alert_id, team_id)
    SELECT e.id, w.team_id
      FROM symptom_change_events e
      JOIN care_assignments a ON a.user_id = e.user_id
      JOIN care_webhooks w ON w.team_id = a.team_id
     WHERE e.id = :alert_id AND e.user_id = :user_id
    ON CONFLICT (alert_id, team_id) DO NOTHING
    RETURNING id
    """
)


def enqueue_delivery(conn: Connection, alert_id: int, user_id: str) -> int | None:
    """Queue a stored alert for its user's team webhook; the new delivery's id, or None when there is
    nothing to deliver (no such stored alert for that user, e.g. erased; no team or webhook; queued before)."""
    if not storable(user_id):
        return None
    return conn.execute(_ENQUEUE_SQL, {"alert_id": alert_id, "user_id": user_id}).scalar()


def due_teams(conn: Connection) -> list[int]:
    """Teams with a pending delivery whose next attempt is due."""
    o = alert_outbox.c
    return list(conn.execute(select(o.team_id).where(o.state == "pending", o.next_attempt_at <= func.now())
                             .distinct()).scalars())


_CLAIM_SQL = text(
    """
    UPDATE alert_outbox SET next_attempt_at = now() + make_interval(secs => :lease_s)
     WHERE id = (SELECT id FROM alert_outbox
                  WHERE team_id = :team AND state = 'pending' AND next_attempt_at <= now()
                  ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id, alert_id, team_id, attempts, horizon_from
    """
)


def claim_delivery(conn: Connection, team: int, lease_s: float) -> dict | None:
    """The team's oldest due delivery, leased for `lease_s` so that no other `phq notify` takes it
    meanwhile (a crashed one's lease runs out and the delivery is retried)."""
    row = conn.execute(_CLAIM_SQL, {"team": team, "lease_s": lease_s}).first()
    return dict(row._mapping) if row else None


_BODY_SQL = text(
    """
    SELECT e.id, e.user_id, e.score_id, e.detected_at, s.scored_at, s.model_version, e.kind, e.direction,
           e.previous_score, e.current_score, e.delta, e.noise_bound, e.previous_severity, e.current_severity,
           s.score_low, s.score_high, w.url, w.secret
      FROM symptom_change_events e
      JOIN phq9_scores s ON s.id = e.score_id
      JOIN care_assignments a ON a.user_id = e.user_id AND a.team_id = :team
      JOIN care_webhooks w ON w.team_id = a.team_id
     WHERE e.id = :alert_id
    """
)


def delivery_target(conn: Connection, alert_id: int, team: int) -> tuple[dict, dict] | None:
    """(the webhook body's fields from the stored rows, {url, secret}), or None when the alert is gone
    (erased) or its user is no longer in the team, or the team has no webhook any more."""
    row = conn.execute(_BODY_SQL, {"alert_id": alert_id, "team": team}).first()
    if row is None:
        return None
    row = dict(row._mapping)
    return {k: row[k] for k in WEBHOOK_FIELDS}, {"url": row["url"], "secret": row["secret"]}


def record_attempt(conn: Connection, delivery: dict, user_id: str | None, outcome: str, state: str,
                   http_status: int | None, error: str | None, next_attempt_in_s: float | None) -> None:
    """Log one POST (keyed user hash only) and move the delivery to `state`."""
    conn.execute(insert(alert_deliveries).values(
        alert_id=delivery["alert_id"], delivery_id=delivery["id"], team_id=delivery["team_id"],
        user_key=user_key(user_id) if user_id is not None else None, attempt=delivery["attempts"] + 1,
        outcome=outcome, http_status=http_status, error=error,
    ))
    o = alert_outbox.c
    values = dict(state=state, attempts=o.attempts + 1, last_attempt_at=func.now(), last_http_status=http_status,
                  last_error=error)
    if state == "pending":
        values["next_attempt_at"] = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, next_attempt_in_s or 0)
    else:
        values["finished_at"] = func.now()
    conn.execute(update(alert_outbox).where(o.id == delivery["id"]).values(**values))


def cancel_delivery(conn: Connection, delivery_id: int, reason: str) -> None:
    o = alert_outbox.c
    conn.execute(update(alert_outbox).where(o.id == delivery_id)
                 .values(state="cancelled", finished_at=func.now(), last_error=reason))


def list_deliveries(conn: Connection, team: int | None, states: tuple[str, ...], limit: int) -> list[dict]:
    """Newest first, with the team's name; user ids are not shown (the alert id leads to them)."""
    o = alert_outbox.c
    query = (select(alert_outbox, care_teams.c.name.label("team"))
             .join(care_teams, care_teams.c.id == o.team_id).where(o.state.in_(states)))
    if team is not None:
        query = query.where(o.team_id == team)
    return [dict(r._mapping) for r in conn.execute(query.order_by(o.id.desc()).limit(limit))]


def count_deliveries(conn: Connection, team: int | None) -> dict[str, int]:
    o = alert_outbox.c
    query = select(o.state, func.count()).group_by(o.state)
    if team is not None:
        query = query.where(o.team_id == team)
    return {state: n for state, n in conn.execute(query)}


def redeliver(conn: Connection, delivery_ids: list[int] | None, team: int | None) -> list[int]:
    """Queue deliveries again with a fresh retry horizon: the ids given, or every failed one (of a team);
    returns the ids queued."""
    o = alert_outbox.c
    query = update(alert_outbox)
    if delivery_ids is not None:
        query = query.where(o.id.in_(delivery_ids))
    else:
        query = query.where(o.state == "failed")
    if team is not None:
        query = query.where(o.team_id == team)
    rows = conn.execute(query.values(state="pending", horizon_from=func.now(), next_attempt_at=func.now(),
                                     finished_at=None).returning(o.id))
    return sorted(r[0] for r in rows)


# --- Erasure (`phq erase`)

REDACTED_ON_ERASURE = {"care_audit_log"}  # kept, with the user id cleared and its keyed hash left


def erasable_tables():
    """Every table with a user_id column except the audit log: a new table is covered without a change here.
    (Evidence and queued deliveries go with their score and alert: foreign keys with ON DELETE CASCADE.)"""
    return [t for t in metadata.sorted_tables if "user_id" in t.c and t.name not in REDACTED_ON_ERASURE]


def erase_user(conn: Connection, user_id: str, when: datetime) -> dict[str, int]:
    """Deletes the user's rows (children before parents), clears their id from the audit log and records
    the erasure under the keyed hash; {table: rows deleted or redacted}.

    Under the per-user lock every writer takes, so no write of the user's older data interleaves."""
    lock_user(conn, user_id)
    deleted = {}
    for table in reversed(erasable_tables()):
        deleted[table.name] = conn.execute(delete(table).where(table.c.user_id == user_id)).rowcount
    deleted["care_audit_log"] = conn.execute(
        update(care_audit_log).where(care_audit_log.c.user_id == user_id).values(user_id=None)).rowcount
    conn.execute(
        text("INSERT INTO erasures (user_key, erased_at) VALUES (:k, :t) "
             "ON CONFLICT (user_key) DO UPDATE SET erased_at = GREATEST(erasures.erased_at, EXCLUDED.erased_at)"),
        {"k": user_key(user_id), "t": when},
    )
    return deleted
