"""The window rule of CONTRACT section 2 and the contract's small pure rules."""

from datetime import datetime, timedelta, timezone

import pytest

from phq.models import Turn, clip_score, request_id, severity
from phq.window import has_user_turn, window_turns

T = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def turn(session, days_before, n=0, role="user", minutes=0):
    return Turn(session_id=session, ts=T - timedelta(days=days_before, minutes=minutes), turn=n, role=role, text="x")


def test_window_keeps_sessions_with_a_turn_in_the_last_14_days():
    turns = [turn("old", 20), turn("recent", 3), turn("edge", 14)]
    assert {t.session_id for t in window_turns(turns, T)} == {"recent"}


def test_window_end_is_inclusive_and_start_exclusive():
    turns = [turn("at-trigger", 0), turn("at-start", 14)]
    assert [t.session_id for t in window_turns(turns, T, 14)] == ["at-trigger"]


def test_a_session_straddling_the_window_start_is_kept_whole():
    turns = [turn("s", 14, n=0, minutes=30), turn("s", 13, n=1)]
    assert len(window_turns(turns, T)) == 2


def test_turns_after_the_trigger_are_left_out():
    late = Turn(session_id="s", ts=T + timedelta(minutes=1), turn=5, role="user", text="x")
    assert window_turns([turn("s", 0), late], T) == [turn("s", 0)]


def test_window_orders_by_ts_then_turn():
    same = T - timedelta(hours=1)
    turns = [
        Turn(session_id="b", ts=same, turn=2, role="user", text="x"),
        Turn(session_id="b", ts=same, turn=1, role="assistant", text="x"),
        turn("a", 2),
    ]
    assert [(t.session_id, t.turn) for t in window_turns(turns, T)] == [("a", 0), ("b", 1), ("b", 2)]


def test_window_days_is_a_parameter():
    assert window_turns([turn("s", 3)], T, window_days=2) == []


def test_out_of_order_timezones_compare_as_instants():
    plus2 = Turn(session_id="s", ts=datetime(2026, 11, 28, 13, 30, tzinfo=timezone(timedelta(hours=2))),
                 turn=0, role="user", text="x")  # 11:30 UTC, before T
    assert window_turns([plus2], T) == [plus2]


def test_has_user_turn():
    assert not has_user_turn([turn("s", 1, role="assistant")])
    assert has_user_turn([turn("s", 1, role="assistant"), turn("s", 1, n=1)])


@pytest.mark.parametrize("score,band", [
    (0, "minimal"), (4.99, "minimal"), (5, "mild"), (9.9, "mild"), (10, "moderate"), (14.99, "moderate"),
    (15, "moderately_severe"), (19.99, "moderately_severe"), (20, "severe"), (27, "severe"),
])
def test_severity_bands_read_cut_offs_as_at_least(score, band):
    assert severity(score) == band


def test_scores_are_clipped_to_0_27():
    assert (clip_score(-3.2), clip_score(31), clip_score(12.5)) == (0.0, 27.0, 12.5)


def test_request_id_is_deterministic_and_offset_independent():
    a = request_id("u", "s", T)
    assert a == request_id("u", "s", T.astimezone(timezone(timedelta(hours=-5))))
    assert a != request_id("u", "s", T + timedelta(seconds=1))
    assert a != request_id("u", "s2", T)


def test_request_id_is_injective_where_ids_hold_the_old_separator():
    assert request_id("a\x1fb", "c", T) != request_id("a", "b\x1fc", T)
    assert request_id("a", "b\x1f" + T.isoformat(), T) != request_id("a\x1fb", T.isoformat(), T)
