"""`phq synth` (v2): synthetic users whose PHQ-9 answers follow the questionnaire's own rule, and whose
conversations have to be read to recover them. Seeded, reproducible, and marked synthetic everywhere.

Each user follows a latent severity course over the days (stable, worsening, improving, or a sudden
change); each day each of the nine items is present or not (a sticky chain around that day's chance).
A survey's answer per item is the days with the symptom in the 14 days up to it, mapped by
`phq.items.item_answer_from_days`; the total is their sum. Users chat on some days only and mention a
present symptom with some probability, so a reader must infer frequency from what it sees (some
statements say how often). Around the mentions: counter-statements and denials, past and other
people's symptoms, hypotheticals, questions, assistant echoes and small talk (training/phrases.py).
Test users speak in phrase families no other user speaks in; each user's split is decided here and
written with the labels. The latent truth of every user and day goes to a separate file marked
never-for-training.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from phq.items import N_ITEMS, WINDOW_DAYS, item_answer_from_days
from training import phrases as P

COURSES = ("stable", "worsening", "improving", "sudden_worsening", "sudden_improvement")
SPLITS = ("train", "val", "test", "pool")  # pool: never answers the questionnaire (the pseudolabel pool)
SYNTHETIC_NOTE = "synthetic data written by `phq synth`; not real people, not clinical data"
TRUTH_NOTE = ("NEVER FOR TRAINING: the latent truth of `phq synth` users (every user, every day), for measuring "
              "pseudolabels and alerts against it. Synthetic; not real people.")
LABEL_COLUMNS = (["user_id", "survey_date", "phq9_total"] + [f"item_{i}" for i in range(1, N_ITEMS + 1)]
                 + ["split", "synthetic"])

# Settings of the generator (plain data; the command overrides a few).
DEFAULTS = dict(
    n_users=12,
    seed=0,
    days=28,  # span of the conversation history
    label_fraction=0.6,  # share of users who answer the questionnaire at all
    surveys_per_user=(1, 2),  # inclusive range
    val_frac=0.15,  # of the labelled users
    test_frac=0.25,  # of the labelled users; they speak in the held-out phrase families
    chat_rate=(0.3, 0.75),  # per user: the chance of chatting on a given day
    disclosure=(0.5, 0.9),  # per user: the chance of mentioning a symptom present that day, per session
    fine_rate=(0.04, 0.12),  # per user: the chance of saying an absent item is fine, per session
    stickiness=0.6,  # how much today's symptom follows yesterday's (0: independent days)
    hedge_rate=0.15,
    span_rate=0.6,  # a mention says how often this week
    end_margin_min=10,  # with no fixed start, the last event is at least this many minutes before now
)


@dataclass
class SynthData:
    events: list[dict]  # contract events, in time order per user
    labels: list[dict]  # questionnaire answers of the labelled users (LABEL_COLUMNS)
    truth: list[dict]  # one record per user and day: NEVER FOR TRAINING
    users: list[dict]  # user_id, split, course
    start: datetime


# --- the latent course of a user -------------------------------------------------------------------

def make_user(rng: random.Random, index: int, split: str, cfg: dict) -> dict:
    course = rng.choice(COURSES)
    delta = rng.uniform(0.25, 0.6)
    base = rng.betavariate(1.2, 1.6)
    if course in ("improving", "sudden_improvement"):
        s0 = delta + base * (1 - delta)  # room to improve
    elif course in ("worsening", "sudden_worsening"):
        s0 = base * (1 - delta)  # room to worsen
    else:
        s0 = base
    affinity = [rng.uniform(0.5, 1.4) for _ in range(N_ITEMS)]
    affinity[8] = rng.uniform(0.0, 0.6)  # thoughts of death are rarer than the other items
    weeks = cfg["days"] // 7 + 4
    return dict(
        user_id=f"synthetic-user-{index:05d}", split=split, course=course, s0=s0, delta=delta,
        change=rng.uniform(0.3, 0.7), affinity=affinity,
        noise=[[rng.gauss(0, 0.07) for _ in range(N_ITEMS)] for _ in range(weeks)],
        chat_rate=rng.uniform(*cfg["chat_rate"]), disclosure=rng.uniform(*cfg["disclosure"]),
        fine_rate=rng.uniform(*cfg["fine_rate"]),
        style=[rng.sample(P.families_for(split), 2) for _ in range(N_ITEMS)],  # each user's own ways of saying it
    )


def severity(user: dict, day: int, days: int) -> float:
    """Overall severity in [0, 1] on `day` (0-based) of a `days`-day history."""
    t = min(1.0, max(0.0, day / max(days - 1, 1)))
    s, d = user["s0"], user["delta"]
    course = user["course"]
    if course == "worsening":
        s += d * t
    elif course == "improving":
        s -= d * t
    elif course == "sudden_worsening":
        s += d * (t >= user["change"])
    elif course == "sudden_improvement":
        s -= d * (t >= user["change"])
    return min(1.0, max(0.0, s))


def presence(rng: random.Random, user: dict, days: int, stickiness: float) -> dict[int, list[int]]:
    """Per day from -13 (the window of day 0 reaches back before the history) to days-1: 0/1 per item."""
    out: dict[int, list[int]] = {}
    prev = None
    for day in range(-(WINDOW_DAYS - 1), days):
        s = severity(user, max(day, 0), days)
        week = (day + WINDOW_DAYS) // 7
        today = []
        for i in range(N_ITEMS):
            p = min(0.95, max(0.0, 1.2 * s * user["affinity"][i] - 0.1 + user["noise"][week][i]))
            if prev is not None:
                p = p + stickiness * (1 - p) if prev[i] else p * (1 - stickiness)
            today.append(int(rng.random() < p))
        out[day] = prev = today
    return out


def day_truth(present: dict[int, list[int]], day: int) -> dict:
    """The questionnaire's answer if taken at the end of `day`: per item, days with it in the last 14."""
    counts = [sum(present[d][i] for d in range(day - WINDOW_DAYS + 1, day + 1)) for i in range(N_ITEMS)]
    items = [item_answer_from_days(c) for c in counts]
    return {"days_in_window": counts, "items": items, "phq9_total": sum(items)}


# --- what a session looks like ------------------------------------------------------------------

def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def present_statement(rng: random.Random, user: dict, item: int, count7: int, cfg: dict) -> str:
    bank, split = P.ITEMS[item], user["split"]
    core = P.fill(rng, rng.choice(bank["families"][rng.choice(user["style"][item])]))
    span = P.span_phrase(rng, count7, split) if rng.random() < cfg["span_rate"] else ""
    s = f"{core} {span}" if span else core
    if rng.random() < cfg["hedge_rate"]:
        s = rng.choice(P.HEDGES[split == "test"]).format(s=s)
    return _cap(rng.choice(P.OPENERS) + s) + "."


def fine_statement(rng: random.Random, user: dict, item: int) -> str:
    return _cap(rng.choice(P.OPENERS) + P.fill(rng, rng.choice(P.half(P.ITEMS[item]["fine"], user["split"])))) + "."


def confounder(rng: random.Random, user: dict, today: list[int]) -> str:
    """Symptom words that say nothing about the user now: the past, other people, hypotheticals,
    questions, and the user's own kind of symptom sentence denied, quoted from someone else or from long ago."""
    item = rng.choices(range(N_ITEMS), weights=[1] * 8 + [0.4])[0]
    bank = P.ITEMS[item]
    who, pron = rng.choice(P.PEOPLE)
    kind = rng.choice(("past", "other", "hypothetical", "question", "denial", "quote", "past_quote"))
    if kind == "denial" and today[item]:
        kind = "quote"  # a denial of a symptom the user has today would be a lie the label cannot see
    frames = {"past": P.PAST_FRAMES, "other": P.OTHER_FRAMES, "hypothetical": P.HYPOTHETICAL_FRAMES,
              "question": P.QUESTION_FRAMES, "denial": P.DENIAL_FRAMES, "quote": P.QUOTE_FRAMES,
              "past_quote": P.PAST_QUOTE_FRAMES}[kind]
    core = P.fill(rng, rng.choice(bank["families"][rng.choice(user["style"][item])]))
    text = rng.choice(frames).format(
        when=rng.choice(P.WHEN), past=P.fill(rng, rng.choice(bank["past"])), other=P.fill(rng, rng.choice(bank["other"])),
        who=who, Who=_cap(who), pron=pron, Pron=_cap(pron), core=core)
    return _cap(text)


def session_turns(rng: random.Random, user: dict, today: list[int], count7: list[int], cfg: dict) -> list[tuple[str, str]]:
    """(role, text) pairs of one session: symptom talk mixed into small talk, and the assistant's replies."""
    said = []
    for i in range(N_ITEMS):
        if today[i] and rng.random() < user["disclosure"]:
            said.append(present_statement(rng, user, i, count7[i], cfg))
        elif not today[i] and rng.random() < user["fine_rate"]:
            said.append(fine_statement(rng, user, i))
    said += [confounder(rng, user, today) for _ in range(rng.choices((0, 1, 2, 3), weights=(0.25, 0.4, 0.25, 0.1))[0])]
    said += rng.sample(P.FILLER, rng.randint(1, 3))
    rng.shuffle(said)
    if len(said) > 1 and rng.random() < 0.5:  # sometimes two things in one turn
        j = rng.randrange(len(said) - 1)
        said[j : j + 2] = [said[j] + " " + said[j + 1]]
    said[0] = f"{rng.choice(P.GREETINGS)}. {said[0]}"
    turns = []
    for text in said:
        turns.append(("user", text))
        if rng.random() < 0.35:
            echo = rng.choice(P.ITEMS[rng.randrange(N_ITEMS)]["echo"])
            turns.append(("assistant", rng.choice(P.ASSISTANT_ECHO).format(e=echo)))
        else:
            turns.append(("assistant", rng.choice(P.ASSISTANT)))
    return turns


def _ts(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _event(seq: list[int], seed: int, **fields) -> dict:
    seq[0] += 1
    return {"schema_version": 1, "event_id": f"synthetic-{seed}-{seq[0]:08d}", **fields, "synthetic": True}


def pick_split(rng: random.Random, cfg: dict) -> str:
    if rng.random() >= cfg["label_fraction"]:
        return "pool"
    r = rng.random()
    return "test" if r < cfg["test_frac"] else "val" if r < cfg["test_frac"] + cfg["val_frac"] else "train"


# --- the generator --------------------------------------------------------------------------

def synthesize(n_users: int = DEFAULTS["n_users"], seed: int = DEFAULTS["seed"], start: datetime | None = None,
               now: datetime | None = None, **settings) -> SynthData:
    """Events, labels, latent truth and splits of `n_users` users (settings: DEFAULTS' keys).

    With no `start`, the history spans the `days` before now and ends a few minutes before it, so the
    stream processor's clock-skew rule accepts every event. Same seed, same start: same output.
    """
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown synth setting(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    cfg = {**DEFAULTS, **settings}
    days = int(cfg["days"])
    if days < 1:
        raise ValueError("days must be at least 1")
    rng = random.Random(seed)
    span = timedelta(days=days)
    if start is None:
        now = now or datetime.now(timezone.utc)
        start = now.replace(microsecond=0) - timedelta(minutes=cfg["end_margin_min"]) - span
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware, e.g. 2026-01-01T00:00:00+00:00")
    seq = [0]
    data = SynthData([], [], [], [], start)
    for u in range(n_users):
        user = make_user(rng, u, pick_split(rng, cfg), cfg)
        present = presence(rng, user, days, cfg["stickiness"])
        chat_days = [d for d in range(days) if rng.random() < user["chat_rate"]] or [days - 1]
        for n, day in enumerate(chat_days):
            count7 = [sum(present[d][i] for d in range(day - 6, day + 1)) for i in range(N_ITEMS)]
            hours = [rng.uniform(7, 21)]
            if hours[0] < 20 and rng.random() < 0.1:  # now and then a second conversation that day
                hours.append(rng.uniform(hours[0] + 1, 21.5))
            for k, hour in enumerate(hours):
                session_id = f"synthetic-{user['user_id'][15:]}-s{n:03d}{'ab'[k]}-{seed}"
                ts = start + timedelta(days=day, hours=hour)
                common = dict(user_id=user["user_id"], session_id=session_id)
                data.events.append(_event(seq, seed, event_type="session_start", ts=_ts(ts), **common))
                for turn, (role, text) in enumerate(session_turns(rng, user, present[day], count7, cfg)):
                    ts += timedelta(seconds=rng.randint(15, 120))
                    data.events.append(_event(seq, seed, event_type="message", ts=_ts(ts), role=role, turn=turn,
                                              text=text, **common))
                ts += timedelta(seconds=rng.randint(30, 300))
                data.events.append(_event(seq, seed, event_type="session_end", ts=_ts(ts), **common))
        truth = {day: day_truth(present, day) for day in range(days)}
        for day in range(days):
            data.truth.append({"user_id": user["user_id"], "split": user["split"], "course": user["course"], "day": day,
                               "date": _ts(start + timedelta(days=day)), "chatted": day in chat_days,
                               "present": present[day], **truth[day], "never_for_training": True,
                               "synthetic": True})
        data.users.append({"user_id": user["user_id"], "split": user["split"], "course": user["course"]})
        if user["split"] != "pool":
            # surveys at the end of a day the user chatted on (so the window holds a conversation), late
            # enough that the 14 days before it are mostly history
            late = [d for d in chat_days if d >= min(WINDOW_DAYS - 1, days // 2)] or chat_days
            k = min(rng.randint(*cfg["surveys_per_user"]), len(late))
            for day in sorted(rng.sample(late, k)):
                survey = min(start + timedelta(days=day, hours=23, minutes=rng.randint(0, 50)), start + span)
                data.labels.append(dict(user_id=user["user_id"], survey_date=_ts(survey), phq9_total=truth[day]["phq9_total"],
                                        **{f"item_{i + 1}": v for i, v in enumerate(truth[day]["items"])},
                                        split=user["split"], synthetic=True))
    return data


def generate(n_users: int = DEFAULTS["n_users"], seed: int = DEFAULTS["seed"], start: datetime | None = None,
             days: float = DEFAULTS["days"], label_fraction: float = DEFAULTS["label_fraction"],
             now: datetime | None = None, **settings) -> tuple[list[dict], list[dict]]:
    """(events, labels): `synthesize` without the truth, for callers that only replay conversations."""
    data = synthesize(n_users, seed, start, now, days=int(days), label_fraction=label_fraction, **settings)
    return data.events, data.labels


# --- the latent truth (never for training) ----------------------------------------------------

def read_truth(path: str | Path) -> tuple[dict, dict[str, dict[int, dict]]]:
    """(header, {user_id: {day: record}}) from a truth file written by `write_truth`."""
    with open(path, encoding="utf-8") as f:
        header = json.loads(f.readline())
        if not header.get("never_for_training"):
            raise ValueError(f"{path} is not a `phq synth` truth file (its first line must be the never-for-training header)")
        by_user: dict[str, dict[int, dict]] = {}
        for line in f:
            rec = json.loads(line)
            by_user.setdefault(rec["user_id"], {})[rec["day"]] = rec
    return header, by_user


def truth_at(header: dict, by_user: dict, user_id: str, ts: datetime) -> dict | None:
    """The truth record of the day holding `ts` (the answer if the questionnaire were taken then)."""
    start = datetime.fromisoformat(header["start"].replace("Z", "+00:00"))
    day = int((ts - start).total_seconds() // 86400)
    return by_user.get(user_id, {}).get(day)


# --- writers and the command ----------------------------------------------------------------

def write_events(events: list[dict], path: str | Path) -> None:
    """JSON lines, one contract event a line, ready for `phq produce`."""
    with open(path, "w", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")


def write_labels(labels: list[dict], path: str | Path) -> None:
    """CSV with LABEL_COLUMNS (every row says synthetic; `split` is the generator's split of the user)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=LABEL_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in labels:
            w.writerow({**row, "synthetic": "true"})


def write_truth(data: SynthData, path: str | Path, seed: int) -> None:
    """JSON lines: a header saying never-for-training, then one record per user and day."""
    header = {"never_for_training": True, "synthetic": True, "note": TRUTH_NOTE, "seed": seed, "start": _ts(data.start),
              "rule": "items[i] = phq.items.item_answer_from_days(days_in_window[i]), days_in_window counts the 14 "
                      "days up to and including `day` (for the first 13 days some of them lie before the conversations "
                      "start: latent only); a survey at the end of that day answers exactly this; `day` k runs from "
                      "start + k days for 24 hours"}
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(header) + "\n")
        for rec in data.truth:
            f.write(json.dumps(rec) + "\n")


def default_truth_path(labels_path: str | Path) -> Path:
    p = Path(labels_path)
    return p.with_name(p.stem + ".truth.NEVER-FOR-TRAINING.jsonl")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="phq synth", description="Write synthetic chat events, PHQ-9 labels and the "
                                "latent truth (never for training). " + SYNTHETIC_NOTE)
    p.add_argument("--users", type=int, default=DEFAULTS["n_users"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--days", type=int, default=DEFAULTS["days"])
    p.add_argument("--label-fraction", type=float, default=DEFAULTS["label_fraction"])
    p.add_argument("--start", default=None, help="fixed RFC 3339 start of the history (default: it ends just before now)")
    p.add_argument("--out-events", required=True)
    p.add_argument("--out-labels", required=True)
    p.add_argument("--out-truth", default=None, help="the latent truth of every user and day, NEVER for training "
                   "(default: beside the labels, LABELS.truth.NEVER-FOR-TRAINING.jsonl)")
    args = p.parse_args(argv)
    if args.users < 1 or args.days < 1 or not 0 <= args.label_fraction <= 1:
        print("phq synth: --users and --days must be >= 1 and --label-fraction in [0, 1]", file=sys.stderr)
        return 2
    start = None
    if args.start:
        from phq.events import parse_rfc3339

        start = parse_rfc3339(args.start)
    data = synthesize(args.users, args.seed, start, days=args.days, label_fraction=args.label_fraction)
    truth_path = Path(args.out_truth) if args.out_truth else default_truth_path(args.out_labels)
    write_events(data.events, args.out_events)
    write_labels(data.labels, args.out_labels)
    write_truth(data, truth_path, args.seed)
    print(f"wrote {len(data.events)} synthetic events for {args.users} users to {args.out_events}, "
          f"{len(data.labels)} synthetic labels to {args.out_labels} and the latent truth (NEVER for training) "
          f"to {truth_path}")
    return 0
