"""`phq demo`, the main job: synthetic conversations through the real pipeline, scores printed per user,
then (in a terminal) the care-team dashboard on those users until Ctrl-C.

It starts nothing by hand that a deployment would not run: the dev services, migrations, the
stream processor and the scoring worker as their own processes, `phq produce`'s producer, and the
API. It trains nothing: the worker scores with the default model (`scoring.engine.Scorer.from_settings`).
All data is synthetic; the scores it prints are no measure of clinical accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from phq.settings import Settings

BANNER = "SYNTHETIC DATA - demonstration only; these scores say nothing about clinical accuracy."


def say(msg: str) -> None:
    print(f"phq demo: {msg}", file=sys.stderr, flush=True)


def demo_events(n_users: int, seed: int, run: str) -> list[dict]:
    """Synthetic events whose ids carry this run's tag, so each demo run scores new users."""
    from training.synth import generate

    events, _labels = generate(n_users=n_users, seed=seed)
    for e in events:
        for key in ("event_id", "user_id", "session_id"):
            e[key] = f"{e[key]}-{run}"
    return events


def expected_sessions(events: list[dict]) -> dict[str, set[str]]:
    """Per user, the sessions that end and hold a user turn: each gets exactly one score."""
    with_user_turn = {e["session_id"] for e in events if e.get("role") == "user"}
    out: dict[str, set[str]] = {}
    for e in events:
        if e["event_type"] == "session_end" and e["session_id"] in with_user_turn:
            out.setdefault(e["user_id"], set()).add(e["session_id"])
    return out


def start(role: str, env: dict, logs: Path) -> subprocess.Popen:
    log = open(logs / f"{role}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "cli", role], env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def produce(events: list[dict], settings: Settings) -> None:
    from confluent_kafka import Producer

    from phq import topics

    producer = Producer({"bootstrap.servers": settings.kafka(), "enable.idempotence": True, "linger.ms": 20,
                         "log_level": 3})  # retries while a fresh broker loads its coordinator are expected
    topic = settings.topic(topics.CHAT_EVENTS)
    for e in events:
        producer.produce(topic, key=e["user_id"].encode(), value=json.dumps(e).encode())
        producer.poll(0)
    producer.flush(60)


def wait_for_scores(settings: Settings, expected: dict[str, set[str]], procs, timeout_s: float) -> list[dict]:
    from sqlalchemy import select

    from phq.db import engine
    from phq.tables import phq9_scores as t

    eng = engine(settings.db_url())
    want = sum(len(s) for s in expected.values())
    deadline = time.monotonic() + timeout_s
    rows: list[dict] = []
    last = -1
    while time.monotonic() < deadline:
        with eng.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                select(t).where(t.c.user_id.in_(list(expected))).order_by(t.c.user_id, t.c.scored_at))]
        if len(rows) != last:
            say(f"{len(rows)}/{want} sessions scored")
            last = len(rows)
        if len(rows) >= want:
            return rows
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"phq demo: `phq {p.args[-1]}` exited with {p.returncode}; see its log in .phq/demo/")
        time.sleep(1)
    raise SystemExit(f"phq demo: only {len(rows)}/{want} sessions scored after {timeout_s:.0f}s; see .phq/demo/*.log")


def print_scores(rows: list[dict]) -> None:
    print(BANNER)
    by_user: dict[str, list[dict]] = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append(r)
    for user, scores in by_user.items():
        latest = scores[-1]
        path = " -> ".join(f"{s['score']:.1f}" for s in scores)
        print(f"{user}: latest {latest['score']:.1f} ({latest['severity']}) at {latest['scored_at']:%Y-%m-%d %H:%M}Z"
              f"; {len(scores)} score(s): {path}")
    model_versions = sorted({r["model_version"] for r in rows})
    print(f"model_version: {', '.join(model_versions)}")


def should_serve(no_serve: bool, stdin_is_terminal: bool) -> bool:
    """Serve the dashboard only for a person at a terminal: CI and pipes get a run that ends by itself."""
    return stdin_is_terminal and not no_serve


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phq demo", description="Run the whole pipeline on synthetic data, print "
                                     "the scores, then (in a terminal) serve the dashboard on them.")
    parser.add_argument("--users", type=int, default=8, help="synthetic users (default 8)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for every score")
    parser.add_argument("--no-serve", action="store_true",
                        help="exit after printing the scores (also when standard input is not a terminal)")
    args = parser.parse_args(argv)

    from phq import devservices
    from phq.db import migrate
    from phq.kafka_admin import ensure_topics

    settings = Settings()
    devservices.up(settings)
    migrate(settings.db_url())
    ensure_topics(settings)

    env = dict(os.environ, PYTHONUNBUFFERED="1", PHQ_KAFKA_BOOTSTRAP=settings.kafka(),
               PHQ_DATABASE_URL=settings.db_url())
    run = uuid.uuid4().hex[:6]
    events = demo_events(args.users, args.seed, run)
    expected = expected_sessions(events)
    logs = Path(settings.dev_dir).parent / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    say(f"run {run}: {len(events)} synthetic events from {len(expected)} users; logs in {logs}/")

    procs = [start("stream", env, logs), start("score-worker", env, logs)]
    try:
        produce(events, settings)
        rows = wait_for_scores(settings, expected, procs, args.timeout)
    finally:
        stop(procs)
    print_scores(rows)
    if should_serve(args.no_serve, sys.stdin.isatty()):
        from cli.demo_dashboard import serve_dashboard

        return serve_dashboard(settings, sorted(expected), run)
    return 0
