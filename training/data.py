"""Training data: chat events or transcript lines plus a labels file -> one example per (user, survey
date), holding the window (CONTRACT section 2) that ends at that date; user-level splits; fingerprints.

Rendering goes through the scoring package's renderer, so training and serving see the same text.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import random
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from pathlib import Path

from phq.events import InvalidEvent, parse_event, parse_rfc3339
from phq.models import Turn
from phq.window import has_user_turn, window_turns

PROVENANCES = ("gt", "teacher")  # plus student_round_<k>


@dataclass
class Label:
    user_id: str
    survey_ts: datetime
    total: float
    provenance: str = "gt"  # gt | teacher | student_round_<k>
    items: list[float] | None = None
    split: str = ""  # the generator's split of the user (train/val/test/pool) when the file names one
    # where a pseudolabel came from: its source (e.g. "teacher:stand-in"), round, the labelling model's
    # version and the spread of its uncertainty estimate (PHQ-9 points)
    source: str = ""
    round: int | None = None
    model_version: str = ""
    spread: float | None = None
    evidence: dict | None = None  # a teacher's evidence: per item, the event ids of the user turns behind it


@dataclass
class Example:
    user_id: str
    survey_ts: datetime
    turns: list[Turn]
    total: float | None = None  # None for an unlabelled user (pseudolabelling predicts it)
    provenance: str = "gt"
    extra: dict = field(default_factory=dict)


# --- reading ---------------------------------------------------------------------------------

def read_transcripts(path: str | Path) -> tuple[dict[str, list[Turn]], dict]:
    """Every user's turns from a JSON-lines file of contract events or of plain turn records
    (`user_id, session_id, ts, turn, role, text`). Invalid lines are skipped and counted, as the
    stream processor would send them to the DLQ; repeated event ids are dropped."""
    with open(path, "rb") as f:
        return _collect_turns(enumerate(f, 1), str(path))


def turns_from_events(events: list[dict]) -> dict[str, list[Turn]]:
    """`read_transcripts` of event dicts already in memory (e.g. `phq synth`'s), without a file."""
    turns, _ = _collect_turns(((n, json.dumps(e).encode()) for n, e in enumerate(events, 1)), "<events>")
    return turns


def _collect_turns(lines, source: str) -> tuple[dict[str, list[Turn]], dict]:
    turns: dict[str, list[Turn]] = {}
    seen: set[str] = set()
    stats = {"lines": 0, "invalid": 0, "duplicates": 0, "turns": 0}
    for line_no, raw in lines:
        if not raw.strip():
            continue
        stats["lines"] += 1
        try:
            obj = json.loads(raw)
            if isinstance(obj, dict) and obj.get("never_for_training"):
                raise ValueError(f"{source} is a never-for-training file (the latent truth of `phq synth`); "
                                 "pass the events file instead")
            if isinstance(obj, dict) and "event_type" in obj:
                event = parse_event(raw.strip(), max_clock_skew_s=100 * 365 * 86400.0, max_event_bytes=1 << 30)
                if event.event_id in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(event.event_id)
                if event.event_type != "message":
                    continue
                user, turn = event.user_id, Turn(session_id=event.session_id, ts=event.ts, turn=event.turn,
                                                 role=event.role, text=event.text, event_id=event.event_id)
            else:
                user = obj["user_id"]
                turn = Turn(session_id=obj["session_id"], ts=parse_rfc3339(obj["ts"]), turn=obj["turn"],
                            role=obj["role"], text=obj["text"], event_id=str(obj.get("event_id", "")))
        except (InvalidEvent, KeyError, TypeError) as exc:
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"{source}:{line_no}: skipped: {reason}", file=sys.stderr)
            stats["invalid"] += 1
            continue
        except ValueError as exc:
            if "never-for-training" in str(exc):
                raise
            print(f"{source}:{line_no}: skipped: ValueError: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
            stats["invalid"] += 1
            continue
        turns.setdefault(user, []).append(turn)
        stats["turns"] += 1
    for user in turns:
        turns[user].sort(key=Turn.order_key)
    return turns, stats


def parse_survey_date(value: str) -> datetime:
    """An RFC 3339 timestamp, or a plain date read as the end of that day in UTC."""
    value = value.strip()
    if len(value) == 10:
        day = datetime.strptime(value, "%Y-%m-%d").date()
        return datetime.combine(day, time(23, 59, 59, 999999), tzinfo=timezone.utc)
    return parse_rfc3339(value)


PSEUDO_COLUMNS = ["source", "round", "model_version", "spread"]


def read_labels(path: str | Path) -> list[Label]:
    """Labels from `user_id, survey_date, phq9_total[, item_1..item_9][, split][, provenance, source, round,
    model_version, spread]` (comment lines allowed). A never-for-training file is refused."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        first = f.readline()
        if "never_for_training" in first:
            raise ValueError(f"{path} is a never-for-training file (the latent truth of `phq synth`): never train on it")
        f.seek(0)
        reader = csv.DictReader(row for row in f if not row.startswith("#"))
        missing = {"user_id", "survey_date", "phq9_total"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                             "expected user_id,survey_date,phq9_total[,item_1..item_9][,provenance]")
        for n, row in enumerate(reader, start=2):
            try:
                total = float(row["phq9_total"])
                items = [float(row[f"item_{i}"]) for i in range(1, 10)] if row.get("item_1") not in (None, "") else None
                ts = parse_survey_date(row["survey_date"])
                rnd = int(row["round"]) if row.get("round") not in (None, "") else None
                spread = float(row["spread"]) if row.get("spread") not in (None, "") else None
            except ValueError as exc:
                raise ValueError(f"{path} line {n}: {exc}") from None
            if not 0 <= total <= 27:
                raise ValueError(f"{path} line {n}: phq9_total {total:g} is outside 0..27")
            out.append(Label(row["user_id"], ts, total, row.get("provenance") or "gt", items, row.get("split") or "",
                             row.get("source") or "", rnd, row.get("model_version") or "", spread))
    return out


def write_labels(labels: list[Label], path: str | Path, extra: dict[str, list] | None = None) -> None:
    """Labels with their provenance and, for pseudolabels, source, round, model version and spread
    (plus `extra` columns, one value per label)."""
    extra = extra or {}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "survey_date", "phq9_total", "provenance", *PSEUDO_COLUMNS, *extra])
        for i, lab in enumerate(labels):
            w.writerow([lab.user_id, lab.survey_ts.isoformat(), f"{lab.total:.3f}", lab.provenance, lab.source,
                        "" if lab.round is None else lab.round, lab.model_version,
                        "" if lab.spread is None else f"{lab.spread:.4f}", *(v[i] for v in extra.values())])


def splits_from_labels(labels: list[Label]) -> dict[str, set[str]] | None:
    """The generator's train/val/test users when every real label names its user's split, else None."""
    gt = [lab for lab in labels if lab.provenance == "gt"]
    if not gt or any(lab.split not in ("train", "val", "test") for lab in gt):
        return None
    out: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for lab in gt:
        out[lab.split].add(lab.user_id)
    return out


# --- examples ----------------------------------------------------------------------------------

def labelled_examples(turns: dict[str, list[Turn]], labels: list[Label], window_days: float = 14) -> tuple[list[Example], int]:
    """One example per label whose window holds a user turn; also how many labels had none."""
    out, empty = [], 0
    for lab in labels:
        window = window_turns(turns.get(lab.user_id, []), lab.survey_ts, window_days)
        if not has_user_turn(window):
            empty += 1
            continue
        out.append(Example(lab.user_id, lab.survey_ts, window, lab.total, lab.provenance))
    return out, empty


def unlabelled_examples(turns: dict[str, list[Turn]], labelled_users: set[str], window_days: float = 14) -> list[Example]:
    """For each user without a label: the window ending at their last turn (what `phq score` sees)."""
    out = []
    for user, ts in sorted(turns.items()):
        if user in labelled_users or not ts:
            continue
        end = max(t.ts for t in ts)
        window = window_turns(ts, end, window_days)
        if has_user_turn(window):
            out.append(Example(user, end, window, None, "unlabelled"))
    return out


def split_users(users: list[str], seed: int, val: float = 0.15, test: float = 0.15) -> dict[str, set[str]]:
    """Disjoint train/val/test sets of users (never rows), deterministic in `seed`."""
    users = sorted(set(users))
    random.Random(seed).shuffle(users)
    n_test, n_val = round(len(users) * test), round(len(users) * val)
    if len(users) >= 3:
        n_test, n_val = max(n_test, 1) if test > 0 else 0, max(n_val, 1) if val > 0 else 0
    return {
        "test": set(users[:n_test]),
        "val": set(users[n_test : n_test + n_val]),
        "train": set(users[n_test + n_val :]),
    }


def fingerprint(examples: list[Example]) -> str:
    """A hash of what a model was trained on (users, survey dates, targets, provenance and turn text)."""
    h = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: (e.user_id, e.survey_ts)):
        h.update(f"{ex.user_id}|{ex.survey_ts.isoformat()}|{ex.total}|{ex.provenance}|".encode())
        for t in ex.turns:
            h.update(f"{t.session_id}|{t.turn}|{t.role}|".encode() + t.text.encode() + b"\x1e")
    return "sha256:" + h.hexdigest()[:16]


# --- rendering (the scoring package's renderer) -------------------------------------------------

def render(turns: list[Turn], tokenizer, meta) -> tuple[list[int], int]:
    """(input ids, kept turns) of a window, cut to the model's token budget oldest-first, exactly as serving does."""
    from scoring.render import render_window

    r = render_window(turns, tokenizer, meta.token_budget, template=meta.template)
    return list(r.input_ids), r.n_turns_kept


# --- predictions for eval ----------------------------------------------------------------------

def predict_for_labels(model_dir: str, events: str, labels: str, window_days: float | None = None):
    """(users, y_true, y_pred) for every label whose window holds a user turn, scored by the scoring
    package's `Scorer` (the backend PHQ_BACKEND picks), exactly as serving would score that window."""
    import numpy as np

    from phq.settings import get_settings
    from scoring.engine import Scorer

    settings = get_settings()
    window_days = window_days or settings.window_days
    turns, _ = read_transcripts(events)
    examples, _ = labelled_examples(turns, read_labels(labels), window_days)
    if not examples:
        raise ValueError("no label has a window with a user turn: check that --events and --labels are the same users and dates")
    scorer = Scorer.load(model_dir, settings.backend)
    try:
        scores = [s.score for s in scorer.score([ex.turns for ex in examples])]
    finally:
        scorer.close()
    return (np.array([e.user_id for e in examples]), np.array([e.total for e in examples], float), np.array(scores, float))
