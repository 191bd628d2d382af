"""Items and evidence through the pipeline: the real stream processor and scoring worker (with the default
cold-start item model) write item scores that sum to the score, and evidence excerpts of the user's own
turns, to the real Postgres; the topics carry items but never message text; erasure and retention remove
excerpts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from test_pipeline_support import Proc, _event, db_rows, pipeline_env, produce, read_topic, wait_until

from phq import topics

pytestmark = pytest.mark.integration

SYMPTOMS = ["I was up till 4 again, I just lie awake", "honestly I feel like such a failure lately",
            "I have no energy, even showering wears me out"]
# recent, so the excerpts are within PHQ_EVIDENCE_RETENTION_DAYS (older ones are never written)
T0 = (datetime.now(timezone.utc) - timedelta(days=6)).replace(microsecond=0)
ECHO = "It sounds like you can't sleep and you feel like a failure. That must be hard."


def _user_events(user: str, texts: list[str], days: int) -> tuple[list[dict], list[str]]:
    events, user_event_ids = [], []
    for d in range(days):
        sid = f"{user}-s{d}"
        start = T0 + timedelta(days=d)
        events.append(_event(f"{sid}-start", "session_start", user, sid, start))
        text = texts[d % len(texts)]
        events.append(_event(f"{sid}-u", "message", user, sid, start + timedelta(minutes=1), role="user", turn=0, text=text))
        events.append(_event(f"{sid}-a", "message", user, sid, start + timedelta(minutes=2), role="assistant", turn=1, text=ECHO))
        events.append(_event(f"{sid}-end", "session_end", user, sid, start + timedelta(minutes=3)))
        user_event_ids.append(f"{sid}-u")
    return events, user_event_ids


def test_items_and_evidence_reach_postgres_and_no_text_reaches_the_topics(settings, db_url, phq_env, tmp_path):
    sad_events, sad_ids = _user_events("itm-sad", SYMPTOMS, 4)
    fine_events, _ = _user_events("itm-fine", ["we went to the park, the kids loved it", "cooked pasta tonight"], 2)
    produce(settings, sad_events + fine_events)
    env = pipeline_env(phq_env, tmp_path)
    procs = [Proc(["stream"], env, tmp_path / "stream.log"), Proc(["score-worker"], env, tmp_path / "worker.log")]
    try:
        wait_until(lambda: db_rows(db_url, "SELECT count(*) FROM phq9_scores WHERE user_id LIKE %s", ("itm-%",))[0][0] >= 6,
                   240, "six scores", procs)
    finally:
        for p in procs:
            p.stop()

    rows = db_rows(db_url, "SELECT id, user_id, score, items, model_version, trigger_session_id FROM phq9_scores "
                           "WHERE user_id LIKE %s ORDER BY user_id, scored_at", ("itm-%",))
    for _id, _user, score, items, version, _sid in rows:
        assert version.startswith("coldstart-")
        assert len(items) == 9 and all(0 <= v <= 3 for v in items)
        assert score == pytest.approx(sum(items), abs=1e-3)
    bounds = db_rows(db_url, "SELECT score_low, score_high, score FROM phq9_scores WHERE user_id LIKE %s", ("itm-%",))
    assert all(lo is not None and lo <= hi for lo, hi, _ in bounds), "the cold-start model is calibrated: every score has its interval"
    changes = db_rows(db_url, "SELECT delta, noise_bound FROM symptom_change_events WHERE user_id LIKE %s", ("itm-%",))
    assert all(bound is not None and abs(delta) >= bound for delta, bound in changes), "v2: only changes beyond noise"
    sad_last = [r for r in rows if r[1] == "itm-sad"][-1]
    fine_last = [r for r in rows if r[1] == "itm-fine"][-1]
    assert sad_last[2] > fine_last[2] + 2

    evidence = db_rows(db_url, "SELECT e.item, e.rank, e.event_id, e.excerpt FROM phq9_item_evidence e "
                               "WHERE e.score_id = %s ORDER BY item, rank", (sad_last[0],))
    assert {item for item, *_ in evidence} >= {3, 6}
    assert {event_id for _, _, event_id, _ in evidence} <= set(sad_ids)  # user turns only, never the echo
    assert all(len(excerpt) <= 200 for *_, excerpt in evidence)
    assert db_rows(db_url, "SELECT count(*) FROM phq9_item_evidence e JOIN phq9_scores s ON s.id = e.score_id "
                           "WHERE s.user_id = 'itm-fine'")[0][0] == 0

    published = [json.loads(m.value()) for m in read_topic(settings, topics.SCORES)]
    assert any(p["user_id"] == "itm-sad" and len(p["items"]) == 9 for p in published)
    raw = b"".join(m.value() for name in (topics.SCORES, topics.ALERTS) for m in read_topic(settings, name))
    for text in SYMPTOMS + [ECHO]:
        assert text[:20].encode() not in raw, "no message text on the output topics"
    logs = (tmp_path / "stream.log").read_text() + (tmp_path / "worker.log").read_text()
    assert not any(text[:20] in logs for text in SYMPTOMS + [ECHO]), "no message text in the logs"

    from care.erase import erase

    erase(settings, "itm-sad")
    assert db_rows(db_url, "SELECT count(*) FROM phq9_item_evidence e JOIN phq9_scores s ON s.id = e.score_id "
                           "WHERE s.user_id = 'itm-sad'")[0][0] == 0
    assert db_rows(db_url, "SELECT count(*) FROM phq9_item_evidence")[0][0] == 0


def test_excerpts_past_retention_are_never_written_and_are_purged(db_url, coldstart_model):
    from sqlalchemy import create_engine

    from phq.models import ScoringRequest, Turn
    from phq.settings import Settings
    from scoring.engine import Scorer
    from scoring.worker import evidence_rows, purge_evidence, score_row, store_scores

    now = datetime.now(timezone.utc)
    scorer = Scorer.load(coldstart_model)
    turns = [Turn(session_id="s-old", ts=now - timedelta(days=20), turn=0, role="user", text="I can't sleep at all", event_id="old"),
             Turn(session_id="s-new", ts=now - timedelta(days=2), turn=0, role="user", text="I feel so hopeless, nothing will ever get better", event_id="new")]
    request = ScoringRequest(request_id="ret-1", user_id="ret-user", trigger_session_id="s-new", trigger_ts=turns[1].ts, turns=turns)
    out = scorer.score([turns])[0]
    kept = evidence_rows(out, retention_days=10, now=now)
    assert {r["event_id"] for r in evidence_rows(out, retention_days=30, now=now)} == {"old", "new"}
    assert {r["event_id"] for r in kept} == {"new"}

    engine = create_engine(db_url)
    with engine.begin() as conn:
        store_scores(conn, [score_row(request, out, scorer.model_version)], Settings(),
                     evidence={"ret-1": evidence_rows(out, retention_days=30, now=now)})
    with engine.begin() as conn:
        assert purge_evidence(conn, retention_days=10) >= 1
    left = db_rows(db_url, "SELECT event_id FROM phq9_item_evidence")
    assert left and {e for (e,) in left} == {"new"}
