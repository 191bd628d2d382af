"""Small fixtures for tests of scoring and of what builds on it: synthetic turns and tiny models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
_PHRASES = ["I feel tired and low", "slept badly again", "had a good walk today", "work is stressful", "thanks, that helps"]


@dataclass(frozen=True)
class FakeTurn:
    """Duck-typed like phq.models.Turn, so scoring tests need no pydantic."""

    session_id: str
    ts: datetime
    turn: int
    role: str
    text: str


def make_window(n_sessions: int = 3, turns_per_session: int = 4, words: int = 6, start: datetime = T0, tag: str = "") -> list[FakeTurn]:
    """A window of `n_sessions` daily sessions of alternating user/assistant turns, oldest first."""
    turns = []
    for s in range(n_sessions):
        for k in range(turns_per_session):
            phrase = _PHRASES[(s * turns_per_session + k) % len(_PHRASES)]
            text = " ".join([f"{tag}{s}.{k}", *([phrase] * max(1, words // 4))])
            ts = start + timedelta(days=s, minutes=k)
            turns.append(FakeTurn(f"{tag}s{s}", ts, k, "user" if k % 2 == 0 else "assistant", text))
    return turns
