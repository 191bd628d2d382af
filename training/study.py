"""The CPU study, top to bottom in one run (at most ~15 minutes on 2 cores): synthetic users, the
stand-in teacher, student rounds of all-MiniLM-L6-v2, both reviewers' analyses, the eval report.

`python -m training.study --out docs/results` writes every artefact there and prints the numbers
that docs/results.md quotes. Every figure is synthetic and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
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


def run(out: Path, work: Path | None = None) -> dict:
    """Run the study; `out` gets reports, figures and study.json, `work` (default: a temporary directory)
    the events, labels, runs and model directories, which are too big for docs/."""
    from training import synth
    from training.analyses import ablation, pseudolabel_quality
    from training.data import labelled_examples, read_labels, read_transcripts, split_users, unlabelled_examples
    from training.evaluate import evaluate_arrays, read_predictions
    from training.pseudolabel import run_students, run_teacher, write_teacher_labels
    from training.stand_in_teacher import StandInTeacher

    t0 = time.monotonic()
    timings = {}
    out.mkdir(parents=True, exist_ok=True)
    work = Path(work or tempfile.mkdtemp(prefix="phq-study-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"study working files (events, runs, model directories): {work}")

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
    for r in rounds:  # the per-round test predictions are small and are what the analyses read
        shutil.copy(work / "students" / r / "test_predictions.csv", out / f"test_predictions_{r}.csv")
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


HAND_WRITTEN = "<!-- hand-written below this line; `python -m training.study --results-md` keeps it -->"


def _f(v, ci=None, digits=2) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def results_markdown(r: dict, figs: str) -> str:
    """docs/results.md from study.json: every number from the run, every figure labelled synthetic."""
    d, cov, tr, fe = r["data"], r["window_coverage"], r["settings"]["train"], r["final_eval"]
    st = r["settings"]
    L = ["# Results: the CPU study (synthetic data)", "",
         "> **Everything on this page is measured on synthetic users written by `phq synth`, not on people.** "
         "The task is made up to be honest about the pipeline (negation, past-tense mentions, hedging, "
         "assistant echoes, long off-topic stretches), but these numbers say nothing about clinical accuracy, "
         "and phq-monitor is decision support for care teams, not a diagnosis.", "",
         "Reproduce: `python -m training.study --out docs/results --results-md docs/results.md` "
         f"(measured here: {r['timings']['total_s'] / 60:.1f} minutes on this 2-core machine, shared with other work).", "",
         "## Setup", "",
         f"- {d['users']} synthetic users over {st['days']} days; {d['labelled_users']} answered the questionnaire "
         f"({d['labelled_windows']} labelled windows), {d['unlabelled_users']} did not (the pseudolabel pool).",
         f"- Splits by user, never by row: {d['split_users']['train']} train, {d['split_users']['val']} validation, "
         f"{d['split_users']['test']} held-out test users.",
         f"- Backbone: all-MiniLM-L6-v2 (22M parameters) with a one-output regression head, token budget "
         f"{tr['token_budget']}, {tr['epochs']} epochs, Huber loss on standardised totals, early stopping on validation MAE; "
         f"embeddings and the lower three layers frozen ({', '.join(tr['freeze'])}) to fit the CPU budget.",
         f"- Students: round 0 trains on real labels only; each later round labels the unlabelled users whose "
         f"MC-dropout ensemble ({st['passes']} passes) agrees within {st['max_std']} points (std), and retrains from the "
         f"base model on real plus pseudolabels (pseudolabel weight {tr['provenance_weights']['student']}); {st['rounds']} rounds.",
         "- Teacher: **no LLM is available on this machine**, so the teacher path ran against a rule-based stand-in "
         "served over the same OpenAI-compatible protocol (`training/stand_in_teacher.py`). It reads the generator's own "
         "phrase banks, so its row below is a plumbing check and an upper bound, not a measure of any LLM teacher.", "",
         "## What a 256-token encoder sees of a 14-day window", "",
         f"Rendered with serving's renderer and MiniLM's tokenizer, the median held-out window is "
         f"{cov['median_window_tokens']} tokens (max {cov['max_window_tokens']}); a {cov['token_budget']}-token budget keeps "
         f"{cov['share_of_turns_seen']:.0%} of the turns (the newest ones) and touches {cov['share_of_sessions_touched']:.0%} "
         "of the sessions. The encoder mostly reads the last session or two: symptoms a user mentioned only earlier in "
         "the two weeks are invisible to it, which a long-context decoder (the GPU path, LoRA) is meant to fix.", "",
         "## The final model on held-out users", "",
         f"{fe['n']} labels of {fe['counts']['n_users']} held-out users; 95% intervals: percentile bootstrap over users.", "",
         "| MAE | RMSE | Pearson r | Spearman rho | AUC (PHQ-9 >= 10) |", "| --- | --- | --- | --- | --- |",
         "| " + " | ".join(_f(fe[k], fe["ci95"][k]) for k in ("mae", "rmse", "pearson_r", "spearman_rho", "auc_10")) + " |", "",
         f"![predicted vs true (synthetic)]({figs}/eval/scatter.png) ![ROC (synthetic)]({figs}/eval/roc.png)", "",
         f"![AUC by threshold (synthetic)]({figs}/eval/auc_by_threshold.png) ![calibration (synthetic)]({figs}/eval/calibration.png)", "",
         f"Full report with error by severity band and AUC at every threshold 3..24: [{figs}/eval/report.md]({figs}/eval/report.md).", "",
         "## Student rounds", "", "| round | real windows | pseudo windows | validation MAE | test MAE | test AUC (>= 10) | kept for next round | train s |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in r["students"]:
        kept = f"{row['next_round_kept']} of {row['next_round_candidates']}" if "next_round_kept" in row else "-"
        L.append(f"| {row['round']} | {row['n_real']} | {row['n_pseudo']} | {_f(row['best_val_mae'])} | {_f(row.get('mae'))} "
                 f"| {_f(row.get('auc_10'))} | {kept} | {row['train_seconds']:.0f} |")
    L += ["", "## Reviewers' analysis 1: pseudolabel quality against real labels", "",
          "On the held-out real-labelled users (at their survey dates): each source's label against the questionnaire. "
          "A student round's row is its model labelling these users, the same model that labelled the unlabelled pool; "
          "the pool itself has no questionnaire to check against.", "",
          "| source | n | MAE | RMSE | Pearson r | AUC (>= 10) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, q in r["pseudolabel_quality"].items():
        ci = q.get("ci95") or {}
        L.append(f"| {name} | {q['n']} | {_f(q.get('mae'), ci.get('mae'))} | {_f(q.get('rmse'), ci.get('rmse'))} "
                 f"| {_f(q.get('pearson_r'), ci.get('pearson_r'))} | {_f(q.get('auc_10'), ci.get('auc_10'))} |")
    ab = r["ablation"]
    L += ["", f"![pseudolabel AUC by threshold (synthetic)]({figs}/pseudolabels/pseudolabel_auc_by_threshold.png)", "",
          "## Reviewers' analysis 2: ablation, real labels only vs real plus pseudolabels", "",
          f"The same backbone and settings, the same {ab['n_users']} test users ({ab['n']} labels).", "",
          "| arm | MAE | RMSE | Pearson r | AUC (>= 10) |", "| --- | --- | --- | --- | --- |"]
    for name, m in ab["arms"].items():
        L.append(f"| {name} | " + " | ".join(_f(m[k], m["ci95"][k]) for k in ("mae", "rmse", "pearson_r", "auc_10")) + " |")
    df = ab["difference"]
    L += ["", f"Paired bootstrap over users ({df['of']}): MAE {_f(df['mae']['point'], df['mae']['ci95'])}, "
          f"AUC (>= 10) {_f(df['auc_10']['point'], df['auc_10']['ci95'])}. An interval that spans 0 is no evidence either way. "
          "Caveat: each arm runs the same epochs over its own training set, so the pseudolabel arm also takes about "
          "twice the optimiser steps; on this small synthetic set part of its gain may be more training rather than "
          "better labels.", "",
          f"![ablation AUC by threshold (synthetic)]({figs}/ablation/ablation_auc_by_threshold.png)", "",
          "## Timings (this 2-core machine, shared)", "",
          "| step | seconds |", "| --- | --- |"]
    L += [f"| {k[:-2]} | {v} |" for k, v in r["timings"].items()]
    L += ["", "## GPU: LoRA fine-tune of a Qwen3-architecture model", "",
          "**Not run: no GPU was lent in this session.** `benchmarks/gpu_lora.py` is ready: a random-initialised "
          "Qwen3-0.6B-shape regressor (0.60B parameters), LoRA r=16 on every linear layer, bf16 autocast, gradient "
          "checkpointing, 300 steps of 8x2 windows at a 2048-token budget, recording tokens/s and peak GPU memory to "
          "`gpu_lora.json`: `python benchmarks/gpu_lora.py --out bench-out`. Smoke-tested here on CPU with `--tiny`.", ""]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.study", description=__doc__)
    p.add_argument("--out", default="docs/results")
    p.add_argument("--work", default=None, help="working directory (default: a new temporary one)")
    p.add_argument("--results-md", default=None, help="also write this Markdown page (e.g. docs/results.md)")
    p.add_argument("--from-json", action="store_true", help="only rewrite --results-md from OUT/study.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.from_json:
        result = json.loads((out / "study.json").read_text())
    else:
        result = run(out, Path(args.work) if args.work else None)
    if args.results_md:
        md = Path(args.results_md)
        figs = os.path.relpath(out, md.parent)
        kept = ""  # a hand-written part below the marker survives regeneration
        if md.exists() and HAND_WRITTEN in md.read_text():
            kept = md.read_text().split(HAND_WRITTEN, 1)[1]
        md.write_text(results_markdown(result, figs) + "\n" + HAND_WRITTEN + kept)
    print(json.dumps({k: result[k] for k in ("data", "window_coverage", "timings")}, indent=2))
    for row in result["students"]:
        print(json.dumps({k: row.get(k) for k in ("round", "n_pseudo", "best_val_mae", "mae", "auc_10", "next_round_kept")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
