"""Synthetic users, sessions and PHQ-9 labels: seeded, reproducible, and marked synthetic everywhere.

Each user has latent PHQ-9 item scores (0..3 for the nine items) that drift over weeks along one
of four courses (stable, worsening, improving, relapsing). Their sessions with an assistant
express or deny symptoms with varied wording, negation, past-tense references, hedging, and
long stretches about other things; assistant turns sometimes echo symptom words, so a model has
to read whose turn it is. Only part of the users answer the questionnaire, at a few survey dates.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

ITEMS = 9
COURSES = ("stable", "worsening", "improving", "relapsing")
SYNTHETIC_NOTE = "synthetic data written by `phq synth`; not real people, not clinical data"
LABEL_COLUMNS = ["user_id", "survey_date", "phq9_total"] + [f"item_{i}" for i in range(1, ITEMS + 1)] + ["synthetic"]

# Settings of the generator (plain data; the CLI overrides a few).
DEFAULTS = dict(
    n_users=12,
    seed=0,
    days=28,  # span of the conversation history
    sessions_per_user=(3, 6),  # inclusive range
    label_fraction=0.6,  # share of users who answer the questionnaire (as in the study, not all)
    surveys_per_user=(1, 2),
    end_margin_min=10,  # with no fixed start, the last event is at least this many minutes before now
)

# --- what people say ------------------------------------------------------------------------

# Per item: present-tense symptom statements, and how a person says it is fine now.
SYMPTOMS: list[dict] = [
    dict(  # 1 little interest or pleasure
        now=["I can't be bothered with anything I used to like", "nothing really feels fun anymore",
             "I stopped going to climbing, I just don't care about it", "I haven't touched my guitar, it feels pointless",
             "even seeing friends feels like a chore", "I don't get any joy out of the things I used to love"],
        past="I had zero interest in anything",
        fine=["I've actually been enjoying my guitar again", "I'm looking forward to the weekend for once",
              "I went climbing and loved it", "I'm into my hobbies again"],
        echo="losing interest in things you used to enjoy",
    ),
    dict(  # 2 down, depressed, hopeless
        now=["I feel really down", "everything feels hopeless", "I feel empty and sad",
             "I keep crying for no reason", "I feel like nothing is going to get better",
             "there's this heavy sadness I can't shake"],
        past="I felt completely hopeless",
        fine=["my mood has been pretty good", "I feel hopeful about things", "I'm in a good place emotionally",
              "I haven't felt down at all"],
        echo="feeling down or hopeless",
    ),
    dict(  # 3 sleep
        now=["I can't fall asleep until 3am", "I keep waking up at 4 and can't get back to sleep",
             "I sleep twelve hours and still want more", "my sleep is a mess",
             "I lie awake for hours every night", "I can barely sleep"],
        past="I couldn't sleep at all",
        fine=["I'm sleeping fine now", "sleep has been great", "I've been getting a solid eight hours",
              "no trouble sleeping"],
        echo="trouble sleeping",
    ),
    dict(  # 4 tired, little energy
        now=["I'm exhausted all the time", "I have no energy at all", "even showering wipes me out",
             "I feel drained from the moment I wake up", "I'm so tired I can't do much"],
        past="I couldn't get out of bed",
        fine=["I've got plenty of energy", "I feel pretty energetic", "I'm not tired at all lately",
              "energy's been fine"],
        echo="low energy or fatigue",
    ),
    dict(  # 5 appetite
        now=["I barely eat anything", "I keep skipping meals, I'm just not hungry", "I've been stress eating junk",
             "I eat way too much at night", "food doesn't interest me"],
        past="I stopped eating properly",
        fine=["my appetite is normal", "I'm eating well", "I've been cooking proper meals and enjoying them",
              "no problems with food"],
        echo="changes in appetite",
    ),
    dict(  # 6 bad about yourself
        now=["I feel like a failure", "I keep thinking I've let everyone down", "I hate myself",
             "I feel worthless", "I'm a disappointment to my family"],
        past="I felt like a total failure",
        fine=["I feel okay about myself", "I'm proud of how I handled things", "I don't feel like a failure",
              "I'm being kinder to myself"],
        echo="feeling bad about yourself",
    ),
    dict(  # 7 concentration
        now=["I can't concentrate on anything", "I read the same page five times", "my mind keeps wandering at work",
             "I can't focus on a TV show", "I can't keep my thoughts together"],
        past="I couldn't focus on anything",
        fine=["I can focus fine", "my concentration is good", "I got through a whole book",
              "work is going smoothly, I'm focused"],
        echo="trouble concentrating",
    ),
    dict(  # 8 slowed or restless
        now=["I feel slowed down, like moving through mud", "I can't sit still, I'm restless all the time",
             "people say I talk really slowly now", "I'm fidgety and pacing around"],
        past="I was so restless I couldn't sit still",
        fine=["I feel settled", "I'm not restless", "I feel calm and normal"],
        echo="feeling slowed down or restless",
    ),
    dict(  # 9 better off dead / self-harm thoughts
        now=["sometimes I think everyone would be better off without me", "I've had thoughts of not wanting to be here",
             "I wonder if it would be easier if I just disappeared", "I've thought about hurting myself"],
        past="I had thoughts of not wanting to be here",
        fine=["I haven't had any dark thoughts", "I don't have thoughts of hurting myself", "I want to be here"],
        echo="thoughts that you'd be better off not here",
    ),
]

FREQUENCY = {  # how often, by item score
    1: ["now and then", "a couple of days this week", "once or twice lately", "some days"],
    2: ["most days", "more often than not", "at least half the week", "a lot lately"],
    3: ["every single day", "pretty much every day", "constantly", "all the time now"],
}
OPENERS = ["", "Honestly, ", "I don't know, ", "To be honest ", "Lately ", "So ", "Ugh, ", "Yeah, "]
HEDGES = ["maybe {s}? not sure", "I guess {s}, or maybe that's just the weather", "I think {s}, kind of",
          "possibly {s}, hard to say", "{s}, sort of, I might be overthinking it"]
PAST = ["last month {p}, but that's passed", "back in the spring {p}. That's behind me now",
        "a few months ago {p}, it's much better now", "last year {p}, but not anymore"]
FILLER = [
    "Work has been busy, we're migrating the whole billing system and the deadline keeps moving.",
    "I watched a documentary about octopuses last night, they're so clever, they can open jars.",
    "My sister is getting married in June so there's a lot of planning, the venue is by a lake.",
    "We're thinking about getting a second cat but the first one is very territorial.",
    "The football match on Sunday was wild, we scored in the last minute.",
    "I'm trying to learn Spanish with an app, I'm on a 40 day streak.",
    "I repotted all my houseplants, the monstera finally has new leaves.",
    "My landlord still hasn't fixed the heating, I've emailed three times.",
    "I'm planning a trip to Lisbon, any idea what's worth seeing?",
    "I made lasagna from scratch for the first time, it took all afternoon.",
    "My manager wants me to present the quarterly numbers, which is new for me.",
    "The bus was late again, I think they changed the timetable.",
    "I'm reading a fantasy series my friend recommended, the world-building is great.",
    "My parents want me to visit for the holidays, it's a long drive.",
    "I started running with a group on Thursdays, mostly for the coffee after.",
    "The neighbours are renovating and the drilling starts at eight every morning.",
]
ASSISTANT = [
    "Thanks for telling me. How has the rest of your week been?",
    "That sounds like a lot to hold. What helps you most on days like that?",
    "I'm glad you shared that. Would you like to talk more about it?",
    "That sounds interesting! How did it go?",
    "It makes sense that you'd feel that way. What would a small next step look like?",
    "Let's take it one step at a time. What's on your mind right now?",
]
ASSISTANT_ECHO = [
    "Many people notice {e} when life gets stressful. Have you noticed anything like that?",
    "Some people experience {e}; if that ever happens to you, we can work on it together.",
    "It sounds like you might be dealing with {e}. Is that right?",
    "A lot of people talk to me about {e}. How has that been for you?",
]
GREETINGS = ["Hi", "Hey", "hello again", "Hi, it's me", "hey there", "Morning"]


# --- latent course of each user -------------------------------------------------------------

def severity_course(course: str, s0: float, delta: float, t: float) -> float:
    """Overall severity in [0, 1] at fraction t in [0, 1] of the user's history."""
    if course == "worsening":
        s = s0 + delta * t
    elif course == "improving":
        s = s0 - delta * t
    elif course == "relapsing":  # gets better, then worse again
        s = s0 - 2 * delta * min(t, 0.5) + 3 * delta * max(t - 0.5, 0.0)
    else:
        s = s0
    return min(1.0, max(0.0, s))


def item_scores(user: dict, t: float) -> list[int]:
    """The user's latent item scores (0..3) at fraction t of the history; noise is per item and week."""
    s = severity_course(user["course"], user["s0"], user["delta"], t)
    week = min(int(t * user["weeks"]), user["weeks"] - 1)
    out = []
    for i in range(ITEMS):
        level = 3.3 * s * user["affinity"][i] + user["noise"][week][i]
        out.append(int(min(3, max(0, round(level)))))
    return out


def make_user(rng: random.Random, index: int, days: float) -> dict:
    weeks = max(1, math.ceil(days / 7))
    affinity = [rng.uniform(0.55, 1.35) for _ in range(ITEMS)]
    affinity[8] = rng.uniform(0.1, 0.75)  # thoughts of death are rarer than the other items
    return dict(
        user_id=f"synthetic-user-{index:05d}",
        course=rng.choice(COURSES),
        s0=rng.betavariate(1.3, 2.0),
        delta=rng.uniform(0.15, 0.5),
        affinity=affinity,
        noise=[[rng.gauss(0, 0.35) for _ in range(ITEMS)] for _ in range(weeks)],
        weeks=weeks,
    )


# --- what a session looks like --------------------------------------------------------------

def symptom_statements(rng: random.Random, scores: list[int]) -> list[str]:
    """User statements about the nine items, given today's latent scores."""
    out = []
    for i, level in enumerate(scores):
        bank = SYMPTOMS[i]
        r = rng.random()
        if level > 0 and r < 0.3 + 0.2 * level:
            core = rng.choice(bank["now"])
            if level == 1 and rng.random() < 0.4:
                out.append(rng.choice(HEDGES).format(s=core))
            else:
                out.append(f"{rng.choice(OPENERS)}{core} {rng.choice(FREQUENCY[level])}.")
        elif level == 0 and r < 0.25:
            out.append(f"{rng.choice(OPENERS)}{rng.choice(bank['fine'])}.")
        if level <= 1 and rng.random() < 0.08:
            out.append(rng.choice(PAST).format(p=bank["past"]) + ".")
    return [s[0].upper() + s[1:] for s in out]


def session_turns(rng: random.Random, scores: list[int]) -> list[tuple[str, str]]:
    """(role, text) pairs of one session: a greeting, symptom talk mixed into other topics, replies."""
    said = symptom_statements(rng, scores)
    said += rng.sample(FILLER, rng.randint(1, 4))
    rng.shuffle(said)
    if rng.random() < 0.5 and len(said) > 1:  # sometimes two things in one turn
        j = rng.randrange(len(said) - 1)
        said[j : j + 2] = [said[j] + " " + said[j + 1]]
    turns = [("user", rng.choice(GREETINGS) + ". " + said[0] if said else rng.choice(GREETINGS))]
    for text in said[1:] + [None]:
        if rng.random() < 0.3:
            echo = SYMPTOMS[rng.randrange(ITEMS)]["echo"]
            turns.append(("assistant", rng.choice(ASSISTANT_ECHO).format(e=echo)))
        else:
            turns.append(("assistant", rng.choice(ASSISTANT)))
        if text is not None:
            turns.append(("user", text))
    return turns


def _ts(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _event(seq: list[int], seed: int, **fields) -> dict:
    seq[0] += 1
    return {
        "schema_version": 1,
        "event_id": f"synthetic-{seed}-{seq[0]:08d}",
        **fields,
        "synthetic": True,
    }


# --- the generator --------------------------------------------------------------------------

def generate(
    n_users: int = DEFAULTS["n_users"],
    seed: int = DEFAULTS["seed"],
    start: datetime | None = None,
    days: float = DEFAULTS["days"],
    sessions_per_user: tuple[int, int] = DEFAULTS["sessions_per_user"],
    label_fraction: float = DEFAULTS["label_fraction"],
    surveys_per_user: tuple[int, int] = DEFAULTS["surveys_per_user"],
    now: datetime | None = None,
) -> tuple[list[dict], list[dict]]:
    """Contract events (dicts, in time order per user) and questionnaire labels for `n_users` users.

    With no `start`, the history spans the `days` before now and ends a few minutes before it, so
    the stream processor's clock-skew rule accepts every event. Same seed, same start: same output.
    """
    rng = random.Random(seed)
    span = timedelta(days=days)
    if start is None:
        now = now or datetime.now(timezone.utc)
        start = now.replace(microsecond=0) - timedelta(minutes=DEFAULTS["end_margin_min"]) - span
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware, e.g. 2026-01-01T00:00:00+00:00")
    seq = [0]
    events: list[dict] = []
    labels: list[dict] = []
    for u in range(n_users):
        user = make_user(rng, u, days)
        n_sessions = rng.randint(*sessions_per_user)
        # session starts as fractions of the span; the last ~3 hours are kept free so every session ends in time
        usable = max(span.total_seconds() - 3 * 3600, 3600)
        offsets = sorted(round(rng.uniform(0, usable)) for _ in range(n_sessions))
        session_ends: list[tuple[datetime, float]] = []
        for s, off in enumerate(offsets):
            t_frac = off / span.total_seconds()
            scores = item_scores(user, t_frac)
            session_id = f"synthetic-{user['user_id'][15:]}-s{s:03d}-{seed}"
            ts = start + timedelta(seconds=off)
            common = dict(user_id=user["user_id"], session_id=session_id)
            events.append(_event(seq, seed, event_type="session_start", ts=_ts(ts), **common))
            for turn, (role, text) in enumerate(session_turns(rng, scores)):
                ts += timedelta(seconds=rng.randint(15, 120))
                events.append(_event(seq, seed, event_type="message", ts=_ts(ts), role=role, turn=turn, text=text, **common))
            ts += timedelta(seconds=rng.randint(30, 300))
            events.append(_event(seq, seed, event_type="session_end", ts=_ts(ts), **common))
            session_ends.append((ts, t_frac))
        if rng.random() < label_fraction:
            # surveys follow a session (so the window that ends at the survey holds a conversation),
            # preferring later sessions so the window has history
            k = min(rng.randint(*surveys_per_user), len(session_ends))
            candidates = session_ends[len(session_ends) // 3 :] or session_ends
            for end_ts, t_frac in sorted(rng.sample(candidates, min(k, len(candidates)))):
                survey = end_ts + timedelta(minutes=rng.randint(1, 60))
                survey = min(survey, start + span)
                scores = item_scores(user, t_frac)
                labels.append(dict(user_id=user["user_id"], survey_date=_ts(survey), phq9_total=sum(scores),
                                   **{f"item_{i + 1}": v for i, v in enumerate(scores)}, synthetic=True))
    return events, labels


# --- writers and the command ----------------------------------------------------------------

def write_events(events: list[dict], path: str | Path) -> None:
    """JSON lines, one contract event a line, ready for `phq produce`."""
    with open(path, "w", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")


def write_labels(labels: list[dict], path: str | Path) -> None:
    """CSV with `user_id, survey_date, phq9_total, item_1..item_9, synthetic` (every row says synthetic)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=LABEL_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in labels:
            w.writerow({**row, "synthetic": "true"})


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="phq synth", description="Write synthetic chat events and PHQ-9 labels. " + SYNTHETIC_NOTE)
    p.add_argument("--users", type=int, default=DEFAULTS["n_users"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--days", type=float, default=DEFAULTS["days"])
    p.add_argument("--sessions", type=int, nargs=2, default=DEFAULTS["sessions_per_user"], metavar=("MIN", "MAX"))
    p.add_argument("--label-fraction", type=float, default=DEFAULTS["label_fraction"])
    p.add_argument("--start", default=None, help="fixed RFC 3339 start of the history (default: it ends just before now)")
    p.add_argument("--out-events", required=True)
    p.add_argument("--out-labels", required=True)
    args = p.parse_args(argv)
    if args.users < 1 or args.days <= 0 or not 0 <= args.label_fraction <= 1:
        print("phq synth: --users must be >= 1, --days > 0 and --label-fraction in [0, 1]", file=sys.stderr)
        return 2
    start = None
    if args.start:
        from phq.events import parse_rfc3339

        start = parse_rfc3339(args.start)
    events, labels = generate(args.users, args.seed, start, args.days, tuple(args.sessions), args.label_fraction)
    write_events(events, args.out_events)
    write_labels(labels, args.out_labels)
    print(f"wrote {len(events)} synthetic events for {args.users} users to {args.out_events} "
          f"and {len(labels)} synthetic labels to {args.out_labels}")
    return 0
