"""The walking skeleton end to end: chat events on the real broker, `phq stream` and `phq score-worker`
as real processes, rows in the real Postgres."""

from __future__ import annotations

import pytest
from test_pipeline_support import (
    Proc,
    db_rows,
    make_traffic,
    pipeline_env,
    produce,
    score_counts,
    wait_until,
    with_duplicates,
)

pytestmark = pytest.mark.integration


def test_one_score_per_ended_session_and_none_for_an_open_one(settings, db_url, phq_env, tmp_path):
    traffic = make_traffic(24, sessions=2, turns=4, end_last=False, prefix="skel-")  # 24 ended sessions, 24 open ones
    produce(settings, with_duplicates(traffic.events, share=0.3))
    env = pipeline_env(phq_env, tmp_path)
    stream = Proc(["stream"], env, tmp_path / "stream.log")
    worker = Proc(["score-worker"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: len(score_counts(db_url, "skel-")) >= len(traffic.ended), 120, "a score per ended session",
                   [stream, worker])
    finally:
        codes = (stream.stop(), worker.stop())

    assert score_counts(db_url, "skel-") == {rid: 1 for rid in traffic.ended}
    open_ids = {sid for _, sid in traffic.open_sessions}
    scored_sessions = {row[0] for row in db_rows(db_url, "SELECT trigger_session_id FROM phq9_scores")}
    assert not scored_sessions & open_ids
    assert codes == (0, 0), "both processes exit cleanly on SIGTERM"
