"""All Postgres access of care/: teams, tokens, assignments, scores and alerts as a team may see
them, the audit log, webhooks and their delivery log, and erasure. Routes and commands call these.

Every read for a team filters by its assignments inside the same query, so a user or alert of
another team is indistinguishable from a missing one (same query, same empty result).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, or_, select, text, tuple_, update

from care.tokens import new_token, new_webhook_secret, token_hash
from phq.tables import (
    alert_deliveries,
    care_assignments,
    care_audit_log,
    care_teams,
    care_tokens,
    care_webhooks,
    erasures,
    metadata,
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


def principal(conn: Connection, presented_token: str) -> Principal | None:
    """The caller a token stands for, or None when it is unknown, expired or revoked."""
    row = conn.execute(
        select(care_tokens.c.id, care_tokens.c.team_id, care_tokens.c.label, care_teams.c.name)
        .join(care_teams, care_teams.c.id == care_tokens.c.team_id)
        .where(
            care_tokens.c.token_hash == token_hash(presented_token),
            care_tokens.c.revoked_at.is_(None),
            or_(care_tokens.c.expires_at.is_(None), care_tokens.c.expires_at > func.now()),
        )
    ).first()
    return Principal(row.id, row.team_id, row.name, row.label) if row else None


def audit(conn: Connection, who: Principal, action: str, user_ids=(), alert_id: int | None = None) -> None:
    """One append-only row per user the action touched (or one row without a user)."""
    users = sorted(set(user_ids)) or [None]
    conn.execute(
        insert(care_audit_log),
        [
            {"team_id": who.team_id, "token_id": who.token_id, "token_label": who.label,
             "user_id": u, "alert_id": alert_id, "action": action}
            for u in users
        ],
    )


def audit_page(conn: Connection, team: int, limit: int, before_id: int | None) -> list[dict]:
    query = select(care_audit_log).where(care_audit_log.c.team_id == team)
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


# --- Alert delivery (`phq notify`)


def webhook_for_user(conn: Connection, user_id: str) -> dict | None:
    """{team_id, url, secret} of the webhook of the user's team, or None (unassigned, or no webhook)."""
    row = conn.execute(
        select(care_webhooks.c.team_id, care_webhooks.c.url, care_webhooks.c.secret)
        .join(care_assignments, care_assignments.c.team_id == care_webhooks.c.team_id)
        .where(care_assignments.c.user_id == user_id)
    ).first()
    return dict(row._mapping) if row else None


def was_delivered(conn: Connection, alert_id: int, team: int) -> bool:
    d = alert_deliveries.c
    return conn.execute(
        select(d.id).where(d.alert_id == alert_id, d.team_id == team, d.outcome == "delivered").limit(1)
    ).first() is not None


def log_delivery(conn: Connection, **row) -> None:
    conn.execute(insert(alert_deliveries).values(**row))


def erased_at(conn: Connection, user_id: str) -> datetime | None:
    return conn.execute(select(erasures.c.erased_at).where(erasures.c.user_id == user_id)).scalar()


# --- Erasure (`phq erase`)

KEPT_ON_ERASURE = {"care_audit_log", "erasures"}  # ids only; erasures is the record of the erasure itself


def erasable_tables():
    """Every table with a user_id column except those kept: a new table is covered without a change here."""
    return [t for t in metadata.sorted_tables if "user_id" in t.c and t.name not in KEPT_ON_ERASURE]


def erase_user(conn: Connection, user_id: str, when: datetime) -> dict[str, int]:
    """Deletes the user's rows (children before parents) and records the erasure; {table: rows deleted}.

    Under the per-user lock every writer takes, so no write of the user's older data interleaves."""
    from phq.erasures import lock_user

    lock_user(conn, user_id)
    deleted = {}
    for table in reversed(erasable_tables()):
        deleted[table.name] = conn.execute(delete(table).where(table.c.user_id == user_id)).rowcount
    conn.execute(
        text("INSERT INTO erasures (user_id, erased_at) VALUES (:u, :t) "
             "ON CONFLICT (user_id) DO UPDATE SET erased_at = GREATEST(erasures.erased_at, EXCLUDED.erased_at)"),
        {"u": user_id, "t": when},
    )
    return deleted
