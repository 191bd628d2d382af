"""`phq synth`: seeded, contract-valid, marked synthetic, and a labels file the trainer can read."""

import csv
import json
from datetime import datetime, timedelta, timezone

from phq.events import parse_event
from training import synth

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_every_event_is_a_valid_contract_event_accepted_now():
    events, _ = synth.generate(12, seed=3, now=NOW)
    for e in events:
        parsed = parse_event(json.dumps(e), now=NOW)
        assert parsed.ts <= NOW


def test_history_ends_a_little_before_now_when_no_start_is_given():
    events, labels = synth.generate(12, seed=3, now=NOW)
    last = max(parse_event(json.dumps(e), now=NOW).ts for e in events)
    assert NOW - timedelta(days=3) < last <= NOW - timedelta(minutes=5)
    assert all(datetime.fromisoformat(l["survey_date"].replace("Z", "+00:00")) <= NOW for l in labels)


def test_same_seed_and_start_give_the_same_output_and_another_seed_differs():
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert synth.generate(5, seed=7, start=start) == synth.generate(5, seed=7, start=start)
    assert synth.generate(5, seed=7, start=start) != synth.generate(5, seed=8, start=start)


def test_every_session_starts_and_ends_with_its_markers_and_turns_are_ordered():
    events, _ = synth.generate(12, seed=1, now=NOW)
    sessions: dict[str, list[dict]] = {}
    for e in events:
        sessions.setdefault(e["session_id"], []).append(e)
    for evs in sessions.values():
        assert evs[0]["event_type"] == "session_start" and evs[-1]["event_type"] == "session_end"
        msgs = [e for e in evs if e["event_type"] == "message"]
        assert [m["turn"] for m in msgs] == list(range(len(msgs)))
        assert any(m["role"] == "user" for m in msgs) and any(m["role"] == "assistant" for m in msgs)
        ts = [e["ts"] for e in evs]
        assert ts == sorted(ts)


def test_everything_written_says_it_is_synthetic(tmp_path):
    events, labels = synth.generate(12, seed=2, now=NOW)
    assert all(e["event_id"].startswith("synthetic-") and e["synthetic"] is True for e in events)
    synth.write_labels(labels, tmp_path / "labels.csv")
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert rows and all(r["synthetic"] == "true" for r in rows)


def test_labels_cover_only_part_of_the_users_and_total_is_item_sum():
    events, labels = synth.generate(60, seed=4, now=NOW)
    users = {e["user_id"] for e in events}
    labelled = {l["user_id"] for l in labels}
    assert 0 < len(labelled) < len(users)
    for l in labels:
        items = [l[f"item_{i}"] for i in range(1, 10)]
        assert all(0 <= v <= 3 for v in items) and l["phq9_total"] == sum(items)
    assert len({l["phq9_total"] for l in labels}) > 8  # a spread of severities, not one value


def test_event_ids_are_unique():
    events, _ = synth.generate(30, seed=5, now=NOW)
    assert len({e["event_id"] for e in events}) == len(events)


def test_cli_writes_both_files(tmp_path):
    out_e, out_l = tmp_path / "events.jsonl", tmp_path / "labels.csv"
    rc = synth.main(["--users", "4", "--seed", "9", "--out-events", str(out_e), "--out-labels", str(out_l), "--days", "10"])
    assert rc == 0
    lines = out_e.read_text().splitlines()
    assert lines and all(parse_event(line).user_id.startswith("synthetic-user-") for line in lines)
    assert out_l.read_text().startswith("user_id,survey_date,phq9_total,item_1")
