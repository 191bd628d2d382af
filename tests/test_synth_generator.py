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


# --- v2: the questionnaire's rule, the latent truth, held-out wordings, confounders -------------------

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_each_label_is_the_questionnaires_rule_applied_to_the_latent_days():
    from phq.items import item_answer_from_days

    data = synth.synthesize(40, seed=6, start=START)
    truth = {(r["user_id"], r["date"][:10]): r for r in data.truth}
    assert data.labels
    for lab in data.labels:
        day = truth[(lab["user_id"], lab["survey_date"][:10])]
        assert [lab[f"item_{i}"] for i in range(1, 10)] == [item_answer_from_days(c) for c in day["days_in_window"]]
        assert lab["phq9_total"] == sum(day["items"])


def test_the_truth_covers_every_user_and_day_and_counts_the_14_days_up_to_each():
    data = synth.synthesize(10, seed=6, start=START, days=20)
    assert len(data.truth) == 10 * 20 and all(r["never_for_training"] and r["synthetic"] for r in data.truth)
    by_user = {}
    for r in data.truth:
        by_user.setdefault(r["user_id"], {})[r["day"]] = r
    for days in by_user.values():
        for d in range(14, 20):  # every day whose window lies inside the history
            counted = [sum(days[k]["present"][i] for k in range(d - 13, d + 1)) for i in range(9)]
            assert days[d]["days_in_window"] == counted


def test_latent_courses_move_the_way_they_are_named():
    data = synth.synthesize(150, seed=8, start=START)
    first_last = {}
    for r in data.truth:
        if r["day"] in (13, 27):
            first_last.setdefault((r["course"], r["user_id"]), {})[r["day"]] = r["phq9_total"]
    change = {}
    for (course, _), v in first_last.items():
        change.setdefault(course, []).append(v[27] - v[13])
    mean = {c: sum(v) / len(v) for c, v in change.items()}
    assert mean["worsening"] > 1.5 and mean["improving"] < -1.5 and abs(mean["stable"]) < 1.5


def test_users_chat_on_some_days_only():
    data = synth.synthesize(30, seed=2, start=START)
    chatted = [r["chatted"] for r in data.truth]
    assert 0.2 < sum(chatted) / len(chatted) < 0.8


def test_every_user_has_a_recorded_split_and_only_pool_users_lack_labels():
    data = synth.synthesize(80, seed=3, start=START)
    split = {u["user_id"]: u["split"] for u in data.users}
    assert set(split.values()) == {"train", "val", "test", "pool"}
    assert {lab["split"] for lab in data.labels} <= {"train", "val", "test"}
    assert all(split[lab["user_id"]] == lab["split"] for lab in data.labels)
    labelled = {lab["user_id"] for lab in data.labels}
    assert labelled == {u for u, s in split.items() if s != "pool"}


def _family_patterns(families):
    import re

    from training import phrases

    return re.compile("|".join(f"(?<![a-z']){phrases.template_pattern(t)}(?![a-z])"
                               for item in phrases.ITEMS for f in families for t in item["families"][f]))


def test_test_users_speak_only_in_phrase_families_no_other_user_speaks_in():
    from training import phrases

    data = synth.synthesize(60, seed=4, start=START)
    split = {u["user_id"]: u["split"] for u in data.users}
    train_fams, test_fams = _family_patterns(phrases.TRAIN_FAMILIES), _family_patterns(phrases.TEST_FAMILIES)
    said = {"test": [], "other": []}
    for e in data.events:
        if e.get("role") == "user":
            said["test" if split[e["user_id"]] == "test" else "other"].append(e["text"].lower())
    assert said["test"] and said["other"]
    assert not any(train_fams.search(t) for t in said["test"])
    assert not any(test_fams.search(t) for t in said["other"])
    assert any(test_fams.search(t) for t in said["test"]) and any(train_fams.search(t) for t in said["other"])


def test_conversations_hold_the_confounders_a_bag_of_words_misreads():
    events, _ = synth.generate(40, seed=5, start=START)
    users = " ".join(e["text"] for e in events if e.get("role") == "user")
    assistant = " ".join(e["text"] for e in events if e.get("role") == "assistant")
    for marker in ("I wouldn't say", "texted me: '", "but that's behind me now", "If I", "What would you say to a friend",
                   "I don't feel hopeless"):
        assert marker in users, marker
    assert "trouble sleeping" in assistant  # the assistant's words, whatever the user has


def test_the_truth_file_is_marked_and_training_readers_refuse_it(tmp_path):
    import pytest

    from training.data import read_labels, read_transcripts

    out_e, out_l = tmp_path / "events.jsonl", tmp_path / "labels.csv"
    assert synth.main(["--users", "5", "--seed", "1", "--out-events", str(out_e), "--out-labels", str(out_l)]) == 0
    truth = synth.default_truth_path(out_l)
    assert "NEVER-FOR-TRAINING" in truth.name
    header, by_user = synth.read_truth(truth)
    assert header["never_for_training"] and header["synthetic"] and len(by_user) == 5
    with pytest.raises(ValueError, match="never-for-training"):
        read_labels(truth)
    with pytest.raises(ValueError, match="never-for-training"):
        read_transcripts(truth)


def test_a_bag_of_words_stays_below_r_085_on_held_out_wordings():
    from training.baselines import bow_check

    r = bow_check(n_users=250, train_seed=11, test_seed=12)
    assert r["n_test"] >= 30
    assert r["tfidf_ridge"]["test_r"] < 0.85 and r["tfidf_ridge_all_turns"]["test_r"] < 0.85
