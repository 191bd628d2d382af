"""The CPU study runs end to end at a tiny size: every section of study.json, the arms step-matched over three seeds."""

import json

from training import study, tiny


def test_the_study_runs_every_step_and_matches_the_arms_optimiser_steps(tmp_path):
    base = tiny.save_tiny_base(tmp_path / "enc", "encoder")
    st = {**study.STUDY, "users": 40, "bow": dict(n_users=60, train_seed=1, test_seed=2), "passes": 2, "bootstrap": 30,
          "train": {**study.STUDY["train"], "base_model": str(base), "max_steps": 2, "eval_every": 1, "freeze": [],
                    "lr": 1e-3}}
    result = study.run(tmp_path / "out", tmp_path / "work", st)

    saved = json.loads((tmp_path / "out" / "study.json").read_text())
    for section in ("bow_check", "baselines", "scheme", "pool_quality", "test_quality", "ablation_seeds", "final_eval"):
        assert saved[section], section
    assert {"training_mean", "length_only", "tfidf_ridge"} <= set(result["baselines"])
    assert [row["round"] for row in result["scheme"]] == [0, 1]
    pool = result["data"]["pool_users"]
    assert all(e["n_all"] == pool for e in result["pool_quality"].values())
    arms = result["ablation_seeds"]["arms"]
    assert set(arms) == set(st["arms"]) and all(len(a["per_seed"]) == 3 for a in arms.values())
    runs = list((tmp_path / "work").glob("arms/*/seed_*/result.json")) + list((tmp_path / "work").glob("scheme/round_*/result.json"))
    assert len(runs) == 9 and {json.loads(r.read_text())["steps"] for r in runs} == {2}
    md = study.results_markdown(result, "results")
    assert "synthetic" in md and "Reviewer 2" in md
