"""`phq pseudolabel`: a strict teacher over a real local HTTP server, the hosted-endpoint guard, and student rounds."""

import csv
import json
from datetime import datetime, timezone

import pytest

from training import synth, tiny
from training.data import labelled_examples, read_labels, read_transcripts, split_users, unlabelled_examples
from training.pseudolabel import (BadTeacherOutput, builtin_teacher, is_local_endpoint, main, parse_teacher_output,
                                  run_scheme, run_teacher)
from training.stand_in_teacher import StandInTeacher

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
USER_TEXT = "I can't sleep at all. I feel really down most days."


def answer(**changes):
    items = [{"item": i, "score": 0, "evidence": ""} for i in range(1, 10)]
    items[2] = {"item": 3, "score": 2, "evidence": "I can't sleep at all"}
    for k, v in changes.items():
        items[int(k[1:]) - 1].update(v)
    return json.dumps({"items": items})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pl")
    events, labels = synth.generate(30, seed=11, start=START, label_fraction=0.6)
    synth.write_events(events, d / "events.jsonl")
    synth.write_labels(labels, d / "labels.csv")
    turns, _ = read_transcripts(d / "events.jsonl")
    real = read_labels(d / "labels.csv")
    gt, _ = labelled_examples(turns, real)
    return dict(dir=d, turns=turns, real=real, gt=gt,
                unlabelled=unlabelled_examples(turns, {lab.user_id for lab in real}))


def test_a_well_formed_answer_parses_to_nine_items():
    items = parse_teacher_output(answer(), USER_TEXT)
    assert [it["item"] for it in items] == list(range(1, 10)) and items[2]["score"] == 2


def test_a_single_json_fence_is_tolerated():
    assert len(parse_teacher_output("```json\n" + answer() + "\n```", USER_TEXT)) == 9


@pytest.mark.parametrize("content, reason", [
    ("The score is 12.", "not JSON"),
    (json.dumps({"items": []}), "expected 9 items"),
    (answer(i2={"score": "2", "evidence": "I feel really down"}), "integer 0..3"),
    (answer(i2={"score": True, "evidence": "I feel really down"}), "integer 0..3"),
    (answer(i2={"score": 4, "evidence": "I feel really down"}), "integer 0..3"),
    (answer(i2={"item": 3}), "repeated item"),
    (answer(i1={"score": 3, "evidence": "I never leave the house"}), "not a quote"),
    (answer(i1={"score": 1, "evidence": ""}), "not a quote"),
])
def test_malformed_answers_are_rejected_with_a_reason(content, reason):
    with pytest.raises(BadTeacherOutput, match=reason):
        parse_teacher_output(content, USER_TEXT)


def test_the_teacher_retries_malformed_output_and_then_labels(data):
    with StandInTeacher(faults=["garbage", "http500"]) as t:
        labels, failures = run_teacher(data["gt"][:1], t.url, "m", retries=2, concurrency=1)
        assert t.requests == 3
    assert len(labels) == 1 and labels[0].provenance == "teacher" and failures == []
    assert labels[0].total == sum(labels[0].items)


def test_a_window_the_teacher_cannot_rate_is_a_recorded_failure_never_a_label(data):
    with StandInTeacher(faults=["garbage", "invented_quote", "string_score"]) as t:
        labels, failures = run_teacher(data["gt"][:1], t.url, "m", retries=2, concurrency=1)
    assert labels == [] and len(failures) == 1
    assert failures[0]["attempts"] == 3 and "integer 0..3" in failures[0]["error"]  # the last reason
    assert set(failures[0]) == {"user_id", "survey_date", "attempts", "error"}  # no transcript text


def test_only_loopback_and_private_endpoints_count_as_local():
    assert is_local_endpoint("http://127.0.0.1:8000/v1") and is_local_endpoint("http://localhost/v1")
    assert is_local_endpoint("http://10.2.3.4:8000/v1")
    assert not is_local_endpoint("https://api.example.com/v1") and not is_local_endpoint("http://8.8.8.8/v1")


def test_a_hosted_endpoint_needs_the_explicit_flag(data, tmp_path, capsys):
    rc = main(["teacher", "--events", str(data["dir"] / "events.jsonl"), "--endpoint", "https://api.example.com/v1",
               "--model", "m", "--out", str(tmp_path / "t.csv")])
    assert rc == 2 and "--allow-hosted" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


def test_the_teacher_command_labels_unlabelled_users_with_provenance(data, tmp_path):
    out = tmp_path / "teacher.csv"
    with StandInTeacher() as t:
        rc = main(["teacher", "--events", str(data["dir"] / "events.jsonl"), "--labels", str(data["dir"] / "labels.csv"),
                   "--endpoint", t.url, "--model", "m", "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(open(out)))
    labelled = {lab.user_id for lab in data["real"]}
    assert rows and all(r["provenance"] == "teacher" and r["user_id"] not in labelled for r in rows)
    assert {r["user_id"] for r in rows} == {ex.user_id for ex in data["unlabelled"]}


def _scheme(data, tmp_path, rounds=1, passes=3, max_std=100.0, teacher=None):
    base = tiny.save_tiny_base(tmp_path / "enc", "encoder")
    split = split_users([e.user_id for e in data["gt"]], 0, 0.2, 0.2)
    cfg = dict(base_model=str(base), epochs=1, batch_size=8, token_budget=128, lr=1e-3, quiet=True)
    part = lambda s: [e for e in data["gt"] if e.user_id in split[s]]
    teacher = builtin_teacher(data["unlabelled"])[0] if teacher is None else teacher
    summary = run_scheme(cfg, part("train"), part("val"), part("test"), data["unlabelled"], teacher, tmp_path / "s",
                         rounds=rounds, passes=passes, max_std=max_std, log=lambda _: None)
    return summary, split


def test_round_0_trains_on_the_real_labels_plus_the_teachers_pseudolabels(data, tmp_path):
    summary, _ = _scheme(data, tmp_path, rounds=0)
    assert summary[0]["n_pseudo"] == len(data["unlabelled"]) and summary[0]["pseudo_provenance"] == ["teacher"]
    rows = list(csv.DictReader(open(tmp_path / "s" / "pool_labels_round_0.csv")))
    assert {r["source"] for r in rows} == {"teacher:builtin:item-model"} and {r["round"] for r in rows} == {"0"}


def test_each_round_relabels_the_pool_recording_source_round_model_version_and_spread(data, tmp_path):
    summary, split = _scheme(data, tmp_path, rounds=1)
    assert [row["round"] for row in summary] == [0, 1]
    assert summary[1]["n_pseudo"] == len(data["unlabelled"]) and summary[1]["pseudo_provenance"] == ["student_round_1"]
    rows = list(csv.DictReader(open(tmp_path / "s" / "pool_labels_round_1.csv")))
    assert {r["provenance"] for r in rows} == {"student_round_1"} and {r["round"] for r in rows} == {"1"}
    assert {r["model_version"] for r in rows} == {summary[0]["model_version"]}  # round 0's student labelled them
    assert all(float(r["spread"]) > 0 for r in rows) and {r["kept"] for r in rows} == {"True"}
    assert not {r["user_id"] for r in rows} & split["test"]
    assert (tmp_path / "s" / "round_1" / "test_predictions.csv").exists()


def test_a_strict_agreement_filter_keeps_no_one(data, tmp_path):
    summary, _ = _scheme(data, tmp_path, rounds=1, max_std=0.0)
    assert summary[0]["next_round_kept"] == 0 and summary[0]["spread_min"] > 0 and summary[1]["n_pseudo"] == 0


def test_the_builtin_teacher_is_the_cold_start_item_model_with_evidence(data):
    labels, failures = builtin_teacher(data["unlabelled"][:5])
    assert failures == [] and len(labels) == 5
    turn_ids = {t.event_id for ex in data["unlabelled"][:5] for t in ex.turns if t.role == "user"}
    for lab in labels:
        assert len(lab.items) == 9 and lab.total == pytest.approx(sum(lab.items)) and lab.provenance == "teacher"
        assert lab.source == "teacher:builtin:item-model" and lab.round == 0 and lab.model_version.startswith("coldstart-")
        assert all(set(ids) <= turn_ids and 1 <= int(k) <= 9 for k, ids in lab.evidence.items())
    assert any(lab.evidence for lab in labels)


def test_the_teacher_command_labels_the_pool_with_the_builtin_teacher(data, tmp_path):
    out = tmp_path / "teacher.csv"
    rc = main(["teacher", "--builtin", "--events", str(data["dir"] / "events.jsonl"),
               "--labels", str(data["dir"] / "labels.csv"), "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(open(out)))
    assert {r["user_id"] for r in rows} == {ex.user_id for ex in data["unlabelled"]}
    assert {r["source"] for r in rows} == {"teacher:builtin:item-model"}
    assert all(isinstance(json.loads(r["evidence"]), dict) for r in rows)


def test_the_teacher_command_wants_builtin_or_an_endpoint(data, tmp_path, capsys):
    rc = main(["teacher", "--events", str(data["dir"] / "events.jsonl"), "--out", str(tmp_path / "t.csv")])
    assert rc == 2 and "--builtin" in capsys.readouterr().err


def test_the_teacher_command_can_label_real_labelled_users_at_their_survey_dates(data, tmp_path):
    out = tmp_path / "teacher_test.csv"
    with StandInTeacher() as t:
        rc = main(["teacher", "--events", str(data["dir"] / "events.jsonl"), "--labels", str(data["dir"] / "labels.csv"),
                   "--target", "labelled", "--endpoint", t.url, "--model", "m", "--out", str(out)])
    assert rc == 0
    assert len(list(csv.DictReader(open(out)))) == len(data["gt"])


def test_the_students_command_runs_its_rounds_and_installs_the_last_model(data, tmp_path):
    base = tiny.save_tiny_base(tmp_path / "enc", "encoder")
    with StandInTeacher() as t:
        assert main(["teacher", "--events", str(data["dir"] / "events.jsonl"), "--labels", str(data["dir"] / "labels.csv"),
                     "--endpoint", t.url, "--model", "m", "--out", str(tmp_path / "teacher.csv")]) == 0
    rc = main(["students", "--events", str(data["dir"] / "events.jsonl"), "--labels", str(data["dir"] / "labels.csv"),
               "--teacher-labels", str(tmp_path / "teacher.csv"),
               "--rounds", "1", "--passes", "2", "--base-model", str(base), "--out", str(tmp_path / "s"),
               "--set", "epochs=1", "--set", "token_budget=128", "--set", "quiet=true",
               "--set", f"model_dir=\"{tmp_path / 'models'}\""])
    assert rc == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert [row["round"] for row in summary] == [0, 1] and summary[0]["pseudo_provenance"] == ["teacher"]
    assert summary[0]["installed_path"] is None and summary[1]["installed_path"].startswith(str(tmp_path / "models"))
