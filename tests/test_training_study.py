"""The CPU study runs end to end at a tiny size: every section of study.json, the item student's arms
step-matched over three seeds, the real-text checks and the alert study."""

import csv
import json

from training import study, tiny
from training.realtext import default_data_dir


def _small_realtext(out):
    src = default_data_dir()
    for folder, name, id_col, keep in (("counsel-chat", "questions.csv", "questionID", 30), ("sad", "sad_v1.csv", "sID", 40)):
        (out / folder).mkdir(parents=True)
        with open(src / folder / name, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if int(r[id_col]) % 3 == 0]
            fields = reader.fieldnames
        if folder == "counsel-chat":
            rows = [r for r in rows if r["topic"] == "depression"][:10] + [r for r in rows if r["topic"] != "depression"]
        with open(out / folder / name, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows[:keep])
    return out


def test_the_study_runs_every_step_and_matches_the_arms_optimiser_steps(tmp_path, monkeypatch):
    base = tiny.save_tiny_base(tmp_path / "enc", "encoder")
    monkeypatch.setattr(study, "ITEM_TRAIN", dict(steps=20, eval_every=10, patience=10**6))
    st = {**study.STUDY, "users": 40, "bow": dict(n_users=60, train_seed=1, test_seed=2), "passes": 2, "bootstrap": 30,
          "realtext_boot": 20, "realtext_data": str(_small_realtext(tmp_path / "realtext")),
          "alerts": dict(users=6, seed=5, days=28),
          "train": {**study.STUDY["train"], "base_model": str(base), "max_steps": 2, "eval_every": 1, "freeze": [],
                    "lr": 1e-3}}
    result = study.run(tmp_path / "out", tmp_path / "work", st)

    saved = json.loads((tmp_path / "out" / "study.json").read_text())
    for section in ("bow_check", "baselines", "scheme", "pool_quality", "test_quality", "ablation_seeds", "final_eval",
                    "realtext", "alerts"):
        assert saved[section], section
    assert {"training_mean", "length_only", "tfidf_ridge", "cold_start_items", "minilm_regressor_128"} <= set(result["baselines"])
    assert [row["round"] for row in result["scheme"]] == [0, 1]
    pool = result["data"]["pool_users"]
    assert all(e["n_all"] == pool for e in result["pool_quality"].values())
    arms = result["ablation_seeds"]["arms"]
    assert set(arms) == set(st["arms"]) and all(len(a["per_seed"]) == 3 for a in arms.values())
    runs = list((tmp_path / "work").glob("arms/*/seed_*/result.json")) + list((tmp_path / "work").glob("scheme/round_*/result.json"))
    assert len(runs) == 9 and {json.loads(r.read_text())["steps"] for r in runs} == {20}
    assert {"cold_start", "item_student", "minilm_regressor", "phq_train_default"} <= set(result["realtext"])
    for model in ("cold_start", "item_student"):
        assert {"v1", "v2", "proposed_reference"} <= set(result["alerts"][model])
    md = study.results_markdown(result, "results")
    assert "synthetic" in md and "Reviewer 2" in md and "Real human text" in md and "Alerts" in md
