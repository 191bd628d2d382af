"""Training data: labels meet the window that ends at their survey date; splits are by user."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from phq.models import Turn
from training import synth
from training.data import (Label, labelled_examples, parse_survey_date, read_labels, read_transcripts,
                           split_users, unlabelled_examples)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def turn(session, days, n, role="user", text="hi"):
    return Turn(session_id=session, ts=T0 + timedelta(days=days), turn=n, role=role, text=text)


def test_a_label_sees_the_window_ending_at_its_survey_date_and_nothing_after():
    turns = {"u": [turn("old", 0, 0), turn("a", 10, 0), turn("b", 20, 0), turn("after", 30, 0)]}
    label = Label("u", T0 + timedelta(days=21), 12.0)
    (ex,), empty = labelled_examples(turns, [label], window_days=14)
    assert [t.session_id for t in ex.turns] == ["a", "b"] and empty == 0


def test_a_label_without_a_user_turn_in_its_window_is_counted_not_used():
    turns = {"u": [turn("a", 0, 0, role="assistant")]}
    examples, empty = labelled_examples(turns, [Label("u", T0 + timedelta(days=1), 5.0)])
    assert examples == [] and empty == 1


def test_a_plain_survey_date_means_the_end_of_that_day_utc():
    assert parse_survey_date("2026-01-05") == datetime(2026, 1, 5, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert parse_survey_date("2026-01-05T10:00:00+02:00") == datetime(2026, 1, 5, 8, tzinfo=timezone.utc)


def test_splits_are_disjoint_sets_of_users_and_reproducible():
    users = [f"u{i}" for i in range(100)] * 3  # several rows per user
    a, b = split_users(users, seed=1), split_users(users, seed=1)
    assert a == b
    assert not (a["train"] & a["val"]) and not (a["train"] & a["test"]) and not (a["val"] & a["test"])
    assert len(a["train"] | a["val"] | a["test"]) == 100 and len(a["test"]) == 15


def test_reads_contract_events_skipping_invalid_lines_and_duplicates(tmp_path):
    events, labels = synth.generate(3, seed=1, start=T0)
    path = tmp_path / "e.jsonl"
    lines = [json.dumps(e) for e in events] + [json.dumps(events[1]), "not json", json.dumps({"event_type": "message"})]
    path.write_text("\n".join(lines) + "\n")
    turns, stats = read_transcripts(path)
    assert stats["duplicates"] == 1 and stats["invalid"] == 2
    assert stats["turns"] == sum(1 for e in events if e["event_type"] == "message")
    assert set(turns) == {e["user_id"] for e in events}


def test_reads_plain_turn_records(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"user_id": "u", "session_id": "s", "ts": "2026-01-01T10:00:00Z", "turn": 0,
                                "role": "user", "text": "hello"}) + "\n")
    turns, _ = read_transcripts(path)
    assert turns["u"][0].text == "hello"


def test_labels_keep_their_provenance_and_reject_out_of_range_totals(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("# synthetic\nuser_id,survey_date,phq9_total,provenance\nu,2026-01-01,7,teacher\nv,2026-01-01,3,\n")
    labs = read_labels(p)
    assert [(l.total, l.provenance) for l in labs] == [(7.0, "teacher"), (3.0, "gt")]
    p.write_text("user_id,survey_date,phq9_total\nu,2026-01-01,31\n")
    with pytest.raises(ValueError, match="outside 0..27"):
        read_labels(p)


def test_unlabelled_users_get_the_window_ending_at_their_last_turn():
    turns = {"u": [turn("a", 0, 0)], "v": [turn("b", 0, 0), turn("c", 20, 0)]}
    (ex,) = unlabelled_examples(turns, labelled_users={"u"})
    assert ex.user_id == "v" and [t.session_id for t in ex.turns] == ["c"] and ex.total is None
