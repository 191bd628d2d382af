"""Scores along synthetic users' known latent trajectories: every ended session scored as the pipeline
would (its window of 14 days, its trigger time), beside the latent truth at that time.

Two uses: the change-event noise bound of a model (the spread of its errors between two consecutive
scores of one user), and the alert study (v1 rules against v2 rules: how many alerts per 100
user-months, how many of them follow a true change, how many true changes are alerted). Synthetic
users only: nothing here is a clinical error rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from phq.changes import detect_changes


@dataclass(frozen=True)
class Point:
    user_id: str
    ts: datetime  # the trigger time
    score: float
    truth: float  # the latent PHQ-9 total of that day (what the questionnaire would say)


def synth_points(scorer, n_users: int, seed: int, days: int = 56, progress: bool = False) -> tuple[list[Point], dict]:
    """Every ended session of `n_users` synthetic users with a user turn, scored; and the truth by user."""
    from phq.window import has_user_turn, window_turns
    from training.data import turns_from_events
    from training.synth import synthesize

    data = synthesize(n_users, seed, days=days, label_fraction=1.0)
    start = data.start
    truth = {}
    for rec in data.truth:
        truth.setdefault(rec["user_id"], {})[rec["day"]] = rec["phq9_total"]
    turns = turns_from_events(data.events)
    triggers = [(e["user_id"], datetime.fromisoformat(e["ts"].replace("Z", "+00:00")))
                for e in data.events if e["event_type"] == "session_end"]
    windows, keys = [], []
    for user, ts in triggers:
        window = window_turns(turns.get(user, []), ts, 14)
        if has_user_turn(window):
            windows.append(window)
            keys.append((user, ts))
    points = []
    for i in range(0, len(windows), 64):
        for (user, ts), out in zip(keys[i:i + 64], scorer.score(windows[i:i + 64])):
            day = int((ts - start).total_seconds() // 86400)
            points.append(Point(user, ts, out.score, float(truth[user][day])))
    return sorted(points, key=lambda p: (p.user_id, p.ts)), {"start": start, "truth": truth, "days": days}


def consecutive(points: list[Point]):
    """(previous, current) pairs of one user's scores in time order, as the worker compares them."""
    for a, b in zip(points, points[1:]):
        if a.user_id == b.user_id:
            yield a, b


def pairs_apart(points: list[Point], min_days: float):
    """(earlier, later) pairs of one user's scores at least `min_days` apart: each score with the first
    of the user's scores that is that far behind it."""
    by_user: dict[str, list[Point]] = {}
    for p in points:
        by_user.setdefault(p.user_id, []).append(p)
    for pts in by_user.values():
        j = 0
        for b in pts:
            while j + 1 < len(pts) and (b.ts - pts[j + 1].ts).days >= min_days:
                j += 1
            if (b.ts - pts[j].ts).days >= min_days:
                yield pts[j], b


def change_bound(points: list[Point], coverage: float = 0.95, pairs=None) -> dict:
    """The split-conformal 95% bound of the error of a change between two scores of one user:
    |(score_b - score_a) - (truth_b - truth_a)| over consecutive scores (or `pairs`); beside it,
    1.96 x sqrt(2) x the standard error of one score (the contract's approximation, which ignores that
    one user's errors move together from one score to the next)."""
    diffs = sorted(abs((b.score - a.score) - (b.truth - a.truth)) for a, b in (pairs if pairs is not None else consecutive(points)))
    n = len(diffs)
    if n < 10:
        raise ValueError(f"a change bound needs at least 10 consecutive pairs, got {n}")
    bound = diffs[min(n, math.ceil((n + 1) * coverage)) - 1]
    residuals = [p.truth - p.score for p in points]
    mean = sum(residuals) / len(residuals)
    se = math.sqrt(sum((r - mean) ** 2 for r in residuals) / max(1, len(residuals) - 1))
    return {"change_bound": float(bound), "n_pairs": n, "approximation_1_96_sqrt2_se": 1.96 * math.sqrt(2) * se}


# ------------------------------------------------------------------------------------ the alert study

def true_changes(truth_by_day: dict[int, float], start: datetime, size: float = 5.0) -> list[tuple[datetime, str]]:
    """(day, direction) of each reliable change of the latent total: a move of at least `size` points away
    from where it last settled (the reference moves to each change)."""
    out, ref = [], None
    for day in sorted(truth_by_day):
        v = truth_by_day[day]
        if ref is None:
            ref = v
        elif abs(v - ref) >= size:
            out.append((start + timedelta(days=day), "worsening" if v > ref else "improvement"))
            ref = v
    return out


def alerts_consecutive(points: list[Point], noise_bound: float | None, reliable_change: float = 5,
                       clinical_threshold: float = 10) -> list[tuple[str, datetime, str]]:
    """The contract's rule: each score against the one before it (v1: noise_bound None; v2: with it).
    One alert per score, as a care team sees it (its kinds listed together)."""
    alerts = []
    for a, b in consecutive(points):
        changes = detect_changes(a.score, b.score, reliable_change=reliable_change,
                                 clinical_threshold=clinical_threshold, noise_bound=noise_bound)
        if changes:
            alerts.append((b.user_id, b.ts, changes[0].direction))
    return alerts


def alerts_from_reference(points: list[Point], noise_bound: float, reliable_change: float = 5,
                          clinical_threshold: float = 10) -> list[tuple[str, datetime, str]]:
    """A rule the contract does not have (studied as a proposal): each score against the user's reference
    score (their first, then the score of their last alert), an event when the v2 rule holds between
    them; so a change that builds up over weeks is caught once it is beyond the noise."""
    alerts, ref = [], {}
    for p in points:
        r = ref.get(p.user_id)
        if r is None:
            ref[p.user_id] = p
            continue
        changes = detect_changes(r.score, p.score, reliable_change=reliable_change, clinical_threshold=clinical_threshold,
                                 noise_bound=noise_bound)
        if changes:
            alerts.append((p.user_id, p.ts, changes[0].direction))
            ref[p.user_id] = p
    return alerts


def alert_study(points: list[Point], meta: dict, alerts: list[tuple[str, datetime, str]],
                before_days: float = 14, after_days: float = 7) -> dict:
    """Alerts (user, time, direction) of one rule set against the latent truth.

    An alert at t is true when the truth changed reliably (5 points) in the same direction in
    [t - 14 d, t + 7 d] (the window the score reads, and a week's lag); a true change at c is alerted
    when an alert of its direction falls in [c - 7 d, c + 14 d]."""
    truths = {u: true_changes(by_day, meta["start"]) for u, by_day in meta["truth"].items()}
    users = {p.user_id for p in points}
    lo, hi = timedelta(days=before_days), timedelta(days=after_days)
    true_alerts = sum(any(d == direction and t - lo <= c <= t + hi for c, d in truths[u]) for u, t, direction in alerts)
    changes = [(u, c, d) for u in users for c, d in truths[u] if c >= meta["start"] + timedelta(days=14)]
    caught = sum(any(au == u and ad == d and c - hi <= at <= c + lo for au, at, ad in alerts) for u, c, d in changes)
    user_months = len(users) * (meta["days"] - 14) / 30.44  # scores start once a window has filled
    per_100 = 100 / user_months if user_months else float("nan")
    return {
        "alerts": len(alerts), "true_alerts": true_alerts, "false_alerts": len(alerts) - true_alerts,
        "alerts_per_100_user_months": len(alerts) * per_100, "false_alerts_per_100_user_months": (len(alerts) - true_alerts) * per_100,
        "share_true": true_alerts / len(alerts) if alerts else None,
        "true_changes": len(changes), "true_changes_alerted": caught, "recall": caught / len(changes) if changes else None,
        "user_months": user_months,
    }
