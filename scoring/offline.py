"""`phq score FILE.jsonl [--model DIR] [--write]`: offline scoring of a chat-event file (backfills).

One score per user, over the window ending at that user's last event in the file, through the
same renderer, batcher and backend as the worker; `--write` stores the rows idempotently.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

CHUNK = 64  # users scored per backend call: the progress bar's step, and a bound on memory


@dataclass
class UserHistory:
    turns: list  # phq.models.Turn
    trigger_session_id: str
    trigger_ts: datetime
    trigger_order: tuple  # (utc ts, line number) of the last event so far


@dataclass(frozen=True)
class OfflineScore:
    user_id: str
    request_id: str
    trigger_session_id: str
    trigger_ts: datetime
    output: object  # scoring.engine.ScoreOutput


def read_histories(path: Path, settings) -> tuple[dict[str, UserHistory], int]:
    """Every user's turns and last event; bad lines are reported with their number and skipped."""
    from phq.events import InvalidEvent, read_event_file
    from phq.models import Turn, utc

    users: dict[str, UserHistory] = {}
    seen: set[str] = set()
    bad = 0
    limits = dict(max_clock_skew_s=settings.max_clock_skew_s, max_event_bytes=settings.max_event_bytes)
    for line_no, _raw, event in read_event_file(path, **limits):
        if isinstance(event, InvalidEvent):
            print(f"{path}:{line_no}: skipped: {event.reason}", file=sys.stderr)
            bad += 1
            continue
        if event.event_id in seen:  # a repeated event changes nothing (CONTRACT section 1)
            continue
        seen.add(event.event_id)
        order = (utc(event.ts), line_no)
        user = users.get(event.user_id)
        if user is None:
            user = users[event.user_id] = UserHistory([], event.session_id, event.ts, order)
        elif order >= user.trigger_order:
            user.trigger_session_id, user.trigger_ts, user.trigger_order = event.session_id, event.ts, order
        if event.event_type == "message":
            user.turns.append(Turn(session_id=event.session_id, ts=event.ts, turn=event.turn, role=event.role,
                                   text=event.text, event_id=event.event_id))
    return users, bad


def windows_to_score(users: dict[str, UserHistory], window_days: float) -> tuple[list[str], list[list]]:
    """Users whose window holds a user turn (others have nothing to score), sorted, and their windows."""
    from phq.window import has_user_turn, window_turns

    ids, windows = [], []
    for user_id in sorted(users):
        history = users[user_id]
        window = window_turns(history.turns, history.trigger_ts, window_days)
        if has_user_turn(window):
            ids.append(user_id)
            windows.append(window)
    return ids, windows


def score_users(scorer, users: dict[str, UserHistory], window_days: float, progress: bool = True) -> list[OfflineScore]:
    from tqdm import tqdm

    from phq.models import request_id

    ids, windows = windows_to_score(users, window_days)
    results: list[OfflineScore] = []
    with tqdm(total=len(ids), desc="phq score", unit="user", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(ids), CHUNK):
            outputs = scorer.score(windows[start : start + CHUNK])
            for user_id, out in zip(ids[start : start + CHUNK], outputs):
                h = users[user_id]
                rid = request_id(user_id, h.trigger_session_id, h.trigger_ts)
                results.append(OfflineScore(user_id, rid, h.trigger_session_id, h.trigger_ts, out))
            bar.update(len(outputs))
    return results


def score_row(s: OfflineScore, model_version: str) -> dict:
    """A `phq9_scores` row (CONTRACT section 3)."""
    out = s.output
    return {
        "request_id": s.request_id,
        "user_id": s.user_id,
        "scored_at": s.trigger_ts,
        "window_start": out.window_start,
        "window_end": s.trigger_ts,
        "score": out.score,
        "severity": out.severity,
        "model_version": model_version,
        "n_sessions": out.n_sessions,
        "n_user_turns": out.n_user_turns,
        "n_tokens": out.n_tokens,
        "trigger_session_id": s.trigger_session_id,
        "items": list(out.items) if out.items is not None else None,
        "score_low": out.score_low,
        "score_high": out.score_high,
    }


def output_line(s: OfflineScore, model_version: str) -> dict:
    """One line of `phq score`'s output (CONTRACT section 5, v2): the score, its items and interval, and
    per item its evidence excerpts with their event ids."""
    out = s.output
    evidence: dict[str, list[dict]] = {}
    for e in out.evidence:
        evidence.setdefault(str(e.item), []).append(
            {"rank": e.rank, "event_id": e.event_id, "session_id": e.session_id, "ts": e.ts.isoformat(),
             "excerpt": e.excerpt, "weight": e.weight})
    return {"user_id": s.user_id, "score": out.score, "severity": out.severity, "n_tokens": out.n_tokens,
            "model_version": model_version, "items": list(out.items) if out.items is not None else None,
            "score_low": out.score_low, "score_high": out.score_high, "evidence": evidence}


def write_scores(db_url: str, rows: list[dict], evidence: dict[str, list[dict]] | None = None) -> int:
    """Insert rows with their evidence (`evidence` by request_id), skipping any already stored for the
    same (request_id, model_version), and any of a user erased at or after the row's scored_at: each row
    is checked under the per-user lock that `phq erase` also takes, inside the write transaction
    (CONTRACT v2 section 5). Backfills raise no change events."""
    from sqlalchemy.dialects.postgresql import insert

    from phq.db import engine
    from phq.erasures import erased_at, lock_user
    from phq.tables import phq9_scores
    from scoring.evidence import store_evidence

    if not rows:
        return 0
    stmt = insert(phq9_scores).on_conflict_do_nothing(index_elements=["request_id", "model_version"]).returning(phq9_scores.c.id)
    eng = engine(db_url)
    try:
        with eng.begin() as conn:
            inserted = 0
            for row in sorted(rows, key=lambda r: r["user_id"]):
                lock_user(conn, row["user_id"])
                erased = erased_at(conn, row["user_id"])
                if erased is not None and row["scored_at"] <= erased:
                    continue
                new_id = conn.execute(stmt, row).scalar()
                if new_id is not None:
                    inserted += 1
                    store_evidence(conn, new_id, (evidence or {}).get(row["request_id"], []))
    finally:
        eng.dispose()
    return inserted


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phq score",
        description="Score each user of a chat-event file over the window ending at their last event; "
        "prints one JSON line per user.",
    )
    parser.add_argument("file", type=Path, help="chat events, one JSON object per line (CONTRACT section 1)")
    parser.add_argument("--model", help="model directory (default: PHQ_MODEL_PATH, else the newest under PHQ_MODEL_DIR)")
    parser.add_argument("--write", action="store_true", help="also store the scores in phq9_scores (idempotent)")
    parser.add_argument("--backend", help="auto, transformers or vllm (default: PHQ_BACKEND)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not args.file.is_file():
        print(f"phq score: {args.file}: no such file; pass a JSON-lines file of chat events", file=sys.stderr)
        return 2
    from phq.settings import Settings
    from scoring.engine import Scorer

    settings = Settings()
    backend = args.backend or settings.backend
    users, bad = read_histories(args.file, settings)
    if args.model:
        scorer = Scorer.load(args.model, backend)
    else:
        scorer = Scorer.from_settings(settings.model_dir, settings.model_path, backend)
    try:
        results = score_users(scorer, users, settings.window_days, progress=not args.no_progress)
    finally:
        scorer.close()
    for s in results:
        print(json.dumps(output_line(s, scorer.model_version), ensure_ascii=False), flush=False)
    sys.stdout.flush()
    summary = f"phq score: {len(results)} user(s) scored with {scorer.model_version}"
    summary += f", {len(users) - len(results)} without a user turn in their window, {bad} bad line(s) skipped"
    if args.write:
        from scoring.evidence import evidence_rows

        evidence = {s.request_id: evidence_rows(s.output, settings.evidence_retention_days) for s in results}
        inserted = write_scores(settings.db_url(), [score_row(s, scorer.model_version) for s in results], evidence)
        summary += f"; stored {inserted} new row(s), {len(results) - inserted} already there or erased"
    print(summary, file=sys.stderr)
    return 0
