"""The CPU study, top to bottom in one run: `phq synth` v2 users, the bag-of-words check, the baselines, the
teacher rating the unlabelled pool, teacher-to-student rounds, both reviewers' analyses (pseudolabels on the
pool against its latent truth and on held-out real labels; step-matched arms over seeds), the eval report.

    python -m training.study --out docs/results --results-md docs/results.md     # the full study
    python -m training.study --small --out /tmp/study-small                     # the same steps, small

Every figure is synthetic and says so, but the real-text checks (held-out real human text, no PHQ-9
labels). The teacher is the cold-start item model (`--builtin`); the student is the item model, whose heads
each round fits from the cold-start model; the cold-start model also stands beside the baselines, and a
MiniLM regressor (the previous default student) is trained once for comparison. The alert study scores
synthetic users with known latent trajectories at every session end, as the pipeline would.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

# The study's settings, as plain data.
STUDY = dict(
    users=240,
    label_fraction=0.5,  # only part of the users answer the questionnaire; the rest are the pseudolabel pool
    seed=2026,
    start=datetime(2026, 1, 1, tzinfo=timezone.utc),
    days=28,
    bow=dict(n_users=400, train_seed=2026, test_seed=2027),  # the bag of words: one seed to train, another to test
    rounds=1,  # student rounds after round 0 (teacher labels)
    passes=4,  # ensemble members (item student) whose spread decides which relabelled pool users are kept
    max_std=1.0,  # keep a student's pseudolabel when its ensemble agrees within this (PHQ-9 points, std)
    seeds=(0, 1, 2),  # reviewer 2: every arm trains once per seed, with the same optimiser steps
    arms=("real_only", "real_plus_teacher", "real_plus_scheme"),
    bootstrap=1000,
    baseline_models={},  # more {"name": "DIR"} model directories scored beside the baselines (the cold start always is)
    regressor=True,  # also train the MiniLM regressor once (round 0's data), for the real-text and synthetic tables
    alerts=dict(users=80, seed=4242, days=56),  # the alert study: users with known latent trajectories
    realtext_boot=1000,
    realtext_data="",  # empty: ../shared/data
    # MiniLM at 128 tokens with its lower four layers frozen: what fits 30 minutes on two shared cores
    train=dict(base_model="minilm", max_steps=24, eval_every=8, batch_size=16, token_budget=128, lr=2e-4,
               head_lr=2e-3, freeze=["embeddings", "layer.0.", "layer.1.", "layer.2.", "layer.3."], patience=100,
               seed=0, quiet=True, install=False, provenance_weights={"gt": 1.0, "teacher": 0.5, "student": 0.5}),
)
SMALL = dict(users=80, bow=dict(n_users=200, train_seed=2026, test_seed=2027), passes=3, bootstrap=200,
             alerts=dict(users=20, seed=4242, days=42), realtext_boot=100, train=dict(max_steps=6, eval_every=3))
# The item student's fit (heads only: seconds a round). Every run takes the same optimiser steps (no early
# stop), so reviewer 2's arms are step-matched; the best validation step's heads are kept.
# The scheme's students fit synthetic labels freely (realtext_select off), to show what the scheme does on
# synthetic users; `phq train`'s default keeps only steps that still read real text as well, and the study
# trains one model that way too (section 8).
ITEM_TRAIN = dict(steps=200, eval_every=10, patience=10**6, realtext_select=False, realtext_anchor=0.0)


def student():
    """The scheme's student: the item model (its heads fitted from the cold-start model each round)."""
    from training.train_items import item_student

    return item_student()


def settings_for(small: bool) -> dict:
    if not small:
        return STUDY
    return {**STUDY, **{k: v for k, v in SMALL.items() if k != "train"}, "train": {**STUDY["train"], **SMALL["train"]}}


def run(out: Path, work: Path, st: dict = STUDY) -> dict:
    """Run the study; `out` gets reports, figures and study.json, `work` the events, labels, truth, runs and
    model directories (too big for docs/)."""
    from training import baselines, synth
    from training import metrics as M
    from training.analyses import ablation, pool_quality, pseudolabel_quality, seeded_ablation
    from training.data import labelled_examples, read_labels, read_transcripts, splits_from_labels, unlabelled_examples
    from training.evaluate import evaluate_arrays, read_predictions, write_predictions
    from training.pseudolabel import builtin_teacher, pseudo_examples, run_scheme, write_teacher_labels

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    cfg = st["train"]
    say = lambda msg: print(f"[study {time.monotonic() - t0:6.0f}s] {msg}", flush=True)  # noqa: E731
    say(f"working files (events, truth, runs, model directories): {work}")

    # 1. synthetic users: events, the questionnaire for part of them, the latent truth of all (never trained on)
    data = synth.synthesize(st["users"], st["seed"], start=st["start"], days=st["days"], label_fraction=st["label_fraction"])
    synth.write_events(data.events, work / "events.jsonl")
    synth.write_labels(data.labels, work / "labels.csv")
    truth_path = work / "truth.NEVER-FOR-TRAINING.jsonl"
    synth.write_truth(data, truth_path, st["seed"])
    turns, _ = read_transcripts(work / "events.jsonl")
    real = read_labels(work / "labels.csv")
    gt, empty = labelled_examples(turns, real)
    split = splits_from_labels(real)  # the generator's split: test users speak held-out wordings
    part = {k: [e for e in gt if e.user_id in users] for k, users in split.items()}
    pool = unlabelled_examples(turns, {lab.user_id for lab in real})
    synth.write_labels([lab for lab in data.labels if lab["split"] == "test"], work / "test_labels.csv")
    test_users, y_test = [e.user_id for e in part["test"]], [e.total for e in part["test"]]
    timings["synth_s"] = round(time.monotonic() - t0, 1)
    say(f"{st['users']} users: {len(part['train'])} train, {len(part['val'])} val, {len(part['test'])} test windows; "
        f"pool {len(pool)}")

    # 2. the bag-of-words check, and the baselines on the test users (fit on the real training labels),
    #    the cold-start item model among them
    t = time.monotonic()
    from scoring.coldstart import build_coldstart
    from scoring.engine import coldstart_dir

    coldstart = build_coldstart(coldstart_dir(str(work)))
    bow = baselines.bow_check(**st["bow"])
    say(f"bag of words on held-out wordings: r {bow['tfidf_ridge']['test_r']:.3f}")
    models = {"cold_start_items": str(coldstart), **st["baseline_models"]}
    preds = baselines.run(baselines.standard(models), part["train"], part["test"])
    (out / "baselines").mkdir(exist_ok=True)
    for name, p in preds.items():
        write_predictions(out / "baselines" / f"{name}.csv", test_users, y_test, p)
    base_metrics = {name: _metrics(M, test_users, y_test, p, st["bootstrap"]) for name, p in preds.items()}
    timings["baselines_s"] = round(time.monotonic() - t, 1)

    # 3. the teacher rates the unlabelled pool (round 0's pseudolabels) and, for reviewer 1, the test users
    t = time.monotonic()
    teacher_pool, _ = builtin_teacher(pool)
    teacher_test, _ = builtin_teacher(part["test"])
    write_teacher_labels(teacher_test, work / "teacher_test.csv")
    timings["teacher_s"] = round(time.monotonic() - t, 1)

    # 4. teacher to student: round 0 on real + teacher labels, then students relabel the pool
    t = time.monotonic()
    scheme_dir = work / "scheme"
    item_cfg = {**cfg, **ITEM_TRAIN}
    summary = run_scheme(item_cfg, part["train"], part["val"], part["test"], pool, teacher_pool, scheme_dir, st["rounds"],
                         st["passes"], st["max_std"], log=say, student=student())
    timings["scheme_s"] = round(time.monotonic() - t, 1)

    # 5. reviewer 1: every round's pool labels against the pool's latent truth; every source on the test users
    t = time.monotonic()
    pool_sources = [("teacher (cold-start item model)", str(scheme_dir / "pool_labels_round_0.csv"))]
    pool_sources += [(f"student round {k - 1} relabel", str(scheme_dir / f"pool_labels_round_{k}.csv"))
                     for k in range(1, st["rounds"] + 1)]
    pool_q = pool_quality(truth_path, pool_sources, len(pool), out / "pool", st["bootstrap"])
    sources = [("teacher (cold-start item model)", str(work / "teacher_test.csv"))]
    sources += [(f"student_round_{r['round']}", str(scheme_dir / f"round_{r['round']}" / "test_predictions.csv")) for r in summary]
    test_q = pseudolabel_quality(str(work / "test_labels.csv"), sources, out / "pseudolabels", st["bootstrap"])
    timings["reviewer_1_s"] = round(time.monotonic() - t, 1)

    # 6. reviewer 2: each arm's labels trained with the same optimiser steps, once per seed
    t = time.monotonic()
    final_labels = [lab for lab in read_labels(scheme_dir / f"pool_labels_round_{st['rounds']}.csv")
                    if st["rounds"] == 0 or _kept(scheme_dir / f"pool_labels_round_{st['rounds']}.csv", lab.user_id)]
    arm_labels = {"real_only": [], "real_plus_teacher": teacher_pool, "real_plus_scheme": final_labels}
    reuse = {("real_plus_teacher", cfg["seed"]): scheme_dir / "round_0",
             ("real_plus_scheme", cfg["seed"]): scheme_dir / f"round_{st['rounds']}"}
    arms: dict[str, list[str]] = {}
    for arm in st["arms"]:
        arms[arm] = []
        for seed in st["seeds"]:
            run_dir = reuse.get((arm, seed)) or work / "arms" / arm / f"seed_{seed}"
            if (arm, seed) not in reuse:
                say(f"arm {arm}, seed {seed}")
                res = student().train({**item_cfg, "seed": seed, "name": f"{arm}-s{seed}"},
                                      part["train"] + pseudo_examples(pool, arm_labels[arm]), part["val"], run_dir,
                                      log=lambda _: None, test_users=test_users)
                write_predictions(run_dir / "test_predictions.csv", test_users, y_test, student().predict(res, part["test"]),
                                  {"survey_date": [e.survey_ts.isoformat() for e in part["test"]]})
            arms[arm].append(str(run_dir / "test_predictions.csv"))
    seeds = seeded_ablation(arms, "real_only", out / "ablation")
    paired = ablation(("real_only", arms["real_only"][0]), (st["arms"][-1], arms[st["arms"][-1]][0]), out / "ablation",
                      st["bootstrap"])
    timings["reviewer_2_s"] = round(time.monotonic() - t, 1)

    # 7. the final student's report
    users, y, p = read_predictions(scheme_dir / f"round_{st['rounds']}" / "test_predictions.csv")
    final = evaluate_arrays(users, y, p, out / "eval", title=f"Final student (round {st['rounds']}) on held-out users",
                            n_boot=st["bootstrap"])

    # 8. the MiniLM regressor (the previous default student), trained once on round 0's data, for comparison
    regressor = None
    if st["regressor"]:
        t = time.monotonic()
        from training.pseudolabel import regressor_student

        reg = regressor_student()
        res = reg.train({**cfg, "name": "regressor"}, part["train"] + pseudo_examples(pool, teacher_pool), part["val"],
                        work / "regressor", log=lambda _: None, test_users=test_users)
        base_metrics["minilm_regressor_128"] = _metrics(M, test_users, y_test, reg.predict(res, part["test"]), st["bootstrap"])
        regressor = res["model_path"]
        timings["regressor_s"] = round(time.monotonic() - t, 1)

    # 8b. the item model as `phq train` makes it by default (only steps that still read real text as well)
    t = time.monotonic()
    from training import train_items

    default_cfg = {**train_items.CONFIG, "install": False, "realtext": False, "quiet": True,
                   "realtext_data": st.get("realtext_data") or ""}
    default = train_items.run(str(work / "events.jsonl"), [str(work / "labels.csv")], work / "phq_train_default", default_cfg)
    default_path = str(work / "phq_train_default" / "model")
    base_metrics["item_model_phq_train_default"] = _metrics(
        M, test_users, y_test, baselines.ModelDir(default_path).predict(part["test"]), st["bootstrap"])
    say(f"phq train's default item model: best step {default['train']['best_step']}")
    timings["phq_train_default_s"] = round(time.monotonic() - t, 1)

    # 9. real human text: every model the study ships or trains, beside the two baselines
    t = time.monotonic()
    realtext = realtext_section(coldstart, summary[-1]["model_path"], regressor, st["realtext_boot"], say,
                                st.get("realtext_data") or None, default_path)
    timings["realtext_s"] = round(time.monotonic() - t, 1)

    # 10. alerts: v1 rules against v2 (and a proposed rule) on users with known latent trajectories
    t = time.monotonic()
    alerts = alerts_section(coldstart, summary[-1]["model_path"], st["alerts"], say)
    timings["alerts_s"] = round(time.monotonic() - t, 1)
    timings["total_s"] = round(time.monotonic() - t0, 1)
    result = {
        "settings": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in st.items()},
        "data": {"users": st["users"], "labelled_users": len({lab.user_id for lab in real}), "labelled_windows": len(gt),
                 "labels_without_user_turn": empty, "split_windows": {k: len(v) for k, v in part.items()},
                 "split_users": {k: len(v) for k, v in split.items()}, "pool_users": len(pool)},
        "bow_check": bow,
        "baselines": base_metrics,
        "window_coverage": window_coverage(part["test"], cfg["token_budget"]),
        "scheme": summary,
        "pool_quality": pool_q,
        "test_quality": {k: {kk: v.get(kk) for kk in ("n", "coverage", "mae", "rmse", "pearson_r", "auc_10", "ci95")}
                         for k, v in test_q.items()},
        "ablation_seeds": seeds,
        "ablation_paired_seed0": {"difference": paired["difference"], "n": paired["n"]},
        "final_eval": {k: final[k] for k in ("n", "mae", "rmse", "pearson_r", "spearman_rho", "auc_10", "ci95", "counts")},
        "realtext": realtext,
        "alerts": alerts,
        "timings": timings,
    }
    (out / "study.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    say(f"done in {timings['total_s'] / 60:.1f} minutes")
    return result


def realtext_section(coldstart: Path, item_student: str, regressor: str | None, n_boot: int, say,
                     data_dir: str | None = None, phq_train_default: str | None = None) -> dict:
    """Held-out real human text (../shared/data): the cold-start model with both baselines, then the
    trained item student and the MiniLM regressor (headline checks)."""
    from training import realtext

    data = Path(data_dir) if data_dir else realtext.default_data_dir()
    if not (data / "counsel-chat" / "questions.csv").is_file():
        say(f"no real text at {data}: real-text section skipped")
        return {}
    out = {"cold_start": realtext.run(coldstart, data, n_boot=n_boot, progress=False)}
    say("real text: cold-start model " + json.dumps(realtext.headline(out["cold_start"])))
    out["item_student"] = realtext.run(item_student, data, n_boot=n_boot, progress=False, baselines=False)
    say("real text: item student " + json.dumps(realtext.headline(out["item_student"])))
    if phq_train_default:
        out["phq_train_default"] = realtext.run(phq_train_default, data, n_boot=n_boot, progress=False, baselines=False)
        say("real text: phq train's default " + json.dumps(realtext.headline(out["phq_train_default"])))
    if regressor:
        out["minilm_regressor"] = realtext.run(regressor, data, n_boot=n_boot, progress=False, baselines=False)
        say("real text: MiniLM regressor " + json.dumps(realtext.headline(out["minilm_regressor"])))
    return out


def alerts_section(coldstart: Path, item_student: str, cfg: dict, say) -> dict:
    """Alerts per 100 user-months and their truth, v1 rules vs v2 rules, for the default model and the
    trained item student; the v2 bound measured on other users (a seed of its own) than those alerted on."""
    from scoring.engine import Scorer
    from training import trajectories as tj

    out = {}
    for name, path in (("cold_start", coldstart), ("item_student", item_student)):
        scorer = Scorer.load(path)
        cal_points, _ = tj.synth_points(scorer, cfg["users"], cfg["seed"] + 1, cfg["days"])
        bound = tj.change_bound(cal_points)
        far = tj.change_bound(cal_points, pairs=list(tj.pairs_apart(cal_points, 14)))
        points, meta = tj.synth_points(scorer, cfg["users"], cfg["seed"], cfg["days"])
        rules = {
            "v1": tj.alerts_consecutive(points, None),
            "v2": tj.alerts_consecutive(points, bound["change_bound"]),
            "v2_contract_approximation": tj.alerts_consecutive(points, bound["approximation_1_96_sqrt2_se"]),
            "proposed_reference": tj.alerts_from_reference(points, far["change_bound"]),
        }
        out[name] = {"model_version": scorer.model_version, "bound": bound, "bound_14_days_apart": far,
                     "n_points": len(points), **{k: tj.alert_study(points, meta, v) for k, v in rules.items()}}
        v1, v2 = out[name]["v1"], out[name]["v2"]
        say(f"alerts ({name}): v1 {v1['alerts_per_100_user_months']:.0f}/100 user-months, {v1['share_true'] or 0:.0%} true; "
            f"v2 {v2['alerts_per_100_user_months']:.0f}, {v2['share_true'] or 0:.0%} true")
    return out


def _metrics(M, users, y, p, n_boot: int) -> dict:
    import numpy as np

    m = M.all_metrics(np.asarray(users), np.asarray(y, float), np.asarray(p, float), n_boot=n_boot)
    return {k: m[k] for k in ("n", "mae", "rmse", "pearson_r", "auc_10", "ci95")}


def _kept(path: Path, user_id: str, _cache: dict = {}) -> bool:
    import csv

    if path not in _cache:
        with open(path, newline="", encoding="utf-8") as f:
            _cache[path] = {r["user_id"]: r.get("kept", "True") == "True" for r in csv.DictReader(f)}
    return _cache[path][user_id]


def window_coverage(examples, token_budget: int) -> dict:
    """How much of a 14-day window a `token_budget`-token encoder sees (MiniLM's tokenizer, serving's renderer)."""
    from transformers import AutoTokenizer

    from scoring.model import Template
    from scoring.render import render_window
    from training.train import minilm_dir

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    template = Template(kind="plain")
    full, kept_turns, all_turns, sessions_kept, sessions_all = [], 0, 0, 0, 0
    for ex in examples:
        full.append(render_window(ex.turns, tok, 10**7, template=template).n_tokens)
        r = render_window(ex.turns, tok, token_budget, template=template)
        kept_turns += r.n_turns_kept
        all_turns += len(ex.turns)
        sessions_kept += r.n_sessions
        sessions_all += len({t.session_id for t in ex.turns})
    full.sort()
    return {"token_budget": token_budget, "median_window_tokens": full[len(full) // 2], "max_window_tokens": full[-1],
            "share_of_turns_seen": kept_turns / max(all_turns, 1), "share_of_sessions_touched": sessions_kept / max(sessions_all, 1)}


# --- docs/results.md ------------------------------------------------------------------------------

HAND_WRITTEN = "<!-- hand-written below this line; `python -m training.study --results-md` keeps it -->"


def _f(v, ci=None, digits=2) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def results_markdown(r: dict, figs: str) -> str:
    """docs/results.md from study.json: every number from the run, every figure labelled synthetic."""
    d, st, cov, tr = r["data"], r["settings"], r["window_coverage"], r["settings"]["train"]
    bow = r["bow_check"]
    L = ["# Results: the CPU study (synthetic data)", "",
         "> **Everything on this page is measured on synthetic users written by `phq synth` (v2), not on people.** "
         "The task is built so that it has to be read (the questionnaire's own frequency rule over days, symptoms "
         "mentioned on some days only, denials, other people, the past, hypotheticals, questions, assistant echoes, "
         "and test users who speak in wordings no training user uses), but these numbers say nothing about "
         "clinical accuracy; phq-monitor is decision support for care teams, not a diagnosis.", "",
         "Reproduce: `python -m training.study --out docs/results --results-md docs/results.md` "
         f"({r['timings']['total_s'] / 60:.1f} minutes on this 2-core machine, shared with other work).", "",
         "## Setup", "",
         f"- {d['users']} synthetic users over {st['days']} days; {d['labelled_users']} answered the questionnaire "
         f"({d['labelled_windows']} labelled windows), {d['pool_users']} did not (the pseudolabel pool, whose latent "
         "truth is kept in a never-for-training file and used only to measure).",
         f"- Splits by user, decided by the generator: {d['split_windows']['train']} training, {d['split_windows']['val']} "
         f"validation and {d['split_windows']['test']} test windows ({d['split_users']['test']} test users).",
         f"- Student: the item model (`training/train_items.py`): each round fits its heads from the cold-start "
         f"model on real plus pseudolabels ({ITEM_TRAIN['steps']} optimiser steps per run, the same for every run; "
         "the encoder stays frozen and reads every clause of the window).",
         f"- For comparison: all-MiniLM-L6-v2 with a regression head (the previous default student), token budget "
         f"{tr['token_budget']}, {tr['max_steps']} optimiser steps of {tr['batch_size']} windows, lower layers frozen, "
         "trained once on round 0's data.",
         "- Teacher: **no LLM here**; the builtin teacher (`phq pseudolabel teacher --builtin`) is the cold-start item "
         "model, which needs no labels: it is also the first baseline below.", "",
         "## Does the task need reading?", "",
         f"TF-IDF of word 1-3 grams + ridge, fit on one seed's training users ({bow['n_train']} windows), tested on "
         f"another seed's test users ({bow['n_test']} windows, held-out wordings): Pearson r "
         f"**{bow['tfidf_ridge']['test_r']:.2f}** on the users' turns, {bow['tfidf_ridge_all_turns']['test_r']:.2f} on "
         f"every turn (target: below 0.85). On that seed's pool users, who speak the training wordings, it reaches "
         f"r {bow['tfidf_ridge']['pool_r_vs_truth']:.2f} against their latent truth.", "",
         "## Baselines and students on the test users", "",
         "| model | MAE | RMSE | Pearson r | AUC (>= 10) |", "| --- | --- | --- | --- | --- |"]
    for name, m in r["baselines"].items():
        L.append(f"| baseline: {name} | " + " | ".join(_f(m[k], m["ci95"][k]) for k in ("mae", "rmse", "pearson_r", "auc_10")) + " |")
    for row in r["scheme"]:
        L.append(f"| student round {row['round']} | {_f(row.get('mae'))} | {_f(row.get('rmse'))} | {_f(row.get('pearson_r'))} "
                 f"| {_f(row.get('auc_10'))} |")
    L += ["", f"The MiniLM regressor's {cov['token_budget']}-token budget sees {cov['share_of_turns_seen']:.0%} of a "
          f"median {cov['median_window_tokens']}-token window's turns (the newest); the item model reads every clause "
          "of the user's turns.", "",
          "## Teacher to student", "",
          "| round | real windows | pseudo windows (source) | validation MAE | kept for next round | spread median | train s |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in r["scheme"]:
        kept = f"{row['next_round_kept']} of {row['next_round_candidates']}" if "next_round_kept" in row else "-"
        L.append(f"| {row['round']} | {row['n_real']} | {row['n_pseudo']} ({', '.join(row['pseudo_provenance']) or '-'}) "
                 f"| {_f(row['best_val_mae'])} | {kept} | {_f(row.get('spread_median'))} | {row['train_seconds']:.0f} |")
    L += ["", "## Reviewer 1: pseudolabel quality", "", "On the unlabelled pool itself, against its latent truth:", "",
          "| source | kept / all | MAE (kept) | Pearson r (kept) | bias (kept) | MAE (all) | Spearman(spread, error) |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, e in r["pool_quality"].items():
        k, a = e["kept"] or {}, e["all"] or {}
        L.append(f"| {name} | {e['n_kept']} / {e['n_all']} | {_f(k.get('mae'), (k.get('ci95') or {}).get('mae'))} "
                 f"| {_f(k.get('pearson_r'), (k.get('ci95') or {}).get('pearson_r'))} | {_f(k.get('bias'))} "
                 f"| {_f(a.get('mae'))} | {_f(e.get('spread_error_spearman'))} |")
    L += ["", "On the held-out real labels (test users at their survey dates):", "",
          "| source | n | MAE | Pearson r | AUC (>= 10) |", "| --- | --- | --- | --- | --- |"]
    for name, q in r["test_quality"].items():
        ci = q.get("ci95") or {}
        L.append(f"| {name} | {q['n']} | {_f(q.get('mae'), ci.get('mae'))} | {_f(q.get('pearson_r'), ci.get('pearson_r'))} "
                 f"| {_f(q.get('auc_10'), ci.get('auc_10'))} |")
    ab = r["ablation_seeds"]
    L += ["", f"![pool pseudolabels vs truth (synthetic)]({figs}/pool/pool_auc_by_threshold.png)", "",
          "## Reviewer 2: arms with equal optimiser steps, over seeds", "",
          f"Every arm trains {ITEM_TRAIN['steps']} optimiser steps of {_item_batch()} windows per seed ({len(st['seeds'])} seeds: "
          f"the seed draws each step's windows) and is scored on the same test users "
          f"({ab['n']} labels); mean (standard deviation over seeds).", "",
          "| arm | MAE | Pearson r | AUC (>= 10) | MAE minus real_only |", "| --- | --- | --- | --- | --- |"]
    for name, a in ab["arms"].items():
        L.append(f"| {name} | {_msd(a['mae'])} | {_msd(a['pearson_r'])} | {_msd(a['auc_10'])} | {_msd(a['mae'], 'minus_reference_')} |")
    L += ["", f"![arms by seed (synthetic)]({figs}/ablation/seeds_ablation.png)", ""]
    L += realtext_markdown(r.get("realtext") or {})
    L += alerts_markdown(r.get("alerts") or {})
    L += ["## Timings (this 2-core machine, shared)", "", "| step | seconds |", "| --- | --- |"]
    L += [f"| {k[:-2]} | {v} |" for k, v in r["timings"].items()]
    L += ["", "## GPU: the seed's model class", "",
          "**Not run: no GPU was lent.** `benchmarks/gpu_roundtrip.py` fine-tunes a random-initialised Qwen3-1.7B-shape "
          "regressor with LoRA r=16 on `phq synth` v2 windows, saves it, loads it and scores it through the transformers "
          "backend and vLLM; checked end to end on CPU with `--tiny`.", ""]
    return "\n".join(L)


def _item_batch() -> int:
    from training.train_items import CONFIG

    return ITEM_TRAIN.get("batch_size", CONFIG["batch_size"])


def realtext_markdown(rt: dict) -> list[str]:
    """The real-text section: every model the study ships or trains, and the two baselines."""
    if not rt:
        return ["## Real human text", "", "Not run (no `../shared/data`).", ""]

    def row(name, m):
        it = m["counselchat_items"]
        return (f"| {name} | {_f(m['counselchat_depression']['auc'], m['counselchat_depression']['ci95'])} "
                f"| {_f(it['3']['auc'])} | {_f(it['5']['auc'])} | {_f(it['6']['auc'], it['6']['ci95'])} "
                f"| {_f(m['sad_severity']['spearman'], m['sad_severity']['ci95'])} |")

    cs = rt["cold_start"]
    L = ["## Real human text (held out; no PHQ-9 labels)", "",
         f"`phq eval realtext` on the held-out splits of `../shared/data`: {cs['n_counselchat']} CounselChat questions "
         f"({cs['model']['counselchat_depression']['n_positive']} about depression) and {cs['n_sad']} SAD stress "
         "sentences, one text as one user's one turn. These check that a model reads people; they are not PHQ-9 "
         "accuracy. Goals: cold-start depression AUC >= 0.92 and SAD Spearman >= 0.15; every trained model at least "
         "as good as the cold-start one.", "",
         "| scorer | CounselChat depression AUC | sleep (3) | eating (5) | self-esteem (6) | SAD severity Spearman |",
         "| --- | --- | --- | --- | --- | --- |",
         row(f"cold-start item model ({cs['model']['model_version']}, the default)", cs["model"])]
    if rt.get("item_student"):
        L.append(row("item student, final round (fits synthetic labels freely)", rt["item_student"]["model"]))
    if rt.get("phq_train_default"):
        L.append(row("item model as `phq train` makes it (steps that still read real text as well)",
                     rt["phq_train_default"]["model"]))
    if rt.get("minilm_regressor"):
        L.append(row("MiniLM regressor (synthetic labels)", rt["minilm_regressor"]["model"]))
    for name, b in cs.get("baselines", {}).items():
        L.append(row(f"baseline: {name.replace('_', ' ')}", b))
    items = cs["model"]["counselchat_items"]
    L += ["", "Item topics held out: " + ", ".join(f"item {k} `{v['topic']}` {v['n_positive']}" for k, v in items.items())
          + " (the file has no `self-harm` topic, so item 9 cannot be checked here).", ""]
    return L


def alerts_markdown(al: dict) -> list[str]:
    if not al:
        return []
    L = ["## Alerts a clinician can trust (synthetic users with known latent trajectories)", "",
         "Every ended session of each user scored as the pipeline does (the 14 days before it), consecutive scores "
         "compared as the worker does. An alert is **true** when the user's latent PHQ-9 moved at least 5 points in "
         "its direction within the 14 days before it or the week after; a **true change** (a latent move of 5 points "
         "from where it last settled) is **alerted** when an alert of its direction comes within a week before or "
         "two weeks after. The v2 bound is measured on other synthetic users (a seed of its own) as the 95% quantile "
         "of the error of the change between two consecutive scores of one user.", "",
         "| model | rule | bound | alerts / 100 user-months | false alerts / 100 user-months | share true | true changes alerted |",
         "| --- | --- | --- | --- | --- | --- | --- |"]
    names = {"v1": "v1 (contract v1)", "v2": "v2 (contract v2, measured bound)",
             "v2_contract_approximation": "v2 with 1.96 x sqrt(2) x se", "proposed_reference": "proposed: against the last alert's score"}
    bounds = lambda m: {"v1": "-", "v2": f"{m['bound']['change_bound']:.2f}",  # noqa: E731
                        "v2_contract_approximation": f"{m['bound']['approximation_1_96_sqrt2_se']:.2f}",
                        "proposed_reference": f"{m['bound_14_days_apart']['change_bound']:.2f}"}
    for model, m in al.items():
        for rule, label in names.items():
            a = m[rule]
            L.append(f"| {model.replace('_', ' ')} | {label} | {bounds(m)[rule]} | {a['alerts_per_100_user_months']:.0f} "
                     f"| {a['false_alerts_per_100_user_months']:.0f} | {_f(a['share_true'])} "
                     f"| {a['true_changes_alerted']} of {a['true_changes']} ({_f(a['recall'])}) |")
    L += [""]
    return L


def _msd(s: dict, prefix: str = "") -> str:
    mean, sd = s.get(prefix + "mean"), s.get(prefix + "sd")
    return "n/a" if mean is None else f"{mean:.2f}" + (f" ({sd:.2f})" if sd is not None else "")


def main(argv: list[str] | None = None) -> int:
    import tempfile

    p = argparse.ArgumentParser(prog="python -m training.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/results")
    p.add_argument("--work", default=None, help="working directory (default: a new temporary one)")
    p.add_argument("--small", action="store_true", help="the same steps at a small size (a check that it runs)")
    p.add_argument("--results-md", default=None, help="also write this Markdown page (e.g. docs/results.md)")
    p.add_argument("--from-json", action="store_true", help="only rewrite --results-md from OUT/study.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.from_json:
        result = json.loads((out / "study.json").read_text())
    else:
        work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="phq-study-"))
        result = run(out, work, settings_for(args.small))
    if args.results_md:
        md = Path(args.results_md)
        figs = os.path.relpath(out, md.parent)
        kept = ""  # a hand-written part below the marker survives regeneration
        if md.exists() and HAND_WRITTEN in md.read_text():
            kept = md.read_text().split(HAND_WRITTEN, 1)[1]
        md.write_text(results_markdown(result, figs) + "\n" + HAND_WRITTEN + kept)
    print(json.dumps({k: result[k] for k in ("data", "timings")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
