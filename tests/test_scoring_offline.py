"""`phq score FILE.jsonl`: one JSON line per user over the window ending at their last event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from phq.models import request_id
from scoring.model import build_untrained
from scoring.offline import main

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_untrained(tmp_path_factory.mktemp("m") / "untrained")


def _event(user: str, session: str, minutes: float, kind: str = "message", turn: int = 0, role: str = "user", text: str = "hello") -> str:
    ev = {"schema_version": 1, "event_id": f"{user}-{session}-{kind}-{turn}-{minutes}", "event_type": kind,
          "user_id": user, "session_id": session, "ts": (T0 + timedelta(minutes=minutes)).isoformat()}
    if kind == "message":
        ev.update(role=role, turn=turn, text=text)
    return json.dumps(ev)


def _events_file(tmp_path):
    lines = [
        _event("u1", "a", 0, turn=0, text="I slept badly"),
        _event("u1", "a", 1, turn=1, role="assistant", text="I'm sorry to hear that"),
        "{not json",
        _event("u1", "a", 1, turn=1, role="assistant", text="I'm sorry to hear that"),  # a duplicate
        _event("u2", "x", 5, turn=0, role="assistant", text="How are you?"),  # no user turn: not scored
        _event("u1", "b", 60 * 24, turn=0, text="a better day"),
        _event("u1", "b", 60 * 24 + 2, kind="session_end"),
        json.dumps({"schema_version": 1, "event_id": "bad"}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prints_one_line_per_user_with_a_user_turn_and_reports_bad_lines(tmp_path, model_dir, capsys):
    assert main([str(_events_file(tmp_path)), "--model", str(model_dir), "--backend", "transformers"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["user_id"] for r in rows] == ["u1"]
    assert set(rows[0]) == {"user_id", "score", "severity", "n_tokens", "model_version", "items", "score_low", "score_high",
                            "evidence"}
    assert 0 <= rows[0]["score"] <= 27 and rows[0]["model_version"].startswith("untrained-")
    assert "events.jsonl:3: skipped: event is not JSON" in err
    assert "events.jsonl:8: skipped:" in err
    assert "1 user(s) scored" in err and "2 bad line(s)" in err


def test_missing_file_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.integration
def test_write_stores_rows_once_per_request_and_model(tmp_path, model_dir, db_url, monkeypatch, capsys):
    from sqlalchemy import create_engine, select

    from phq.tables import phq9_scores

    monkeypatch.setenv("PHQ_DATABASE_URL", db_url)
    args = [str(_events_file(tmp_path)), "--model", str(model_dir), "--backend", "transformers", "--write", "--no-progress"]
    assert main(args) == 0
    assert main(args) == 0
    assert "stored 0 new row(s), 1 already there" in capsys.readouterr().err
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(phq9_scores))]
    engine.dispose()
    assert len(rows) == 1
    row = rows[0]
    end = T0 + timedelta(minutes=60 * 24 + 2)
    assert row["request_id"] == request_id("u1", "b", end)
    assert row["scored_at"] == end == row["window_end"] and row["window_start"] == T0
    assert (row["trigger_session_id"], row["n_sessions"], row["n_user_turns"]) == ("b", 2, 2)
