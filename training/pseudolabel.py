"""`phq pseudolabel`: teacher labels from an LLM behind an OpenAI-compatible chat endpoint, and the
study's iterative student rounds. Every label carries its provenance: gt, teacher, student_round_k.

Teacher output is parsed strictly and retried a bounded number of times; a window it could not rate
is recorded as a failure and gets no label. Transcripts go only to loopback or private-network
endpoints unless `--allow-hosted` says health data may leave the platform.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable
from pathlib import Path
from urllib.parse import urlparse

from training.data import Example, Label

ITEM_NAMES = [
    "little interest or pleasure in doing things",
    "feeling down, depressed, or hopeless",
    "trouble falling or staying asleep, or sleeping too much",
    "feeling tired or having little energy",
    "poor appetite or overeating",
    "feeling bad about yourself, or that you are a failure or have let yourself or your family down",
    "trouble concentrating on things",
    "moving or speaking slowly, or being fidgety or restless",
    "thoughts that you would be better off dead, or of hurting yourself",
]

TEACHER_SYSTEM = (
    "You rate depression symptoms for a clinical-research pipeline. Read the person's conversations with a "
    "support app from the last two weeks (their own turns are marked User; Assistant turns are the app and are "
    "not evidence about the person). For each of the nine PHQ-9 items rate how often the person reports the "
    "symptom NOW (within the two weeks): 0 not at all, 1 several days, 2 more than half the days, 3 nearly every "
    "day. Past symptoms they say are over, denials, and the assistant's words count as 0. "
    "Answer with one JSON object and nothing else: "
    '{"items": [{"item": 1, "score": 0, "evidence": "short exact quote from a User turn, or empty if score is 0"}, '
    "... one entry for each item 1..9]}.\nItems:\n" + "\n".join(f"{i + 1}. {n}" for i, n in enumerate(ITEM_NAMES))
)


# --- the endpoint and its safety rule --------------------------------------------------------------

def is_local_endpoint(url: str) -> bool:
    """True for loopback and private-network hosts (inside the platform); anything else counts as hosted."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False  # a DNS name: we cannot tell where it goes, so it needs --allow-hosted
    return addr.is_loopback or addr.is_private


# --- the teacher's answer, parsed strictly -----------------------------------------------------------

class BadTeacherOutput(ValueError):
    pass


_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.S)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def parse_teacher_output(content: str, user_text: str) -> list[dict]:
    """Nine {item, score, evidence} entries, or BadTeacherOutput saying what was wrong.

    Strict: one JSON object (a single Markdown fence around it is the only wrapping tolerated), nine
    items numbered 1..9 once each, integer scores 0..3 (no strings, no booleans), a string evidence
    that, for a score above 0, is quoted from the person's own turns (an invented quote is rejected).
    """
    text = content.strip()
    m = _FENCE.match(text)
    if m:
        text = m.group(1).strip()
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise BadTeacherOutput(f"not JSON ({exc.msg})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("items"), list):
        raise BadTeacherOutput('expected an object with an "items" list')
    items = obj["items"]
    if len(items) != 9:
        raise BadTeacherOutput(f"expected 9 items, got {len(items)}")
    seen, haystack, out = set(), _norm(user_text), []
    for it in items:
        if not isinstance(it, dict):
            raise BadTeacherOutput("an item is not an object")
        num, score, evidence = it.get("item"), it.get("score"), it.get("evidence", "")
        if type(num) is not int or not 1 <= num <= 9 or num in seen:
            raise BadTeacherOutput(f"bad or repeated item number {num!r}")
        if type(score) is not int or not 0 <= score <= 3:
            raise BadTeacherOutput(f"item {num}: score must be an integer 0..3, got {score!r}")
        if not isinstance(evidence, str) or len(evidence) > 500:
            raise BadTeacherOutput(f"item {num}: evidence must be a short string")
        if score > 0 and (not evidence.strip() or _norm(evidence.strip(" .\"'")) not in haystack):
            raise BadTeacherOutput(f"item {num}: evidence is not a quote from the person's turns")
        seen.add(num)
        out.append({"item": num, "score": score, "evidence": evidence})
    return sorted(out, key=lambda it: it["item"])


def transcript_text(ex: Example, max_chars: int) -> tuple[str, str]:
    """(the prompt's transcript, the person's own words) of a window; the newest `max_chars` are kept."""
    from scoring.render import session_date

    lines, last_session = [], None
    for t in ex.turns:
        if t.session_id != last_session:
            lines.append(f"\n[session of {session_date(t.ts)}]")
            last_session = t.session_id
        lines.append(f"{'User' if t.role == 'user' else 'Assistant'}: {t.text}")
    text = "\n".join(lines).strip()
    if len(text) > max_chars:
        text = text[len(text) - max_chars:]
    return text, "\n".join(t.text for t in ex.turns if t.role == "user")


@dataclass
class TeacherResult:
    example: Example
    items: list[dict] | None
    attempts: int
    error: str = ""


def ask_teacher(client, endpoint: str, model: str, ex: Example, retries: int, max_chars: int,
                api_key: str = "", timeout_s: float = 120.0) -> TeacherResult:
    """One window rated by the teacher: at most 1 + `retries` requests; never a made-up label."""
    import httpx

    text, user_text = transcript_text(ex, max_chars)
    body = {"model": model, "temperature": 0, "max_tokens": 1024,
            "messages": [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": text}]}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    error = ""
    for attempt in range(1, retries + 2):
        try:
            r = client.post(endpoint.rstrip("/") + "/chat/completions", json=body, headers=headers, timeout=timeout_s)
            if r.status_code >= 400:
                raise BadTeacherOutput(f"HTTP {r.status_code}")
            content = r.json()["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise BadTeacherOutput("message content is not a string")
            return TeacherResult(ex, parse_teacher_output(content, user_text), attempt)
        except (BadTeacherOutput, KeyError, IndexError, TypeError, ValueError, httpx.HTTPError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]  # reasons only: never the transcript
            if attempt <= retries:
                time.sleep(min(0.2 * attempt, 2.0))
    return TeacherResult(ex, None, retries + 1, error)


def run_teacher(examples: list[Example], endpoint: str, model: str, retries: int = 2, concurrency: int = 4,
                max_chars: int = 24000, api_key: str = "") -> tuple[list[Label], list[dict]]:
    """(teacher labels, failures) for the windows; failures name the user and reason only."""
    import httpx
    from tqdm import tqdm

    with httpx.Client() as client, ThreadPoolExecutor(max(1, concurrency)) as pool:
        futures = [pool.submit(ask_teacher, client, endpoint, model, ex, retries, max_chars, api_key) for ex in examples]
        results = [f.result() for f in tqdm(futures, desc="teacher", unit="window")]
    labels, failures = [], []
    for r in results:
        if r.items is None:
            failures.append({"user_id": r.example.user_id, "survey_date": r.example.survey_ts.isoformat(),
                             "attempts": r.attempts, "error": r.error})
        else:
            scores = [it["score"] for it in r.items]
            labels.append(Label(r.example.user_id, r.example.survey_ts, float(sum(scores)), "teacher", scores,
                                source=f"teacher:llm:{model}", round=0, model_version=model))
    return labels, failures


# --- the builtin teacher (no LLM) -------------------------------------------------------------------

def builtin_rater(model_dir: str | Path | None = None):
    """(rate, source, version) of the teacher that needs no LLM: the cold-start item model (or the item
    model in `model_dir`). `rate(examples)` gives each window's nine item scores (0..3, real-valued) and
    its evidence: per item the event ids of the user turns behind it (ids only: no text leaves here)."""
    from scoring.engine import ItemScorer, coldstart_dir

    if model_dir is None:
        from scoring.coldstart import build_coldstart

        model_dir = build_coldstart(coldstart_dir(""))
    scorer = ItemScorer.load(model_dir)

    def rate(examples: list[Example]) -> list[tuple[list[float], dict]]:
        out = []
        for start in range(0, len(examples), 64):
            for o in scorer.score([ex.turns for ex in examples[start:start + 64]]):
                evidence: dict[str, list[str]] = {}
                for e in o.evidence:
                    evidence.setdefault(str(e.item), []).append(e.event_id)
                out.append((list(o.items), evidence))
        return out

    return rate, "teacher:builtin:item-model", scorer.model_version


def stand_in_rater():
    """The rule-based reader of `phq synth`'s own grammar (training/stand_in_teacher.py): an upper bound on
    reading synthetic sentences, kept to check the scheme's plumbing against; never a real-text teacher."""
    from training import stand_in_teacher

    return (lambda examples: [(stand_in_teacher.rate_window(ex), {}) for ex in examples]), \
        "teacher:builtin:stand-in", stand_in_teacher.VERSION


def builtin_teacher(examples: list[Example], rater=None) -> tuple[list[Label], list[dict]]:
    """(teacher labels, failures) from the builtin teacher: the LLM path's shape, total = the items' sum;
    each label keeps its evidence (event ids per item) in `evidence`."""
    rate, source, version = rater or builtin_rater()
    labels = []
    for ex, (items, evidence) in zip(examples, rate(examples)):
        labels.append(Label(ex.user_id, ex.survey_ts, float(min(27.0, sum(items))), "teacher", list(items),
                            source=source, round=0, model_version=version, evidence=evidence))
    return labels, []


def write_teacher_labels(labels: list[Label], path: str | Path) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "survey_date", "phq9_total", *[f"item_{i}" for i in range(1, 10)], "provenance",
                    "source", "round", "model_version", "evidence"])
        for lab in labels:
            w.writerow([lab.user_id, lab.survey_ts.isoformat(), f"{lab.total:g}",
                        *([f"{v:g}" for v in lab.items] if lab.items else [""] * 9), lab.provenance, lab.source,
                        lab.round, lab.model_version, json.dumps(lab.evidence or {}, sort_keys=True)])


# --- the scheme: teacher, then students ------------------------------------------------------------

# The scheme's settings, as plain data.
SCHEME = dict(
    rounds=2,  # student rounds after round 0
    passes=8,  # forward passes with dropout on: the spread of a student's pseudolabel
    max_std=1.5,  # keep a student's pseudolabel only when its passes agree within this many points (std)
)


@dataclass
class Student:
    """How the scheme trains a student and asks it: the regressor of training/train.py today; the item
    model's trainer (training/train_items.py) plugs in with the same three calls.

    train(cfg, train_examples, val_examples, run_dir, log=..., test_users=...) -> result dict with at least
        model_version, model_path, installed_path, best_val_mae, train_seconds (and what predict needs)
    predict(result, examples) -> PHQ-9 points per example
    spread(result, examples, passes) -> (means, stds) in PHQ-9 points, from an uncertainty estimate that varies
    """

    train: Callable
    predict: Callable
    spread: Callable


def regressor_student() -> Student:
    from training.train import mc_predict, predict, train

    return Student(train=train,
                   predict=lambda r, ex: predict(r["model"], r["tokenizer"], r["meta"], ex),
                   spread=lambda r, ex, passes: mc_predict(r["model"], r["tokenizer"], r["meta"], ex, passes=passes))


def relabel(student: Student, result: dict, pool: list[Example], passes: int, max_std: float,
            round_: int) -> tuple[list[Label], list[bool]]:
    """Every pool user's pseudolabel from one student (the mean of its passes), with its round, the
    student's model version and the spread; and whether each passes the filter (spread <= max_std)."""
    means, stds = student.spread(result, pool, passes)
    labels = [Label(ex.user_id, ex.survey_ts, mu, f"student_round_{round_}", source="student", round=round_,
                    model_version=result["model_version"], spread=sd) for ex, mu, sd in zip(pool, means, stds)]
    return labels, [sd <= max_std for sd in stds]


def pseudo_examples(pool: list[Example], labels: list[Label]) -> list[Example]:
    """The pool windows carrying `labels` as their targets (what a round trains on besides the real labels)."""
    by_user = {ex.user_id: ex for ex in pool}
    return [replace(by_user[lab.user_id], total=lab.total, provenance=lab.provenance) for lab in labels
            if lab.user_id in by_user]


def run_scheme(cfg: dict, gt_train: list[Example], val: list[Example], test: list[Example], pool: list[Example],
               teacher: list[Label], out: Path, rounds: int, passes: int, max_std: float, log=print,
               install_final: bool = False, student: Student | None = None) -> list[dict]:
    """The paper's scheme. Round 0 trains on the real labels plus the teacher's pseudolabels of the pool.
    After round k, its student relabels the whole pool; a pseudolabel is kept only when the student's
    uncertainty estimate agrees (spread <= `max_std`), and round k+1 trains afresh from the base model on
    the real labels plus the kept labels. Every round's pool labels are written with their source, round,
    model version and spread (`pool_labels_round_<k>.csv`, `kept` column); test users are never trained on.
    """
    from training.data import write_labels
    from training.evaluate import evaluate_arrays, write_predictions

    student = student or regressor_student()
    out.mkdir(parents=True, exist_ok=True)
    by_user = {ex.user_id: ex for ex in pool}
    current = [lab for lab in teacher if lab.user_id in by_user]  # the pseudolabels the next round trains on
    write_labels(current, out / "pool_labels_round_0.csv", {"kept": [True] * len(current)})
    test_users = [e.user_id for e in test]
    summary = []
    for k in range(rounds + 1):
        pseudo = pseudo_examples(pool, current)
        run = out / f"round_{k}"
        log(f"round {k}: {len(gt_train)} real + {len(pseudo)} pseudo-labelled windows "
            f"({', '.join(sorted({lab.provenance for lab in current})) or 'none'})")
        res = student.train({**cfg, "install": install_final and k == rounds, "name": f"student{k}"}, gt_train + pseudo,
                            val, run, log=log, test_users=test_users)
        row = {"round": k, "n_real": len(gt_train), "n_pseudo": len(pseudo),
               "pseudo_provenance": sorted({lab.provenance for lab in current}), "best_val_mae": res["best_val_mae"],
               "train_seconds": res["train_seconds"], "model_version": res["model_version"],
               "model_path": res["model_path"], "installed_path": res["installed_path"]}
        if test:
            pred = student.predict(res, test)
            write_predictions(run / "test_predictions.csv", test_users, [e.total for e in test], pred,
                              {"survey_date": [e.survey_ts.isoformat() for e in test]})
            m = evaluate_arrays(test_users, [e.total for e in test], pred, run / "eval",
                                title=f"Student round {k} on held-out real-labelled users", n_boot=300)
            row.update({key: m[key] for key in ("mae", "rmse", "pearson_r", "spearman_rho", "auc_10")})
        if k < rounds and pool:
            labels, kept = relabel(student, res, pool, passes, max_std, k + 1)
            write_labels(labels, out / f"pool_labels_round_{k + 1}.csv", {"kept": kept})
            current = [lab for lab, keep in zip(labels, kept) if keep]
            spreads = [lab.spread for lab in labels]
            row.update({"next_round_kept": len(current), "next_round_candidates": len(pool),
                        "spread_min": min(spreads), "spread_median": sorted(spreads)[len(spreads) // 2],
                        "spread_max": max(spreads)})
        summary.append(row)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --- the command ----------------------------------------------------------------------------------

def _teacher_main(argv: list[str]) -> int:
    import os

    from phq.settings import get_settings
    from training.data import labelled_examples, read_labels, read_transcripts, unlabelled_examples

    p = argparse.ArgumentParser(prog="phq pseudolabel teacher",
                                description="Rate each window's nine PHQ-9 items with an LLM behind an OpenAI-compatible "
                                "endpoint, or with the builtin teacher (--builtin, no LLM).")
    p.add_argument("--events", required=True)
    p.add_argument("--labels", help="real labels: with --target unlabelled, who to skip; with --target labelled, which windows")
    p.add_argument("--target", choices=["unlabelled", "labelled"], default="unlabelled",
                   help="unlabelled users at their last turn, or labelled users at their survey dates (quality analysis)")
    p.add_argument("--builtin", action="store_true", help="the builtin teacher instead of an LLM endpoint (nothing leaves "
                   "this machine)")
    p.add_argument("--endpoint", help="base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", help="model name the endpoint serves")
    p.add_argument("--api-key-env", default="", help="environment variable holding the endpoint's API key")
    p.add_argument("--allow-hosted", action="store_true",
                   help="allow a non-local endpoint: transcripts (health data) leave the platform")
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-chars", type=int, default=24000, help="newest characters of a window sent to the teacher")
    p.add_argument("--out", required=True, help="labels CSV (provenance teacher)")
    p.add_argument("--failures", help="JSON lines of windows the teacher could not rate (default: OUT.failures.jsonl)")
    args = p.parse_args(argv)
    if args.builtin == bool(args.endpoint or args.model) or (args.endpoint and not args.model):
        print("phq pseudolabel teacher: give either --builtin, or --endpoint URL with --model NAME", file=sys.stderr)
        return 2
    if args.endpoint and not is_local_endpoint(args.endpoint) and not args.allow_hosted:
        print(f"phq pseudolabel: {args.endpoint} is not a loopback or private-network address; sending transcripts there "
              "is health data leaving the platform: pass --allow-hosted if that is approved", file=sys.stderr)
        return 2
    window_days = get_settings().window_days
    turns, _ = read_transcripts(args.events)
    real = read_labels(args.labels) if args.labels else []
    if args.target == "labelled":
        if not real:
            print("phq pseudolabel: --target labelled needs --labels", file=sys.stderr)
            return 2
        examples, _ = labelled_examples(turns, real, window_days)
    else:
        examples = unlabelled_examples(turns, {lab.user_id for lab in real}, window_days)
    if args.builtin:
        labels, failures = builtin_teacher(examples)
    else:
        labels, failures = run_teacher(examples, args.endpoint, args.model, args.retries, args.concurrency, args.max_chars,
                                       os.environ.get(args.api_key_env, "") if args.api_key_env else "")
    write_teacher_labels(labels, args.out)
    fail_path = Path(args.failures or f"{args.out}.failures.jsonl")
    fail_path.write_text("".join(json.dumps(f) + "\n" for f in failures))
    print(f"teacher labelled {len(labels)} of {len(examples)} windows -> {args.out}; {len(failures)} failures -> {fail_path}")
    return 0


def _students_main(argv: list[str]) -> int:
    from phq.settings import get_settings
    from training.data import (labelled_examples, read_labels, read_transcripts, split_users, splits_from_labels,
                               unlabelled_examples)
    from training.train import CONFIG, apply_overrides

    p = argparse.ArgumentParser(prog="phq pseudolabel students",
                                description="The teacher-to-student scheme: round 0 trains on real labels plus teacher "
                                "pseudolabels of the unlabelled pool; each later round relabels the pool with the previous "
                                "student, keeps the labels its uncertainty estimate agrees on, and retrains.")
    p.add_argument("--events", required=True)
    p.add_argument("--labels", required=True, help="real labels (a split column, as phq synth writes, is honoured)")
    p.add_argument("--teacher-labels", help="the teacher's labels of the unlabelled pool (round 0 trains on them)")
    p.add_argument("--rounds", type=int, default=SCHEME["rounds"])
    p.add_argument("--passes", type=int, default=SCHEME["passes"])
    p.add_argument("--max-std", type=float, default=SCHEME["max_std"])
    p.add_argument("--base-model", default=CONFIG["base_model"])
    p.add_argument("--out", required=True, help="directory for each round's run, pool labels and summary.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    cfg = apply_overrides({**CONFIG, "base_model": args.base_model, "window_days": get_settings().window_days},
                          args.set, "phq pseudolabel")
    if cfg is None:
        return 2
    try:
        turns, _ = read_transcripts(args.events)
        real = read_labels(args.labels)
        teacher = read_labels(args.teacher_labels) if args.teacher_labels else []
    except (OSError, ValueError) as exc:
        print(f"phq pseudolabel: {exc}", file=sys.stderr)
        return 1
    gt, _ = labelled_examples(turns, real, cfg["window_days"])
    split = splits_from_labels(real) or split_users([e.user_id for e in gt], cfg["seed"], cfg["val_frac"], cfg["test_frac"])
    pool = unlabelled_examples(turns, {lab.user_id for lab in real}, cfg["window_days"])
    part = {name: [e for e in gt if e.user_id in users] for name, users in split.items()}
    summary = run_scheme(cfg, part["train"], part["val"], part["test"], pool, teacher, Path(args.out),
                         args.rounds, args.passes, args.max_std, install_final=True)
    for row in summary:
        print(json.dumps({k: row.get(k) for k in ("round", "n_pseudo", "best_val_mae", "mae", "auc_10", "next_round_kept")}))
    return 0


def main(argv: list[str]) -> int:
    commands = {"teacher": _teacher_main, "students": _students_main}
    if argv[:1] in (["-h"], ["--help"]):  # asked for: the usage, and success
        print("usage: phq pseudolabel teacher|students [ARGS...]  (--help after either for its options)")
        return 0
    if not argv or argv[0] not in commands:
        print("usage: phq pseudolabel teacher|students [ARGS...]  (--help after either for its options)", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])
