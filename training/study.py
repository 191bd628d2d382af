"""The CPU study, top to bottom in one run (at most ~15 minutes on 2 cores): synthetic users, the
stand-in teacher, student rounds of all-MiniLM-L6-v2, both reviewers' analyses, the eval report.

`python -m training.study --out docs/results` writes every artefact there and prints the numbers
that docs/results.md quotes. Every figure is synthetic and says so.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

# The study's settings, as plain data.
STUDY = dict(
    users=360,
    label_fraction=0.5,  # as in the study: only part of the users answered the questionnaire
    seed=2026,
    start=datetime(2026, 1, 1, tzinfo=timezone.utc),
    days=28,
    rounds=2,
    passes=6,
    max_std=1.0,
    bootstrap=1000,
    train=dict(base_model="minilm", epochs=3, batch_size=16, token_budget=256, lr=1.5e-4, head_lr=2e-3,
               freeze=["embeddings", "layer.0.", "layer.1.", "layer.2."],
               val_frac=0.15, test_frac=0.25, patience=2, seed=0, quiet=True,
               provenance_weights={"gt": 1.0, "teacher": 0.5, "student": 0.5}),
)


def run(out: Path) -> dict:
    from training import synth
    from training.analyses import ablation, pseudolabel_quality
    from training.data import labelled_examples, read_labels, read_transcripts, split_users, unlabelled_examples
    from training.evaluate import evaluate_arrays, read_predictions
    from training.pseudolabel import run_students, run_teacher, write_teacher_labels
    from training.stand_in_teacher import StandInTeacher

    t0 = time.monotonic()
    timings = {}
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)

    # 1. synthetic users: events and the questionnaire for part of them
    events, labels = synth.generate(STUDY["users"], STUDY["seed"], start=STUDY["start"], days=STUDY["days"],
                                    label_fraction=STUDY["label_fraction"])
    synth.write_events(events, work / "events.jsonl")
    synth.write_labels(labels, work / "labels.csv")
    turns, _ = read_transcripts(work / "events.jsonl")
    real = read_labels(work / "labels.csv")
    gt, empty = labelled_examples(turns, real)
    cfg = STUDY["train"]
    split = split_users([e.user_id for e in gt], cfg["seed"], cfg["val_frac"], cfg["test_frac"])
    part = {k: [e for e in gt if e.user_id in users] for k, users in split.items()}
    unlabelled = unlabelled_examples(turns, {lab.user_id for lab in real})
    test_labels = work / "test_labels.csv"
    synth.write_labels([lab for lab in labels if lab["user_id"] in split["test"]], test_labels)
    timings["synth_s"] = round(time.monotonic() - t0, 1)

    # 2. the teacher (a rule-based stand-in over the real protocol): held-out test users at their survey dates
    t = time.monotonic()
    with StandInTeacher() as teacher:
        teacher_test, failures = run_teacher(part["test"], teacher.url, "stand-in", concurrency=4)
    write_teacher_labels(teacher_test, work / "teacher_test.csv")
    timings["teacher_s"] = round(time.monotonic() - t, 1)

    # 3. students: round 0 on real labels only, then rounds with confident student pseudolabels
    t = time.monotonic()
    summary = run_students(cfg, part["train"], part["val"], part["test"], unlabelled, [], work / "students",
                           STUDY["rounds"], STUDY["passes"], STUDY["max_std"])
    timings["students_s"] = round(time.monotonic() - t, 1)

    # 4. the reviewers' analyses and the final model's eval report
    t = time.monotonic()
    rounds = [f"round_{r['round']}" for r in summary]
    sources = [("teacher (rule-based stand-in)", str(work / "teacher_test.csv"))]
    sources += [(f"student_{r}", str(work / "students" / r / "test_predictions.csv")) for r in rounds]
    quality = pseudolabel_quality(str(test_labels), sources, out / "pseudolabels", STUDY["bootstrap"])
    final = work / "students" / rounds[-1] / "test_predictions.csv"
    abl = ablation(("real_only", str(work / "students" / "round_0" / "test_predictions.csv")),
                   ("real_plus_pseudo", str(final)), out / "ablation", STUDY["bootstrap"])
    users, y, p = read_predictions(final)
    m = evaluate_arrays(users, y, p, out / "eval", title=f"Final student ({rounds[-1]}) on held-out users",
                        n_boot=STUDY["bootstrap"])
    timings["analyses_s"] = round(time.monotonic() - t, 1)
    timings["total_s"] = round(time.monotonic() - t0, 1)

    result = {
        "settings": {k: (v if k != "start" else v.isoformat()) for k, v in STUDY.items()},
        "data": {"users": STUDY["users"], "labelled_users": len({lab.user_id for lab in real}),
                 "labelled_windows": len(gt), "labels_without_user_turn": empty,
                 "split_users": {k: len(v) for k, v in split.items()}, "unlabelled_users": len(unlabelled),
                 "teacher_failures": len(failures)},
        "window_coverage": window_coverage(part["test"], cfg["token_budget"]),
        "students": summary,
        "pseudolabel_quality": {k: {kk: v.get(kk) for kk in ("n", "coverage", "mae", "rmse", "pearson_r", "auc_10", "ci95")}
                                for k, v in quality.items()},
        "ablation": abl,
        "final_eval": {k: m[k] for k in ("n", "mae", "rmse", "pearson_r", "spearman_rho", "auc_10", "ci95", "counts")},
        "timings": timings,
    }
    (out / "study.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def window_coverage(examples, token_budget: int) -> dict:
    """How much of a 14-day window a `token_budget`-token encoder sees (MiniLM's tokenizer, serving's renderer)."""
    from scoring.model import ModelMeta, Template
    from scoring.render import render_window
    from training.train import minilm_dir
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    meta = ModelMeta(model_version="probe", backbone="encoder", token_budget=token_budget, template=Template(kind="plain"))
    full, kept_turns, all_turns, sessions_kept, sessions_all = [], 0, 0, 0, 0
    for ex in examples:
        r_full = render_window(ex.turns, tok, 10**7, template=meta.template)
        r = render_window(ex.turns, tok, token_budget, template=meta.template)
        full.append(r_full.n_tokens)
        kept_turns += r.n_turns_kept
        all_turns += len(ex.turns)
        sessions_kept += r.n_sessions
        sessions_all += len({t.session_id for t in ex.turns})
    full.sort()
    return {"token_budget": token_budget, "median_window_tokens": full[len(full) // 2], "max_window_tokens": full[-1],
            "share_of_turns_seen": kept_turns / max(all_turns, 1), "share_of_sessions_touched": sessions_kept / max(sessions_all, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.study", description=__doc__)
    p.add_argument("--out", default="docs/results")
    args = p.parse_args(argv)
    result = run(Path(args.out))
    print(json.dumps({k: result[k] for k in ("data", "window_coverage", "timings")}, indent=2))
    for row in result["students"]:
        print(json.dumps({k: row.get(k) for k in ("round", "n_pseudo", "best_val_mae", "mae", "auc_10", "next_round_kept")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
