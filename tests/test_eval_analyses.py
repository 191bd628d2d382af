"""The reviewers' analyses: pseudolabel quality against real labels, and the paired ablation."""

import json

import numpy as np
import pytest

from training import evaluate
from training import metrics as M
from training.analyses import paired_difference


def write_labels(path, rows):
    path.write_text("user_id,survey_date,phq9_total\n" + "".join(f"{u},{d},{v}\n" for u, d, v in rows))


def case(n=60, seed=0):
    rng = np.random.default_rng(seed)
    users = [f"synthetic-user-{i}" for i in range(n)]
    y = rng.integers(0, 28, n).astype(float)
    return users, y, rng


def test_pseudolabel_quality_joins_on_user_and_survey_date_and_reports_coverage(tmp_path):
    users, y, rng = case()
    write_labels(tmp_path / "real.csv", [(u, "2026-01-10T10:00:00Z", v) for u, v in zip(users, y)])
    teacher = y + rng.normal(0, 2, len(y))
    # the teacher failed on the first 10 users: they are missing, not imputed
    write_labels(tmp_path / "teacher.csv", [(u, "2026-01-10T10:00:00+00:00", round(v, 2)) for u, v in zip(users[10:], teacher[10:])])
    evaluate.write_predictions(tmp_path / "r0.csv", users, y, y + 3, {"survey_date": ["2026-01-10T10:00:00Z"] * len(y)})
    rc = evaluate.main(["pseudolabels", "--labels", str(tmp_path / "real.csv"), "--source", f"teacher={tmp_path / 'teacher.csv'}",
                        "--source", f"student_round_0={tmp_path / 'r0.csv'}", "--out", str(tmp_path / "q"), "--bootstrap", "100"])
    assert rc == 0
    q = json.loads((tmp_path / "q" / "pseudolabel_quality.json").read_text())
    assert q["teacher"]["n"] == 50 and q["teacher"]["coverage"] == pytest.approx(50 / 60)
    assert q["teacher"]["mae"] == pytest.approx(M.mae(y[10:], np.round(teacher[10:], 2)))
    assert q["student_round_0"]["mae"] == pytest.approx(3.0)
    assert (tmp_path / "q" / "pseudolabel_auc_by_threshold.png").exists()
    assert "Synthetic data" in (tmp_path / "q" / "pseudolabel_quality.md").read_text()


def test_paired_difference_is_exact_for_a_constant_shift():
    users, y, rng = case()
    pa = y + rng.normal(0, 3, len(y))
    d = paired_difference(np.array(users), y, pa, pa, n_boot=50)
    assert d["mae"]["point"] == 0 and d["mae"]["ci95"] == [0.0, 0.0]


def test_ablation_compares_both_arms_on_the_same_rows(tmp_path):
    users, y, rng = case()
    dates = {"survey_date": ["2026-01-10T10:00:00Z"] * len(y)}
    evaluate.write_predictions(tmp_path / "a.csv", users, y, y + rng.normal(0, 5, len(y)), dates)
    order = rng.permutation(len(y))  # the same rows in another order still pair up
    evaluate.write_predictions(tmp_path / "b.csv", [users[i] for i in order], y[order], y[order] + 1.0,
                               {"survey_date": [dates["survey_date"][i] for i in order]})
    rc = evaluate.main(["ablation", "--a", f"real_only={tmp_path / 'a.csv'}", "--b", f"real_plus_pseudo={tmp_path / 'b.csv'}",
                        "--out", str(tmp_path / "ab"), "--bootstrap", "200"])
    assert rc == 0
    r = json.loads((tmp_path / "ab" / "ablation.json").read_text())
    assert r["arms"]["real_plus_pseudo"]["mae"] == pytest.approx(1.0)
    diff = r["difference"]["mae"]
    assert diff["point"] == pytest.approx(1.0 - r["arms"]["real_only"]["mae"])
    assert diff["ci95"][0] <= diff["point"] <= diff["ci95"][1] < 0


def test_ablation_refuses_arms_scored_on_different_users(tmp_path, capsys):
    users, y, _ = case()
    evaluate.write_predictions(tmp_path / "a.csv", users, y, y)
    evaluate.write_predictions(tmp_path / "b.csv", users[:-1], y[:-1], y[:-1])
    assert evaluate.main(["ablation", "--a", f"a={tmp_path / 'a.csv'}", "--b", f"b={tmp_path / 'b.csv'}",
                          "--out", str(tmp_path / "o")]) == 1
    assert "same test rows" in capsys.readouterr().err


def test_pool_quality_measures_kept_and_all_pool_labels_against_the_latent_truth(tmp_path):
    from datetime import datetime, timezone

    from training import synth

    data = synth.synthesize(12, seed=3, start=datetime(2026, 1, 1, tzinfo=timezone.utc), days=20)
    synth.write_truth(data, tmp_path / "truth.jsonl", seed=3)
    day = 19
    truth = {r["user_id"]: r["phq9_total"] for r in data.truth if r["day"] == day}
    users = sorted(truth)
    when = "2026-01-20T15:00:00+00:00"  # inside day 19
    rows = ["user_id,survey_date,phq9_total,kept"] + [f"{u},{when},{min(27, truth[u] + 2)},{i % 2 == 0}"
                                                       for i, u in enumerate(users)]
    (tmp_path / "round_1.csv").write_text("\n".join(rows) + "\n")
    rc = evaluate.main(["pool", "--truth", str(tmp_path / "truth.jsonl"), "--source", f"round_1={tmp_path / 'round_1.csv'}",
                        "--pool-size", "24", "--out", str(tmp_path / "q"), "--bootstrap", "50"])
    assert rc == 0
    q = json.loads((tmp_path / "q" / "pool_quality.json").read_text())["round_1"]
    assert q["n_all"] == 12 and q["n_kept"] == 6 and q["coverage"] == pytest.approx(6 / 24)
    expected = np.mean([min(27, truth[u] + 2) - truth[u] for u in users])
    assert q["all"]["mae"] == pytest.approx(expected) and q["all"]["bias"] == pytest.approx(expected)
    assert (tmp_path / "q" / "pool_quality.md").exists()


def test_seeded_ablation_reports_each_arms_spread_over_seeds_and_its_difference_from_the_reference(tmp_path):
    users, y, rng = case()
    dates = {"survey_date": ["2026-01-10T10:00:00Z"] * len(y)}
    arms = {}
    for name, offsets in (("real_only", [3.0, 4.0, 5.0]), ("real_plus_pseudo", [1.0, 1.0, 4.0])):
        arms[name] = []
        for s, off in enumerate(offsets):
            path = tmp_path / f"{name}_{s}.csv"
            evaluate.write_predictions(path, users, y, y + off, dates)
            arms[name].append(str(path))
    rc = evaluate.main(["seeds", "--arm", f"real_only={','.join(arms['real_only'])}",
                        "--arm", f"real_plus_pseudo={','.join(arms['real_plus_pseudo'])}", "--reference", "real_only",
                        "--out", str(tmp_path / "s")])
    assert rc == 0
    r = json.loads((tmp_path / "s" / "seeds_ablation.json").read_text())
    mae = r["arms"]["real_plus_pseudo"]["mae"]
    assert r["seeds"] == 3 and mae["mean"] == pytest.approx(2.0) and mae["sd"] == pytest.approx(np.std([1, 1, 4], ddof=1))
    assert mae["minus_reference_mean"] == pytest.approx(-2.0)
    assert (tmp_path / "s" / "seeds_ablation.png").exists()


def test_seeded_ablation_refuses_arms_with_different_numbers_of_seeds(tmp_path, capsys):
    users, y, _ = case()
    evaluate.write_predictions(tmp_path / "a.csv", users, y, y)
    rc = evaluate.main(["seeds", "--arm", f"a={tmp_path / 'a.csv'},{tmp_path / 'a.csv'}", "--arm", f"b={tmp_path / 'a.csv'}",
                        "--reference", "a", "--out", str(tmp_path / "o")])
    assert rc == 1 and "one predictions file per seed" in capsys.readouterr().err
