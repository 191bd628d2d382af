"""Throughput and latency of the streaming pipeline on the local dev services (`phq dev up`).

    python benchmarks/stream_throughput.py [--users 2000 --sessions 5 --turns 8]

One run: fills chat.events with a synthetic load (default 100,000 events, 2,000 users), measures the raw
confluent-kafka consume rate of that topic, then the stream processor's sustained ingest rate, the
scoring worker's requests/s and token fill (tiny untrained model), and the latency from producing a
session_end to its committed row at half the measured ingest rate; prints peak RSS of each process.
Uses its own topic prefix and database, so it never touches other data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from sqlalchemy.engine import make_url

from phq import devservices
from phq.db import migrate
from phq.kafka_admin import ensure_topics
from phq.models import request_id
from phq.settings import Settings

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
WORDS = "tired walk sleep work friend low better worried calm busy family appetite focus hope".split()


# ------------------------------------------------------------------------------ load


def sessions_of(users: int, sessions: int, turns: int, *, tag: str, t0: datetime, rng: random.Random):
    """Yields (session_end request_id, that session's events) for every user's every session."""
    for s in range(sessions):
        for u in range(users):
            user, sid = f"{tag}{u:05d}", f"{tag}{u:05d}-s{s}"
            start = t0 + timedelta(days=s, minutes=u % 600)
            events = [_event(f"{sid}-b", "session_start", user, sid, start)]
            for k in range(turns):
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30)))
                events.append(_event(f"{sid}-{k}", "message", user, sid, start + timedelta(seconds=20 * k + 10),
                                     role="user" if k % 2 == 0 else "assistant", turn=k, text=text))
            end = start + timedelta(seconds=20 * turns + 20)
            events.append(_event(f"{sid}-e", "session_end", user, sid, end))
            yield request_id(user, sid, end), events


def _event(event_id, kind, user, session, ts, **message) -> bytes:
    return json.dumps({"schema_version": 1, "event_id": event_id, "event_type": kind, "user_id": user,
                       "session_id": session, "ts": ts.isoformat(), **message}).encode()


def produce_all(settings: Settings, events: list[bytes]) -> float:
    producer = Producer({"bootstrap.servers": settings.kafka(), "linger.ms": 20, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.messages": 500_000})
    topic = settings.topic("chat.events")
    started = time.monotonic()
    for raw in events:
        key = raw[raw.index(b'"user_id": "') + 12:].split(b'"', 1)[0]
        producer.produce(topic, key=key, value=raw)
        producer.poll(0)
    producer.flush(120)
    return len(events) / (time.monotonic() - started)


# ------------------------------------------------------------------------------ measurements


def raw_consume_rate(settings: Settings, n: int) -> float:
    consumer = Consumer({"bootstrap.servers": settings.kafka(), "group.id": f"bench-raw-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topic("chat.events")])
    got, first = 0, None
    deadline = time.monotonic() + 300
    while got < n and time.monotonic() < deadline:
        msgs = consumer.consume(1000, 1.0)
        if msgs and first is None:
            first = time.monotonic()
        got += sum(1 for m in msgs if not m.error())
    elapsed = time.monotonic() - first
    consumer.close()
    return got / elapsed


def committed_total(settings: Settings, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka(), "group.id": group, "enable.auto.commit": False})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    offsets = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
    consumer.close()
    return sum(max(0, tp.offset) for tp in offsets)


def sustained_rate(settings: Settings, group: str, topic: str, target: int, timeout: float, proc) -> tuple[float, float]:
    """(items/s between the first and the last commit, seconds to reach target) by polling the group."""
    started, first, last_n = time.monotonic(), None, 0
    while time.monotonic() - started < timeout:
        n = committed_total(settings, group, topic)
        now = time.monotonic()
        if n > 0 and first is None:
            first = (now, n)
        if n >= target:
            return (n - first[1]) / max(1e-6, now - first[0]), now - started
        if proc.poll() is not None:
            raise SystemExit(f"{group} exited with {proc.returncode}")
        last_n = n
        time.sleep(0.25)
    if first is None:
        raise SystemExit(f"{group} committed nothing within {timeout}s")
    return (last_n - first[1]) / max(1e-6, time.monotonic() - first[0]), float("nan")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metrics(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def metrics_port(log: Path, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if '"metrics served"' in line:
                return json.loads(line)["port"]
        time.sleep(0.2)
    raise SystemExit(f"no metrics port in {log}")


def latency_run(settings, db_url, rate: float, seconds: float, users: int, turns: int, rng, tag: str):
    """Produce fresh users' sessions at `rate` events/s; latency of each session_end to its row."""
    producer = Producer({"bootstrap.servers": settings.kafka(), "linger.ms": 1})
    topic = settings.topic("chat.events")
    sent: dict[str, float] = {}
    per_session = turns + 2
    n_sessions = int(rate * seconds / per_session)
    load = sessions_of(max(1, min(users, n_sessions)), -(-n_sessions // max(1, min(users, n_sessions))), turns,
                       tag=tag, t0=T0 + timedelta(days=60), rng=rng)
    started, produced = time.monotonic(), 0
    for rid, events in load:
        for raw in events:
            key = raw[raw.index(b'"user_id": "') + 12:].split(b'"', 1)[0]
            producer.produce(topic, key=key, value=raw)
            produced += 1
            if b'"session_end"' in raw:
                producer.flush(5)
                sent[rid] = time.time()
            ahead = produced / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        producer.poll(0)
        if time.monotonic() - started > seconds:
            break
    producer.flush(30)
    deadline = time.monotonic() + 300
    rows: dict[str, float] = {}
    url = make_url(db_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
        while len(rows) < len(sent) and time.monotonic() < deadline:
            for rid, created in conn.execute("SELECT request_id, extract(epoch FROM created_at) FROM phq9_scores "
                                             "WHERE user_id LIKE %s", (tag + "%",)):
                rows[rid] = float(created)
            conn.commit()
            time.sleep(0.2)
    return sorted(rows[rid] - t for rid, t in sent.items() if rid in rows), len(sent)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# ------------------------------------------------------------------------------ the run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--worker-seconds", type=float, default=90, help="how long to measure the worker")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the stream processor's per-event work in-process (no Kafka)")
    parser.add_argument("--latency-seconds", type=float, default=5, help="traffic at half the ingest rate")
    args = parser.parse_args()

    base = Settings()
    services = devservices.up(base)
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka_bootstrap=services["kafka_bootstrap"], topic_prefix=prefix)
    db_url = _fresh_database(services["database_url"], prefix)
    settings = settings.model_copy(update={"database_url": db_url})
    ensure_topics(settings)
    rng = random.Random(1)
    load = list(sessions_of(args.users, args.sessions, args.turns, tag="u", t0=T0, rng=rng))
    events = [raw for _, session in load for raw in session]
    print(f"load: {len(events)} events, {args.users} users, {len(load)} sessions; partitions {settings.partitions}")
    print(f"produce: {produce_all(settings, events):,.0f} events/s")
    raw = raw_consume_rate(settings, len(events))
    print(f"raw confluent-kafka consume: {raw:,.0f} events/s")

    tmp = Path(tempfile.mkdtemp(prefix="phq-bench-"))
    env = dict(os.environ, **{f"PHQ_{k.upper()}": str(v) for k, v in settings.model_dump().items()})
    env.update(PHQ_METRICS_PORT="0", PHQ_STREAM_STATE_DIR=str(tmp / "state"), PHQ_MODEL_DIR=str(tmp / "models"))
    stream = _start("stream", env, tmp)
    try:
        ingest, took = sustained_rate(settings, f"{prefix}phq-stream", settings.topic("chat.events"), len(events), 600,
                                      stream)
        print(f"stream ingest: {ingest:,.0f} events/s sustained ({ingest / raw:.2f} of raw consume), all in {took:.0f}s")
        worker = _start("score-worker", env, tmp)
        try:
            port = metrics_port(tmp / "score-worker.log")
            rps, _ = sustained_rate(settings, f"{prefix}phq-score-worker", settings.topic("phq9.scoring.requests"),
                                    len(load), args.worker_seconds, worker)
            text = metrics(port)
            fill = metric(text, "phq_worker_round_token_fill_sum") / metric(text, "phq_worker_round_token_fill_count")
            size = metric(text, "phq_worker_round_requests_sum") / metric(text, "phq_worker_round_requests_count")
            model_s = metric(text, "phq_worker_scoring_seconds_sum") / metric(text, "phq_worker_round_requests_sum")
            print(f"scoring worker: {rps:,.1f} requests/s ({rps * (args.turns + 2) / raw:.5f} of raw consume in "
                  f"events), mean round {size:.1f} requests, token fill {fill:.2f} of PHQ_BATCH_TOKEN_BUDGET, "
                  f"model {model_s * 1000:.0f} ms per request")
            worker_rss = peak_rss_mib(worker.pid)
        finally:
            _stop(worker)
        _skip_backlog(settings, f"{prefix}phq-score-worker", settings.topic("phq9.scoring.requests"))
        worker = _start("score-worker", env, tmp, suffix="-latency")
        try:
            _wait_assigned(tmp / "score-worker-latency.log", worker)
            rate = ingest / 2
            lat, sent = latency_run(settings, db_url, rate, args.latency_seconds, args.users, args.turns, rng, "lath")
            print(f"latency session_end -> committed row at {rate:,.0f} events/s (half the ingest rate) for "
                  f"{args.latency_seconds:g}s: {len(lat)}/{sent} rows within the wait; p50={pct(lat, 50):.3f}s "
                  f"p95={pct(lat, 95):.3f}s p99={pct(lat, 99):.3f}s")
            worker_events = rps * (args.turns + 2)
            if worker_events < rate:
                _stop(worker)
                _skip_backlog(settings, f"{prefix}phq-score-worker", settings.topic("phq9.scoring.requests"))
                worker = _start("score-worker", env, tmp, suffix="-latency2")
                _wait_assigned(tmp / "score-worker-latency2.log", worker)
                low = worker_events / 2
                lat, sent = latency_run(settings, db_url, low, 30, args.users, args.turns, rng, "latw")
                print(f"latency at {low:,.0f} events/s (half of the ~{worker_events:,.0f} events/s of sessions the "
                      f"worker sustains) for 30s: {len(lat)}/{sent} rows; p50={pct(lat, 50):.3f}s "
                      f"p95={pct(lat, 95):.3f}s p99={pct(lat, 99):.3f}s")
            print(f"peak RSS: stream {peak_rss_mib(stream.pid):.0f} MiB, score-worker {worker_rss:.0f} MiB")
        finally:
            _stop(worker)
    finally:
        _stop(stream)
    if args.profile:
        _profile_per_event(events[:20000], tmp)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {_cpu_model()}, "
          f"{_mem_gib():.0f} GiB RAM, Python {platform.python_version()}")
    return 0


def _skip_backlog(settings, group: str, topic: str) -> None:
    """Move the (stopped) worker group to the end of the requests, so a latency run does not queue
    behind what the throughput phase left: it measures the pipeline, not that backlog."""
    consumer = Consumer({"bootstrap.servers": settings.kafka(), "group.id": group, "enable.auto.commit": False})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in parts]
    consumer.commit(offsets=ends, asynchronous=False)
    consumer.close()


def _wait_assigned(log: Path, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while "partitions assigned" not in log.read_text(errors="replace"):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"{log.name}: the worker did not start")
        time.sleep(0.2)


def _fresh_database(url: str, prefix: str) -> str:
    base = make_url(url)
    name = f"phq_{prefix.rstrip('.')}"
    with psycopg.connect(host=base.host, port=base.port, user=base.username, dbname=base.database,
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    fresh = base.set(database=name).render_as_string(hide_password=False)
    migrate(fresh)
    return fresh


def _start(command: str, env: dict, tmp: Path, suffix: str = "") -> subprocess.Popen:
    log = open(tmp / f"{command}{suffix}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "phq.cli", command], env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _profile_per_event(events: list[bytes], tmp: Path) -> None:
    """The stream processor's own work per event (validation, state, triggers) on a RocksDB store,
    without Kafka: the ceiling of its ingest rate on this machine, and where the time goes."""
    import cProfile
    import pstats

    from phq.events import parse_event
    from stream.store import PartitionStore
    from stream.transcripts import Rules, apply_event

    store, rules = PartitionStore(0, tmp / "profile-store"), Rules()

    def work():
        for i, raw in enumerate(events):
            apply_event(store, parse_event(raw), 0.0, rules)
            if i % 1000 == 999:
                store.commit(i)

    started = time.monotonic()
    work()
    plain = len(events) / (time.monotonic() - started)
    store.wipe()
    profiler = cProfile.Profile()
    profiler.runcall(work)
    stats = pstats.Stats(profiler)
    print(f"stream per-event work alone (no Kafka): {plain:,.0f} events/s; profile, own time:")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    for (file, line, name), (_cc, calls, own, _cum, _callers) in rows:
        print(f"  {own / stats.total_tt:6.1%}  {calls:>9,}  {Path(file).name}:{line} {name}")
    store.close()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _mem_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


if __name__ == "__main__":
    sys.exit(main())
