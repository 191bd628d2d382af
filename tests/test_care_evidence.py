"""Items and evidence for clinicians (CONTRACT v2 section 4): GET /v1/scores/{score_id}/evidence gives
the nine PHQ-9 items with the user's own words behind each, team-scoped and audited; trajectories
carry items and the calibrated interval; alerts carry the noise bound they exceeded."""

from __future__ import annotations

import pytest
from test_care_support import add_evidence, add_scores, bearer, build_world, client

from care import store
from phq.db import engine as make_engine
from phq.items import ITEMS

QUOTES = {2: ["i just feel so flat, nothing matters", "<b>down</b> again"], 3: ["up till 4 again"],
          9: ["sometimes i think everyone would be better off"]}


@pytest.fixture(scope="module")
def world(db_url):
    world = build_world(db_url, "evi")
    with make_engine(db_url).begin() as conn:
        team_a = store.principal(conn, world.tokens["A"]).team_id
        store.assign(conn, team_a, ["evi-items"])
        v1_scores = add_scores(conn, "evi-items", [6], model="v1-model")[0]
        scores, alerts = add_scores(conn, "evi-items", [6, 14.5], half_width=2.4, noise_bound=3.9)
        add_evidence(conn, scores[-1], QUOTES)
    world.users["A"].append("evi-items")
    world.scores = {"with_items": scores[-1], "without_items": v1_scores[0], "alerts": alerts}
    return world


@pytest.fixture(scope="module")
def api(world):
    with client(world) as c:
        yield c


def evidence(api, world, score_id, team="A"):
    return api.get(f"/v1/scores/{score_id}/evidence", headers=bearer(world.tokens[team]))


def test_evidence_lists_the_nine_items_with_quotes_in_rank_order(api, world):
    body = evidence(api, world, world.scores["with_items"]).json()
    assert [i["item"] for i in body["items"]] == list(range(1, 10))
    assert [i["label"] for i in body["items"]] == [i.label for i in ITEMS]
    assert sum(i["score"] for i in body["items"]) == pytest.approx(14.5, abs=1e-4)
    assert (body["score"], body["score_low"], body["score_high"]) == pytest.approx((14.5, 12.1, 16.9), abs=1e-4)
    by_item = {i["item"]: i for i in body["items"]}
    assert [q["excerpt"] for q in by_item[2]["evidence"]] == QUOTES[2], "rank order, text as written"
    assert [q["rank"] for q in by_item[2]["evidence"]] == [1, 2]
    assert set(by_item[3]["evidence"][0]) == {"rank", "event_id", "session_id", "ts", "excerpt", "weight"}
    assert by_item[1]["evidence"] == [] and by_item[9]["evidence"][0]["excerpt"] == QUOTES[9][0]


def test_a_score_without_items_still_lists_the_nine_items_without_scores(api, world):
    body = evidence(api, world, world.scores["without_items"]).json()
    assert len(body["items"]) == 9
    assert all(i["score"] is None and i["evidence"] == [] for i in body["items"])


def test_another_teams_score_is_a_404_exactly_like_a_missing_one(api, world):
    with make_engine(world.settings.db_url()).connect() as conn:
        theirs = conn.execute(store.select(store.phq9_scores.c.id).where(
            store.phq9_scores.c.user_id == world.users["B"][0])).scalars().first()
    other, missing = evidence(api, world, theirs), evidence(api, world, 9_000_000_000)
    assert other.status_code == missing.status_code == 404 and other.content == missing.content


def test_reading_evidence_is_audited_with_the_score(api, world):
    score_id = world.scores["with_items"]
    evidence(api, world, score_id)
    entry = api.get("/v1/audit", headers=bearer(world.tokens["A"])).json()["items"][0]
    assert {"action": "read_evidence", "user_id": "evi-items", "score_id": score_id,
            "outcome": "allowed"}.items() <= entry.items()


def test_trajectory_rows_carry_items_and_the_interval_and_alerts_the_noise_bound(api, world):
    scores = api.get("/v1/users/evi-items/trajectory", headers=bearer(world.tokens["A"])).json()["items"]
    by_id = {s["id"]: s for s in scores}
    v1, v2 = by_id[world.scores["without_items"]], by_id[world.scores["with_items"]]
    assert v1["items"] is None and v1["score_low"] is None and v1["score_high"] is None
    assert len(v2["items"]) == 9 and v2["score_high"] == pytest.approx(16.9, abs=1e-4)
    alerts = api.get("/v1/alerts", params={"status": "all", "user_id": "evi-items"},
                     headers=bearer(world.tokens["A"])).json()["items"]
    assert alerts and all(a["noise_bound"] == pytest.approx(3.9, abs=1e-4) for a in alerts)
