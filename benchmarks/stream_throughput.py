"""Throughput and latency of the streaming pipeline on the local dev services (`phq dev up`).

    python benchmarks/stream_throughput.py [--users 2000 --sessions 5 --turns 8] [--profile]

One run: fills chat.events with a synthetic load (default 100,000 events: 2,000 users with 5 sessions
each, so windows hold up to 5 sessions), measures the raw confluent-kafka consume rate of that topic
(the baseline), then the stream processor's sustained ingest rate, the scoring worker's requests/s and
token fill (tiny untrained model), the latency from producing a session_end to its committed row at
half the ingest rate (worker with a constant scorer, so the pipeline is measured, not a CPU model), the
same load on 2 partitions by one and by two stream processes, peak RSS, and (--profile) the per-event
work without Kafka with its profile. Uses its own topic prefixes and databases: it never touches other data.
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
    parser.add_argument("--sessions", type=int, default=5, help="sessions per user (windows of up to this many)")
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--worker-seconds", type=float, default=30, help="how long to measure the model worker")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the stream processor's per-event work in-process (no Kafka)")
    parser.add_argument("--latency-seconds", type=float, default=10, help="traffic at half the ingest rate")
    parser.add_argument("--no-scale-out", action="store_true", help="skip the two-processes-on-two-partitions run")
    parser.add_argument("--baseline-commit", help="also run the stream processor of this git commit on the same load "
                        "(e.g. 60b8c14, the last v1), for an old-versus-new ratio measured in the same run")
    args = parser.parse_args()

    base = Settings()
    services = devservices.up(base)
    print(f"load average before: {_loadavg()}")
    rng = random.Random(1)
    load = list(sessions_of(args.users, args.sessions, args.turns, tag="u", t0=T0, rng=rng))
    events = [raw for _, session in load for raw in session]
    settings, db_url, env, tmp = _bench_env(services, partitions=6)
    print(f"load: {len(events)} events, {args.users} users, {len(load)} sessions ({args.sessions} per user, "
          f"{args.turns} messages each); partitions {settings.partitions}")
    print(f"produce: {produce_all(settings, events):,.0f} events/s")
    raw = raw_consume_rate(settings, len(events))
    print(f"raw confluent-kafka consume: {raw:,.0f} events/s")

    stream = _start("stream", env, tmp)
    try:
        ingest, took = sustained_rate(settings, f"{settings.topic_prefix}phq-stream", settings.topic("chat.events"),
                                      len(events), 600, stream)
        print(f"stream ingest: {ingest:,.0f} events/s sustained ({ingest / raw:.4f} of raw consume), all in {took:.0f}s")
        stream_rss = peak_rss_mib(stream.pid)
        worker = _start("score-worker", env, tmp)
        try:
            port = metrics_port(tmp / "score-worker.log")
            rps, _ = sustained_rate(settings, f"{settings.topic_prefix}phq-score-worker",
                                    settings.topic("phq9.scoring.requests"), len(load), args.worker_seconds, worker)
            text = metrics(port)
            fill = metric(text, "phq_worker_round_token_fill_sum") / metric(text, "phq_worker_round_token_fill_count")
            size = metric(text, "phq_worker_round_requests_sum") / metric(text, "phq_worker_round_requests_count")
            model_s = metric(text, "phq_worker_scoring_seconds_sum") / metric(text, "phq_worker_round_requests_sum")
            print(f"scoring worker (tiny model, CPU): {rps:,.1f} requests/s, mean round {size:.1f} requests, token "
                  f"fill {fill:.2f} of PHQ_BATCH_TOKEN_BUDGET, model {model_s * 1000:.0f} ms per request")
            worker_rss = peak_rss_mib(worker.pid)
        finally:
            _stop(worker)
        _latency_runs(settings, db_url, env, tmp, ingest, args, rng)
        print(f"peak RSS: stream {stream_rss:.0f} MiB (ingest), score-worker {worker_rss:.0f} MiB (tiny model)")
    finally:
        _stop(stream)
    if args.baseline_commit:
        _baseline(services, events, raw, ingest, args.baseline_commit)
    if not args.no_scale_out:
        more = [raw_ for _, s in sessions_of(3 * args.users, args.sessions, args.turns, tag="x", t0=T0, rng=rng)
                for raw_ in s]
        _scale_out(services, more, raw)
    if args.profile:
        _profile_per_event(events, tmp)
    print(f"load average after: {_loadavg()}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {_cpu_model()}, "
          f"{_mem_gib():.0f} GiB RAM, Python {platform.python_version()}")
    return 0


def _bench_env(services: dict, partitions: int):
    """Settings, database, environment and temp dir of one measured setup (its own topic prefix)."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka_bootstrap=services["kafka_bootstrap"], topic_prefix=prefix, partitions=partitions)
    db_url = _fresh_database(services["database_url"], prefix)
    settings = settings.model_copy(update={"database_url": db_url})
    ensure_topics(settings)
    tmp = Path(tempfile.mkdtemp(prefix="phq-bench-"))
    env = dict(os.environ, **{f"PHQ_{k.upper()}": str(v) for k, v in settings.model_dump().items()})
    env.update(PHQ_METRICS_PORT="0", PHQ_STREAM_STATE_DIR=str(tmp / "state"), PHQ_MODEL_DIR=str(tmp / "models"))
    return settings, db_url, env, tmp


def _latency_runs(settings, db_url, env, tmp, ingest: float, args, rng) -> None:
    """session_end -> committed row, with a worker whose scorer costs nothing (so the pipeline, not a CPU
    model, is measured): at half the stream's sustained rate, and, if that worker cannot keep up with
    it, at half of what that worker sustains."""
    group, topic = f"{settings.topic_prefix}phq-score-worker", settings.topic("phq9.scoring.requests")
    fast = dict(env, PHQ_WORKER_SCORER="stream_throughput:constant_scorer",
                PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH", "")])))
    _skip_backlog(settings, group, topic)
    worker = _start("score-worker", fast, tmp, suffix="-latency")
    try:
        _wait_assigned(tmp / "score-worker-latency.log", worker)
        rate = ingest / 2
        lat, sent = latency_run(settings, db_url, rate, args.latency_seconds, args.users, args.turns, rng, "lath")
        print(f"latency session_end -> committed row at {rate:,.0f} events/s (half the ingest rate) for "
              f"{args.latency_seconds:g}s, constant-score worker: {len(lat)}/{sent} rows within the wait; "
              f"p50={pct(lat, 50):.3f}s p95={pct(lat, 95):.3f}s p99={pct(lat, 99):.3f}s")
        if pct(lat, 99) < 2 or not lat:
            return
        _stop(worker)
        _skip_backlog(settings, group, topic)
        worker = _start("score-worker", fast, tmp, suffix="-capacity")
        _wait_assigned(tmp / "score-worker-capacity.log", worker)
        backlog = list(sessions_of(2000, 1, args.turns, tag="cap", t0=T0 + timedelta(days=90), rng=rng))
        produce_all(settings, [raw for _, s in backlog for raw in s])
        rps, _ = sustained_rate(settings, group, topic, committed_total(settings, group, topic) + len(backlog), 120,
                                worker)
        low = rps * (args.turns + 2) / 2
        print(f"constant-score worker sustains {rps:,.0f} requests/s ({rps * (args.turns + 2):,.0f} events/s of "
              f"sessions): the row writes, not the stream, bound the pipeline")
        _stop(worker)
        _skip_backlog(settings, group, topic)
        worker = _start("score-worker", fast, tmp, suffix="-latency2")
        _wait_assigned(tmp / "score-worker-latency2.log", worker)
        lat, sent = latency_run(settings, db_url, low, args.latency_seconds, args.users, args.turns, rng, "latw")
        print(f"latency at {low:,.0f} events/s (half what that worker sustains) for {args.latency_seconds:g}s: "
              f"{len(lat)}/{sent} rows; p50={pct(lat, 50):.3f}s p95={pct(lat, 95):.3f}s p99={pct(lat, 99):.3f}s")
    finally:
        _stop(worker)


def _scale_out(services: dict, events: list[bytes], raw: float) -> None:
    """A load three times the size on a 2-partition chat.events: one processor alone, then two sharing
    the partitions (both started, and holding one partition each, before the load is produced)."""
    rates = []
    for n in (1, 2):
        settings, _db, env, tmp = _bench_env(services, partitions=2)
        procs = [_start("stream", env, tmp, suffix=f"-{i}") for i in range(n)]
        try:
            deadline = time.monotonic() + 120
            while sorted(len(_partitions_of(tmp / f"stream-{i}.log")) for i in range(n)) != ([2] if n == 1 else [1, 1]):
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise SystemExit("the stream processes did not share the two partitions")
                time.sleep(0.5)
            produce_all(settings, events)
            rate, took = _rate_after(settings, len(events), procs)
        finally:
            for proc in procs:
                _stop(proc)
        rates.append(rate)
        print(f"2 partitions, {n} stream process(es): {rate:,.0f} events/s sustained ({rate / raw:.4f} of raw "
              f"consume), the rest in {took:.1f}s after the load was produced")
    print(f"two processes on two partitions (one each): {rates[1] / rates[0]:.2f}x one process on both")


def _baseline(services: dict, events: list[bytes], raw: float, ingest: float, commit: str) -> None:
    """The stream processor of an earlier commit (exported with git archive) on the same load."""
    repo = Path(__file__).resolve().parent.parent
    old = Path(tempfile.mkdtemp(prefix="phq-baseline-"))
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    settings, _db, env, tmp = _bench_env(services, partitions=6)
    produce_all(settings, events)
    env = dict(env, PYTHONPATH=str(old))
    log = open(tmp / "stream-baseline.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "phq.cli", "stream"], env=env, cwd=old, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        rate, took = sustained_rate(settings, f"{settings.topic_prefix}phq-stream", settings.topic("chat.events"),
                                    len(events), 900, proc)
    finally:
        _stop(proc)
    print(f"baseline: the stream processor of {commit} on the same load: {rate:,.0f} events/s sustained "
          f"({rate / raw:.4f} of raw consume), all in {took:.0f}s; this one is {ingest / rate:.2f}x that")


def _rate_after(settings, target: int, procs: list) -> tuple[float, float]:
    """Events/s committed from now (the load fully produced, so the processes no longer wait on the
    producer) until `target`, by polling the group; and how long that took."""
    group, topic = f"{settings.topic_prefix}phq-stream", settings.topic("chat.events")
    start, n0 = time.monotonic(), committed_total(settings, group, topic)
    while (n := committed_total(settings, group, topic)) < target:
        if time.monotonic() - start > 600 or any(p.poll() is not None for p in procs):
            raise SystemExit("the stream processes did not finish the load")
        time.sleep(0.1)
    took = time.monotonic() - start
    return (n - n0) / took, took


def _partitions_of(log: Path) -> set[int]:
    """The partitions a process holds now, from its log."""
    held: set[int] = set()
    if not log.exists():
        return held
    for line in log.read_text(errors="replace").splitlines():
        if '"partition assigned"' in line:
            held.add(json.loads(line)["partition"])
        elif '"partition revoked"' in line:
            held.discard(json.loads(line)["partition"])
    return held


def constant_scorer(_settings):
    """A scorer that costs nothing (PHQ_WORKER_SCORER=stream_throughput:constant_scorer), for latency runs
    that measure the pipeline rather than a model."""
    from types import SimpleNamespace

    from phq.models import severity
    from scoring.engine import ScoreOutput

    class Constant:
        model_version = "bench-constant"

        def render(self, windows):
            return [SimpleNamespace(turns=t, n_tokens=len(t)) for t in windows]

        def score_rendered(self, rendered):
            return [ScoreOutput(score=7.0, severity=severity(7.0), n_tokens=r.n_tokens,
                                window_start=min((t.ts for t in r.turns), default=None),
                                n_sessions=len({t.session_id for t in r.turns}),
                                n_user_turns=sum(t.role == "user" for t in r.turns), raw=7.0) for r in rendered]

        def close(self):
            pass

    return Constant()


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


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
    """The stream processor's own work per event, batch by batch as run_batch does it (decode, one
    multi-get, apply, triggers, encode, one WriteBatch) on a RocksDB store, without Kafka: the ceiling
    of its ingest rate on this machine, and where the time goes."""
    import cProfile
    import pstats
    import shutil

    from phq.events import parse_event
    from stream.store import PartitionStore
    from stream.transcripts import Rules, apply_event, prefetch

    rules = Rules()

    def work(store):
        for start in range(0, len(events), 1000):
            chunk = [parse_event(raw) for raw in events[start:start + 1000]]
            prefetch(store, chunk)
            for event in chunk:
                for request in apply_event(store, event, 0, rules).requests:
                    request.encode("2026-01-05T09:00:00+00:00")
            store.flush_records()
            store.commit(start)

    path = tmp / "profile-store"
    store = PartitionStore(0, path, 128 << 20)
    started = time.monotonic()
    work(store)
    plain = len(events) / (time.monotonic() - started)
    store.close()
    shutil.rmtree(path)
    store = PartitionStore(0, path, 128 << 20)
    profiler = cProfile.Profile()
    profiler.runcall(work, store)
    stats = pstats.Stats(profiler)
    print(f"stream per-event work alone (no Kafka, {len(events)} events): {plain:,.0f} events/s "
          f"({1e6 / plain:.1f} us/event); profile, own time:")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:14]
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
