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
from dataclasses import dataclass
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
            labels.append(Label(r.example.user_id, r.example.survey_ts, float(sum(scores)), "teacher", scores))
    return labels, failures


def write_teacher_labels(labels: list[Label], path: str | Path) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "survey_date", "phq9_total", *[f"item_{i}" for i in range(1, 10)], "provenance"])
        for lab in labels:
            w.writerow([lab.user_id, lab.survey_ts.isoformat(), f"{lab.total:g}", *(lab.items or [""] * 9), lab.provenance])


# --- students -----------------------------------------------------------------------------------

# The student scheme's settings, as plain data.
STUDENTS = dict(
    rounds=2,
    passes=8,  # MC-dropout passes forming the ensemble of the confidence rule
    max_std=1.5,  # keep a pseudolabel when the passes agree within this many PHQ-9 points (std)
)


def run_students(cfg: dict, gt_train: list[Example], val: list[Example], test: list[Example],
                 unlabelled: list[Example], teacher: list[Label], out: Path, rounds: int, passes: int,
                 max_std: float, log=print, install_final: bool = False) -> list[dict]:
    """The iterative scheme. Round 0 trains on real labels only (the ablation's baseline); round k >= 1
    trains from the base model on real labels plus pseudolabels: teacher labels when given, and the
    users round k-1's model labelled confidently (its MC-dropout ensemble of `passes` agrees within
    `max_std` points), a user's newest confident student label replacing an older label.
    Provenance weights (cfg) weigh each source; test users are never trained on.
    """
    from dataclasses import replace

    from training.data import write_labels
    from training.evaluate import evaluate_arrays, write_predictions
    from training.train import mc_predict, predict, train

    by_user = {lab.user_id: lab for lab in teacher}  # newest pseudolabel per unlabelled user
    pool = {ex.user_id: ex for ex in unlabelled}
    summary = []
    for k in range(rounds + 1):
        pseudo = [] if k == 0 else [replace(pool[u], total=lab.total, provenance=lab.provenance)
                                    for u, lab in by_user.items() if u in pool]
        run = out / f"round_{k}"
        log(f"round {k}: {len(gt_train)} real + {len(pseudo)} pseudo-labelled windows")
        res = train({**cfg, "install": install_final and k == rounds, "name": f"student{k}"}, gt_train + pseudo, val,
                    run, log=log)
        model, tok, meta = res["model"], res["tokenizer"], res["meta"]
        row = {"round": k, "n_real": len(gt_train), "n_pseudo": len(pseudo),
               "pseudo_provenance": sorted({p.provenance for p in pseudo}), "best_val_mae": res["best_val_mae"],
               "train_seconds": res["train_seconds"], "model_path": res["model_path"],
               "installed_path": res["installed_path"]}
        if test:
            pred = predict(model, tok, meta, test)
            write_predictions(run / "test_predictions.csv", [e.user_id for e in test], [e.total for e in test], pred,
                              {"survey_date": [e.survey_ts.isoformat() for e in test]})
            m = evaluate_arrays([e.user_id for e in test], [e.total for e in test], pred, run / "eval",
                                title=f"Student round {k} on held-out real-labelled users", n_boot=300)
            row.update({key: m[key] for key in ("mae", "rmse", "pearson_r", "spearman_rho", "auc_10")})
        if k < rounds and unlabelled:
            means, stds = mc_predict(model, tok, meta, unlabelled, passes=passes)
            kept = [(ex, mu) for ex, mu, sd in zip(unlabelled, means, stds) if sd <= max_std]
            for ex, mu in kept:
                by_user[ex.user_id] = Label(ex.user_id, ex.survey_ts, mu, f"student_round_{k + 1}")
            write_labels([Label(ex.user_id, ex.survey_ts, mu, f"student_round_{k + 1}") for ex, mu in kept],
                         out / f"pseudo_labels_round_{k + 1}.csv")
            row["next_round_kept"] = len(kept)
            row["next_round_candidates"] = len(unlabelled)
        summary.append(row)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --- the command ----------------------------------------------------------------------------------

def _teacher_main(argv: list[str]) -> int:
    import os

    from phq.settings import get_settings
    from training.data import labelled_examples, read_labels, read_transcripts, unlabelled_examples

    p = argparse.ArgumentParser(prog="phq pseudolabel teacher",
                                description="Rate each window's nine PHQ-9 items with an LLM behind an OpenAI-compatible endpoint.")
    p.add_argument("--events", required=True)
    p.add_argument("--labels", help="real labels: with --target unlabelled, who to skip; with --target labelled, which windows")
    p.add_argument("--target", choices=["unlabelled", "labelled"], default="unlabelled",
                   help="unlabelled users at their last turn, or labelled users at their survey dates (quality analysis)")
    p.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True, help="model name the endpoint serves")
    p.add_argument("--api-key-env", default="", help="environment variable holding the endpoint's API key")
    p.add_argument("--allow-hosted", action="store_true",
                   help="allow a non-local endpoint: transcripts (health data) leave the platform")
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-chars", type=int, default=24000, help="newest characters of a window sent to the teacher")
    p.add_argument("--out", required=True, help="labels CSV (provenance teacher)")
    p.add_argument("--failures", help="JSON lines of windows the teacher could not rate (default: OUT.failures.jsonl)")
    args = p.parse_args(argv)
    if not is_local_endpoint(args.endpoint) and not args.allow_hosted:
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
    labels, failures = run_teacher(examples, args.endpoint, args.model, args.retries, args.concurrency, args.max_chars,
                                   os.environ.get(args.api_key_env, "") if args.api_key_env else "")
    write_teacher_labels(labels, args.out)
    fail_path = Path(args.failures or f"{args.out}.failures.jsonl")
    fail_path.write_text("".join(json.dumps(f) + "\n" for f in failures))
    print(f"teacher labelled {len(labels)} of {len(examples)} windows -> {args.out}; {len(failures)} failures -> {fail_path}")
    return 0


def _students_main(argv: list[str]) -> int:
    from phq.settings import get_settings
    from training.data import labelled_examples, read_labels, read_transcripts, split_users, unlabelled_examples
    from training.train import CONFIG, apply_overrides

    p = argparse.ArgumentParser(prog="phq pseudolabel students",
                                description="Iterative student pseudolabelling: train on real labels, label the confident "
                                "unlabelled users, retrain on real plus pseudo, for N rounds.")
    p.add_argument("--events", required=True)
    p.add_argument("--labels", required=True, help="real labels")
    p.add_argument("--teacher-labels", help="teacher labels for unlabelled users (used from round 1, weighted)")
    p.add_argument("--rounds", type=int, default=STUDENTS["rounds"])
    p.add_argument("--passes", type=int, default=STUDENTS["passes"])
    p.add_argument("--max-std", type=float, default=STUDENTS["max_std"])
    p.add_argument("--base-model", default=CONFIG["base_model"])
    p.add_argument("--out", required=True, help="directory for each round's run, pseudolabels and summary.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    cfg = apply_overrides({**CONFIG, "base_model": args.base_model, "window_days": get_settings().window_days},
                          args.set, "phq pseudolabel")
    if cfg is None:
        return 2
    turns, _ = read_transcripts(args.events)
    real = read_labels(args.labels)
    gt, _ = labelled_examples(turns, real, cfg["window_days"])
    split = split_users([e.user_id for e in gt], cfg["seed"], cfg["val_frac"], cfg["test_frac"])
    unlabelled = unlabelled_examples(turns, {lab.user_id for lab in real}, cfg["window_days"])
    teacher = read_labels(args.teacher_labels) if args.teacher_labels else []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = run_students(cfg, [e for e in gt if e.user_id in split["train"]], [e for e in gt if e.user_id in split["val"]],
                           [e for e in gt if e.user_id in split["test"]], unlabelled, teacher, out,
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
