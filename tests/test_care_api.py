"""The care-team API (CONTRACT section 4): what a team sees, pagination, acknowledgement, audit."""

from __future__ import annotations

import pytest
from test_care_support import add_scores, bearer, build_world, client

from care import store
from phq.db import engine as make_engine


@pytest.fixture(scope="module")
def world(db_url):
    return build_world(db_url, "api")

@pytest.fixture(scope="module")
def api(world):
    with client(world) as c:
        yield c


def get(api, world, path, team="A", **params):
    return api.get(path, headers=bearer(world.tokens[team]), params=params)


def test_public_endpoints_need_no_token(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    assert "phq_api_requests" in api.get("/metrics").text
    assert "/v1/users" in api.get("/openapi.json").json()["paths"]
    page = api.get("/")
    assert page.status_code == 200 and "token" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_users_lists_only_the_team_with_latest_score_and_trend(api, world):
    items = get(api, world, "/v1/users").json()["items"]
    assert [u["user_id"] for u in items] == sorted(world.users["A"])
    first = next(u for u in items if u["user_id"] == world.users["A"][0])
    assert first["latest"]["score"] == 16 and first["latest"]["severity"] == "moderately_severe"
    assert first["previous_score"] == 9 and first["trend"] == 7
    assert first["open_alerts"] == 4 and first["open_worsening_alerts"] == 4


def test_trajectory_is_oldest_first_and_pages_with_a_cursor(api, world):
    user = world.users["A"][0]
    first = get(api, world, f"/v1/users/{user}/trajectory", limit=2).json()
    assert [s["score"] for s in first["items"]] == [3, 9] and first["next_cursor"]
    rest = get(api, world, f"/v1/users/{user}/trajectory", limit=2, cursor=first["next_cursor"]).json()
    assert [s["score"] for s in rest["items"]] == [16] and rest["next_cursor"] is None


def test_trajectory_filters_by_from_and_to(api, world):
    user = world.users["A"][0]
    all_ = get(api, world, f"/v1/users/{user}/trajectory").json()["items"]
    middle = all_[1]["scored_at"]
    only = get(api, world, f"/v1/users/{user}/trajectory", **{"from": middle, "to": middle}).json()["items"]
    assert [s["score"] for s in only] == [9]


def test_times_without_an_offset_are_a_400_naming_the_parameter(api, world):
    response = get(api, world, f"/v1/users/{world.users['A'][0]}/trajectory", to="2026-10-01T00:00:00")
    assert response.status_code == 400 and response.json()["detail"].startswith("query.to:")


def test_offsets_that_leave_the_calendar_or_the_clock_are_a_400_not_a_500(api, world):
    path = f"/v1/users/{world.users['A'][0]}/trajectory"
    for name, value in [("from", "0001-01-01T00:00:00+05:00"), ("to", "9999-12-31T23:59:59-05:00"),
                        ("from", "2026-10-01T00:00:00+25:00"), ("to", "2026-10-01T00:00:00+99:99")]:
        response = get(api, world, path, **{name: value})
        assert response.status_code == 400, (name, value, response.text)
        assert name in response.json()["detail"]
    since = get(api, world, "/v1/alerts", since="0001-01-01T00:00:00+00:01")
    assert since.status_code == 400 and "since" in since.json()["detail"]


def test_a_user_id_with_slashes_is_queryable(api, world):
    with make_engine(world.settings.db_url()).begin() as conn:
        team = store.principal(conn, world.tokens["A"]).team_id
        store.assign(conn, team, ["org/ward-3/u7", "trailing/"])
        add_scores(conn, "org/ward-3/u7", [4, 11])
        add_scores(conn, "trailing/", [2])
    encoded = get(api, world, "/v1/users/org%2Fward-3%2Fu7/trajectory").json()
    assert encoded["user_id"] == "org/ward-3/u7" and [s["score"] for s in encoded["items"]] == [4, 11]
    plain = get(api, world, "/v1/users/org/ward-3/u7/trajectory").json()
    assert plain["items"] == encoded["items"]
    assert get(api, world, "/v1/users/trailing%2F/trajectory").json()["user_id"] == "trailing/"
    assert get(api, world, "/v1/alerts", status="all", user_id="org/ward-3/u7").json()["items"]
    with make_engine(world.settings.db_url()).begin() as conn:
        store.unassign(conn, ["org/ward-3/u7", "trailing/"])


def test_a_tampered_cursor_is_a_400_with_a_clear_message(api, world):
    response = get(api, world, "/v1/users", cursor="bm90IGEgY3Vyc29y")
    assert response.status_code == 400 and "cursor" in response.json()["detail"]


def test_other_team_user_is_exactly_like_a_missing_one(api, world):
    other = get(api, world, f"/v1/users/{world.users['B'][0]}/trajectory")
    missing = get(api, world, "/v1/users/no-such-user/trajectory")
    unassigned = get(api, world, f"/v1/users/{world.unassigned_user}/trajectory")
    assert other.status_code == missing.status_code == unassigned.status_code == 404
    assert other.content == missing.content == unassigned.content


def test_alert_filters_by_status_since_and_user(api, world):
    all_ids = {a["id"] for a in get(api, world, "/v1/alerts", status="all").json()["items"]}
    assert all_ids == set(world.alerts["A"])
    one_user = get(api, world, "/v1/alerts", status="all", user_id=world.users["A"][1]).json()["items"]
    assert {a["user_id"] for a in one_user} == {world.users["A"][1]}
    later = get(api, world, "/v1/alerts", status="all", since="2026-10-05T00:00:00Z").json()["items"]
    assert later and all(a["detected_at"] >= "2026-10-05" for a in later)


def test_acknowledging_records_label_and_time_once(api, world):
    alert_id = world.alerts["A"][-1]
    first = api.post(f"/v1/alerts/{alert_id}/acknowledge", headers=bearer(world.tokens["A"])).json()
    assert first["changed"] is True and first["alert"]["acknowledged_by"] == "dr-a"
    again = api.post(f"/v1/alerts/{alert_id}/acknowledge", headers=bearer(world.tokens["A"])).json()
    assert again["changed"] is False and "already acknowledged" in again["message"]
    assert again["alert"]["acknowledged_at"] == first["alert"]["acknowledged_at"]
    open_ids = {a["id"] for a in get(api, world, "/v1/alerts", status="open").json()["items"]}
    acked = {a["id"] for a in get(api, world, "/v1/alerts", status="acknowledged").json()["items"]}
    assert alert_id in acked and alert_id not in open_ids


def test_reads_and_acknowledgements_are_audited_for_the_own_team_only(api, world):
    user = world.users["A"][1]
    get(api, world, f"/v1/users/{user}/trajectory")
    api.post(f"/v1/alerts/{world.alerts['A'][0]}/acknowledge", headers=bearer(world.tokens["A"]))
    entries = get(api, world, "/v1/audit", limit=500).json()["items"]
    assert {"action": "read_trajectory", "user_id": user, "token_label": "dr-a",
            "outcome": "allowed"}.items() <= entries[1].items()
    assert entries[0]["action"] == "acknowledge" and entries[0]["alert_id"] == world.alerts["A"][0]
    b_users = set(world.users["B"])
    assert not any(e["user_id"] in b_users for e in entries if e["outcome"] == "allowed")
    b_entries = get(api, world, "/v1/audit", team="B").json()["items"]
    assert all(e["user_id"] not in set(world.users["A"]) for e in b_entries)


def test_the_audit_log_is_append_only_in_the_database(world):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError, match="append-only"):
        with make_engine(world.settings.db_url()).begin() as conn:
            conn.execute(text("DELETE FROM care_audit_log"))


def test_sql_in_ids_and_parameters_is_just_a_string(api, world):
    for evil in ["x' OR '1'='1", "1; DROP TABLE phq9_scores; --", "%27%20OR%201=1--"]:
        assert get(api, world, f"/v1/users/{evil}/trajectory").status_code == 404
        assert get(api, world, "/v1/alerts", user_id=evil, status="all").json()["items"] == []
    assert get(api, world, "/v1/alerts", status="open' OR 1=1 --").status_code == 400
    assert get(api, world, "/v1/users/a%00b/trajectory").status_code == 404
    assert len(get(api, world, "/v1/users").json()["items"]) == len(world.users["A"])


def test_a_user_without_scores_is_listed_with_an_empty_trajectory(api, world):
    with make_engine(world.settings.db_url()).begin() as conn:
        team = store.principal(conn, world.tokens["B"]).team_id
        store.assign(conn, team, ["fresh-user"])
    listed = {u["user_id"]: u for u in get(api, world, "/v1/users", team="B").json()["items"]}
    assert listed["fresh-user"]["latest"] is None and listed["fresh-user"]["trend"] is None
    assert get(api, world, "/v1/users/fresh-user/trajectory", team="B").json()["items"] == []


def test_users_page_through_a_large_team(api, world):
    with make_engine(world.settings.db_url()).begin() as conn:
        team = store.principal(conn, world.tokens["B"]).team_id
        store.assign(conn, team, [f"bulk-{i:03d}" for i in range(25)])
        add_scores(conn, "bulk-000", [1, 2])
    seen, cursor = [], None
    while True:
        page = get(api, world, "/v1/users", team="B", limit=10, **({"cursor": cursor} if cursor else {})).json()
        seen += [u["user_id"] for u in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(seen) == len(set(seen)) and {f"bulk-{i:03d}" for i in range(25)} <= set(seen)


def test_migrated_care_tables_match_phq_tables(db_url):
    from sqlalchemy import create_engine, inspect

    from phq.tables import metadata

    inspector = inspect(create_engine(db_url))
    for table in ("care_teams", "care_tokens", "care_assignments", "care_audit_log", "care_webhooks",
                  "alert_deliveries", "alert_outbox", "erasures"):
        assert {c["name"] for c in inspector.get_columns(table)} == set(metadata.tables[table].columns.keys())
