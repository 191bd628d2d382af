"""The evidence excerpts of scores (`phq9_item_evidence`, CONTRACT v2 section 3): the rows of one score,
written with it, and the retention sweep. The only message text in PostgreSQL: never logged, kept at
most PHQ_EVIDENCE_RETENTION_DAYS after the quoted turn, deleted with its score and by `phq erase`.
Shared by the scoring worker and `phq score --write`.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import text

_INSERT_EVIDENCE = text("""
    INSERT INTO phq9_item_evidence (score_id, item, rank, event_id, session_id, ts, excerpt, weight)
    VALUES (:score_id, :item, :rank, :event_id, :session_id, :ts, :excerpt, :weight)
    ON CONFLICT (score_id, item, rank) DO NOTHING""")
_PURGE_EVIDENCE = text("DELETE FROM phq9_item_evidence WHERE ts < now() - make_interval(secs => :seconds)")


def evidence_rows(output, retention_days: float, now: datetime | None = None) -> list[dict]:
    """The phq9_item_evidence rows of one score (without score_id): excerpts already past retention
    are never written."""
    now = now or datetime.now(timezone.utc)
    horizon = now.timestamp() - retention_days * 86400
    return [
        {"item": e.item, "rank": e.rank, "event_id": e.event_id, "session_id": e.session_id, "ts": e.ts,
         "excerpt": e.excerpt[:200], "weight": e.weight}
        for e in getattr(output, "evidence", ()) or ()
        if e.ts.timestamp() >= horizon
    ]


def store_evidence(conn, score_id: int, rows: list[dict]) -> None:
    if rows:
        conn.execute(_INSERT_EVIDENCE, [{"score_id": score_id, **r} for r in rows])


def purge_evidence(conn, retention_days: float) -> int:
    return conn.execute(_PURGE_EVIDENCE, {"seconds": retention_days * 86400}).rowcount
