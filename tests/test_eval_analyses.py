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
