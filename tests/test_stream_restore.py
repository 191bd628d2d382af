"""A restarted stream processor with the in-memory store rebuilds every transcript from the changelog
alone (the RocksDB default resumes from its checkpoint instead; the kill -9 test covers that one)."""

from __future__ import annotations

import json

import pytest
from test_pipeline_support import Proc, make_traffic, pipeline_env, produce, read_topic, wait_until

pytestmark = pytest.mark.integration


def requests_by_session(settings) -> dict[str, dict]:
    return {r["trigger_session_id"]: r for r in
            (json.loads(m.value()) for m in read_topic(settings, "phq9.scoring.requests"))}


def test_memory_store_replays_the_changelog_after_kill9(settings, phq_env, tmp_path):
    traffic = make_traffic(10, sessions=2, turns=4, prefix="rst-")
    first = [e for e in traffic.events if e["session_id"].endswith("-s0")]
    second = [e for e in traffic.events if e["session_id"].endswith("-s1")]
    env = pipeline_env(phq_env, tmp_path, PHQ_STREAM_STORE="memory")
    stream = Proc(["stream"], env, tmp_path / "stream.log")
    try:
        produce(settings, first)
        wait_until(lambda: len(requests_by_session(settings)) >= 10, 60, "first sessions' requests", [stream])
        stream.kill9()
        stream.start()
        produce(settings, second)
        wait_until(lambda: len(requests_by_session(settings)) >= 20, 90, "second sessions' requests", [stream])
    finally:
        stream.stop()

    restored = [json.loads(line)["restored_records"] for line in stream.log().splitlines()
                if line.startswith("{") and '"partition assigned"' in line]
    assert sum(restored[3:]) > 0, "the restarted processor replayed the changelog"
    for session_id, request in requests_by_session(settings).items():
        sessions = {t["session_id"] for t in request["turns"]}
        if session_id.endswith("-s1"):
            assert sessions == {session_id[:-1] + "0", session_id}, "the window still holds the first session"
            assert len(request["turns"]) == 8
