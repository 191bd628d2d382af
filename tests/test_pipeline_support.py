"""Shared by the pipeline, stream, worker and crash tests: synthetic traffic, real processes, waiting.

Holds no tests itself. Events are built here (not with training.synth) so each test states exactly
which sessions end and how.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from sqlalchemy.engine import make_url

from phq.models import request_id
from phq.settings import Settings

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def text_for(user: int, session: int, turn: int, rng: random.Random) -> str:
    """A message text unique to its turn, so a log grep can look for every one of them."""
    words = ["tired", "walk", "sleep", "work", "friend", "low", "better", "worried", "calm", "busy"]
    return f"msg-{user}-{session}-{turn}-" + " ".join(rng.choice(words) for _ in range(6))


@dataclass
class Traffic:
    events: list[dict] = field(default_factory=list)
    ended: dict[str, tuple[str, str, datetime]] = field(default_factory=dict)  # request_id -> (user, session, ts)
    open_sessions: set[tuple[str, str]] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)


def make_traffic(n_users: int, sessions: int = 2, turns: int = 4, *, seed: int = 7, end_last: bool = True,
                 prefix: str = "u", t0: datetime = T0) -> Traffic:
    """Each user has `sessions` daily sessions of `turns` alternating turns; every session ends with a
    session_end, except (when end_last is False) each user's last one."""
    rng = random.Random(seed)
    out = Traffic()
    for u in range(n_users):
        user = f"{prefix}{u:04d}"
        for s in range(sessions):
            sid = f"{user}-s{s}"
            start = t0 + timedelta(days=s, minutes=u % 50)
            out.events.append(_event(f"{sid}-start", "session_start", user, sid, start))
            for k in range(turns):
                text = text_for(u, s, k, rng)
                out.texts.append(text)
                out.events.append(_event(f"{sid}-m{k}", "message", user, sid, start + timedelta(minutes=k + 1),
                                         role="user" if k % 2 == 0 else "assistant", turn=k, text=text))
            if s < sessions - 1 or end_last:
                end = start + timedelta(minutes=turns + 2)
                out.events.append(_event(f"{sid}-end", "session_end", user, sid, end))
                out.ended[request_id(user, sid, end)] = (user, sid, end)
            else:
                out.open_sessions.add((user, sid))
    return out


def _event(event_id: str, event_type: str, user: str, session: str, ts: datetime, **message) -> dict:
    return {"schema_version": 1, "event_id": event_id, "event_type": event_type, "user_id": user,
            "session_id": session, "ts": ts.isoformat().replace("+00:00", "Z"), **message}


def with_duplicates(events: list[dict], share: float, seed: int = 3) -> list[dict]:
    """The events with a share of them repeated soon after the original (as a retrying producer does)."""
    rng = random.Random(seed)
    out = []
    for event in events:
        out.append(event)
        if rng.random() < share:
            out.append(dict(event))
    return out


def produce(settings: Settings, values: list, *, key_of=None) -> None:
    """Send raw values (dict -> JSON, bytes as they are) to chat.events, keyed by user_id when known."""
    producer = Producer({"bootstrap.servers": settings.kafka(), "linger.ms": 20, "message.max.bytes": 2 * 1024 * 1024})
    topic = settings.topic("chat.events")
    for value in values:
        key = key_of(value) if key_of else (value.get("user_id") if isinstance(value, dict) else None)
        raw = json.dumps(value).encode() if isinstance(value, dict) else value
        producer.produce(topic, key=key.encode() if isinstance(key, str) else key, value=raw)
        producer.poll(0)
    assert producer.flush(60) == 0


# ------------------------------------------------------------------------------ processes


class Proc:
    """A `phq` subprocess with its output in a log file (read back by tests, e.g. the log grep)."""

    def __init__(self, args: list[str], env: dict, log_path: Path):
        self.args, self.env, self.log_path = args, env, log_path
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "phq.cli", *self.args], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=_repo_root())

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"phq {self.args[0]} did not exit within {timeout}s of SIGTERM")
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def pipeline_env(phq_env, tmp_path: Path, **extra) -> dict:
    env = phq_env(PHQ_METRICS_PORT="0", PHQ_STREAM_STATE_DIR=str(tmp_path / "stream-state"),
                  PHQ_LOG_LEVEL="INFO", **{k: str(v) for k, v in extra.items()})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH", "")]))
    return env


def wait_until(check, timeout: float, what: str, procs: list[Proc] = (), interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        for p in procs:
            if not p.alive():
                raise AssertionError(f"phq {p.args[0]} exited with {p.proc.returncode} while waiting for {what}:\n"
                                     + p.log()[-4000:])
        time.sleep(interval)
    tails = "\n".join(f"--- {p.args[0]}\n{p.log()[-3000:]}" for p in procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


# ------------------------------------------------------------------------------ reading results


def db_rows(db_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    url = make_url(db_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
        return conn.execute(sql, params).fetchall()


def score_counts(db_url: str, user_prefix: str = "") -> dict[str, int]:
    rows = db_rows(db_url, "SELECT request_id, count(*) FROM phq9_scores WHERE user_id LIKE %s GROUP BY request_id",
                   (user_prefix + "%",))
    return dict(rows)


def read_topic(settings: Settings, name: str, *, timeout: float = 10, committed_only: bool = True) -> list:
    """Every record now on a topic (read_committed by default), as confluent-kafka messages."""
    consumer = Consumer({"bootstrap.servers": settings.kafka(), "group.id": "reader", "enable.auto.commit": False,
                         "enable.partition.eof": True,
                         "isolation.level": "read_committed" if committed_only else "read_uncommitted"})
    topic = settings.topic(name)
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out, eof, deadline = [], set(), time.monotonic() + timeout
    while len(eof) < len(parts) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            eof.add(msg.partition())
            continue
        out.append(msg)
    consumer.close()
    return out


# ------------------------------------------------------------------------------ a deterministic scorer


class HashScorer:
    """Scores a window by a hash of its turns (0..27, spread enough to make change events), fast and
    deterministic, so a redelivered request scores the same. Loaded by workers with
    PHQ_WORKER_SCORER=test_pipeline_support:hash_scorer (PYTHONPATH has tests/)."""

    model_version = "test-hash-v1"
    token_budget = 2048

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s

    def render(self, windows):
        from types import SimpleNamespace

        return [SimpleNamespace(turns=list(t), n_tokens=sum(len(x.text) for x in t) // 4) for t in windows]

    def score_rendered(self, rendered):
        import hashlib

        from phq.models import severity
        from scoring.engine import ScoreOutput

        mark = os.environ.get("PHQ_TEST_SCORER_MARK")  # a file: one line per round, written as it starts
        if mark:
            with open(mark, "a") as f:
                f.write(" ".join(sorted({t.session_id for r in rendered for t in r.turns})) + "\n")
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for turns in (r.turns for r in rendered):
            digest = hashlib.sha256("|".join(f"{t.session_id}/{t.turn}" for t in turns).encode()).digest()
            score = round(digest[0] / 255 * 27, 2)
            out.append(ScoreOutput(score=score, severity=severity(score), n_tokens=sum(len(t.text) for t in turns) // 4,
                                   window_start=min((t.ts for t in turns), default=None),
                                   n_sessions=len({t.session_id for t in turns}),
                                   n_user_turns=sum(t.role == "user" for t in turns), raw=score))
        return out


def hash_scorer(settings):
    return HashScorer(delay_s=float(os.environ.get("PHQ_TEST_SCORER_DELAY_S", "0")))


def expected_changes(db_url: str, settings: Settings, user_prefix: str) -> set[tuple[str, str]]:
    """(request_id, kind) of every change event the rules imply for the stored scores, in scored_at order."""
    from phq.changes import detect_changes

    rows = db_rows(db_url, "SELECT user_id || '/' || model_version, scored_at, request_id, score FROM phq9_scores "
                           "WHERE user_id LIKE %s ORDER BY 1, scored_at, request_id", (user_prefix + "%",))
    out, previous = set(), {}
    for user, _, rid, score in rows:
        if user in previous:
            for change in detect_changes(previous[user], score, reliable_change=settings.reliable_change,
                                         clinical_threshold=settings.clinical_threshold):
                out.add((rid, change.kind))
        previous[user] = score
    return out


def stored_changes(db_url: str, user_prefix: str) -> list[tuple[str, str]]:
    return [tuple(r) for r in db_rows(db_url, "SELECT s.request_id, c.kind FROM symptom_change_events c "
                                              "JOIN phq9_scores s ON s.id = c.score_id WHERE c.user_id LIKE %s",
                                      (user_prefix + "%",))]


# ------------------------------------------------------------------------------ crash and scale-out runs


class Replay(threading.Thread):
    """Produces events at a steady pace in the background, as live traffic arrives."""

    def __init__(self, settings, events: list[dict], seconds: float, chunks: int = 40):
        super().__init__(daemon=True)
        self.settings, self.events, self.seconds, self.chunks = settings, events, seconds, chunks
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            size = -(-len(self.events) // self.chunks)
            for i in range(0, len(self.events), size):
                produce(self.settings, self.events[i:i + size])
                time.sleep(self.seconds / self.chunks)
        except BaseException as exc:  # reported by the test
            self.error = exc


def crash_env(phq_env, tmp_path, **extra):
    """Short transaction and session timeouts, so a killed member's partitions move on within seconds."""
    return pipeline_env(phq_env, tmp_path, PHQ_WORKER_SCORER="test_pipeline_support:hash_scorer",
                        PHQ_STREAM_TRANSACTION_TIMEOUT_MS=6000, PHQ_SESSION_TIMEOUT_MS=6000, **extra)


def assert_whole_transcripts(db_url: str, user_prefix: str, user_turns_per_session: int) -> None:
    """Session s's window holds the user turns of the user's sessions 0..s: no transcript state was lost."""
    for session_id, n_user_turns in db_rows(db_url, "SELECT trigger_session_id, n_user_turns FROM phq9_scores "
                                                    "WHERE user_id LIKE %s", (user_prefix + "%",)):
        assert n_user_turns == user_turns_per_session * (int(session_id.rsplit("-s", 1)[1]) + 1), session_id


def assert_published_once_by_id(settings, topic: str, expected: set, field: str | None) -> None:
    """Every row on the topic; a redelivered round may publish a row again, but only identical (same id)."""
    by_id: dict[int, set[bytes]] = {}
    for msg in read_topic(settings, topic):
        by_id.setdefault(json.loads(msg.value())["id"], set()).add(msg.value())
    assert all(len(copies) == 1 for copies in by_id.values()), "copies of a row are identical"
    rows = [json.loads(next(iter(copies))) for copies in by_id.values()]
    if field:
        assert {row[field] for row in rows} == expected
    else:
        assert len(rows) == len(expected)
