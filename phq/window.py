"""The window rule of CONTRACT section 2, as one pure function.

For a trigger at time T, the window holds every session of the user that has a turn with `ts`
in (T - window_days, T]; of those sessions, their turns with `ts` <= T (a session that straddles
the window's start is kept whole, and nothing from after the trigger leaks in), in (`ts`, `turn`)
order. Cutting to the model's token budget (oldest turns first) is the scoring package's job.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from phq.models import Turn, utc


def window_turns(turns: Iterable[Turn], trigger_ts: datetime, window_days: float = 14) -> list[Turn]:
    """The turns of the window ending at `trigger_ts`, oldest first."""
    end = utc(trigger_ts)
    start = end - timedelta(days=window_days)
    turns = [t for t in turns if utc(t.ts) <= end]
    sessions = {t.session_id for t in turns if start < utc(t.ts)}
    kept = [t for t in turns if t.session_id in sessions]
    return sorted(kept, key=Turn.order_key)


def has_user_turn(turns: Iterable[Turn]) -> bool:
    return any(t.role == "user" for t in turns)
