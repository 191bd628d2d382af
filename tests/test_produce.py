"""`phq produce FILE.jsonl`: bad lines are reported by number and skipped; the rest all arrive."""

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from confluent_kafka import Consumer

from phq import topics

pytestmark = pytest.mark.integration


def consume_all(settings, topic, expected, timeout_s=30):
    consumer = Consumer({"bootstrap.servers": settings.kafka(), "group.id": f"{topic}-reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    import time

    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg)
    consumer.close()
    return got


def test_produce_skips_bad_lines_by_number_and_sends_the_rest(settings, phq_env, tmp_path):
    now = datetime.now(timezone.utc).isoformat()
    good = [{"schema_version": 1, "event_id": f"e{i}", "event_type": "session_start", "user_id": f"u{i % 3}",
             "session_id": f"s{i}", "ts": now} for i in range(5)]
    lines = [json.dumps(good[0]), "{oops", json.dumps(good[1]), json.dumps({**good[2], "turn": "3"}),
             json.dumps(good[2]), "", json.dumps(good[3]), json.dumps(good[4])]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")

    run = subprocess.run([sys.executable, "-m", "phq.cli", "produce", str(path)], env=phq_env(),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"{path}:2: skipped: event is not JSON" in run.stderr
    assert f"{path}:4: skipped:" in run.stderr and "turn" in run.stderr
    assert "sent 5 event(s)" in run.stderr and "skipped 2 bad line(s)" in run.stderr

    msgs = consume_all(settings, settings.topic(topics.CHAT_EVENTS), expected=5)
    assert sorted(json.loads(m.value())["event_id"] for m in msgs) == [f"e{i}" for i in range(5)]
    assert all(m.key().decode() == json.loads(m.value())["user_id"] for m in msgs)
