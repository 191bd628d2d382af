"""The authorisation matrix: for two teams, every endpoint with own, other-team and missing ids,
under no, bad, expired, revoked and valid tokens. Other-team ids answer exactly like missing ones."""

from __future__ import annotations

import statistics
import time

import pytest
from test_care_support import bearer, build_world, client

MISSING_ALERT = 9_000_000_000
TOKENS = ["none", "bad", "expired", "revoked", "valid"]
IDS = ["own", "other", "missing"]


@pytest.fixture(scope="module")
def world(db_url):
    return build_world(db_url, "authz")




@pytest.fixture(scope="module")
def api(world):
    with client(world) as c:
        yield c


def headers(world, token: str) -> dict[str, str]:
    return {
        "none": {},
        "bad": bearer("phq_not-a-real-token"),
        "expired": bearer(world.tokens["A_expired"]),
        "revoked": bearer(world.tokens["A_revoked"]),
        "valid": bearer(world.tokens["A"]),
    }[token]


def requests_for(world, ids: str) -> list[tuple[str, str]]:
    """(method, path) of every endpoint, with ids of team A's own, team B's, or none at all."""
    user = {"own": world.users["A"][0], "other": world.users["B"][0], "missing": "nobody-at-all"}[ids]
    alert = {"own": world.alerts["A"][1], "other": world.alerts["B"][0], "missing": MISSING_ALERT}[ids]
    return [
        ("GET", "/v1/me"),
        ("GET", "/v1/users"),
        ("GET", f"/v1/users/{user}/trajectory"),
        ("GET", f"/v1/alerts?status=all&user_id={user}"),
        ("POST", f"/v1/alerts/{alert}/acknowledge"),
        ("GET", "/v1/audit"),
    ]


@pytest.mark.parametrize("ids", IDS)
@pytest.mark.parametrize("token", TOKENS)
def test_authorisation_matrix(api, world, token, ids):
    for method, path in requests_for(world, ids):
        response = api.request(method, path, headers=headers(world, token))
        if token != "valid":
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
            continue
        with_id = "/trajectory" in path or "/acknowledge" in path
        expected = 404 if with_id and ids != "own" else 200
        assert response.status_code == expected, (method, path, response.text)
        if path.startswith("/v1/alerts?") and ids != "own":
            assert response.json()["items"] == []


def test_other_team_and_missing_ids_get_identical_404s(api, world):
    valid = headers(world, "valid")
    for (method, other), (_, missing) in zip(requests_for(world, "other"), requests_for(world, "missing")):
        a, b = api.request(method, other, headers=valid), api.request(method, missing, headers=valid)
        assert (a.status_code, a.content) == (b.status_code, b.content), other


def test_other_team_ids_take_no_measurably_longer_than_missing_ones(api, world):
    """Both run the same queries; a probe cannot tell them apart by time (medians within 5 ms)."""
    valid = headers(world, "valid")
    paths = {"other": f"/v1/users/{world.users['B'][0]}/trajectory", "missing": "/v1/users/nobody-at-all/trajectory"}
    samples: dict[str, list[float]] = {"other": [], "missing": []}
    for i in range(60):  # interleaved, so warm-up and background load fall on both alike
        for kind, path in paths.items():
            started = time.perf_counter()
            api.get(path, headers=valid)
            if i >= 10:
                samples[kind].append((time.perf_counter() - started) * 1000)
    other, missing = statistics.median(samples["other"]), statistics.median(samples["missing"])
    assert abs(other - missing) < 5, (other, missing)


def test_a_token_of_team_b_sees_only_team_b(api, world):
    users = api.get("/v1/users", headers=bearer(world.tokens["B"])).json()["items"]
    assert {u["user_id"] for u in users} >= set(world.users["B"])
    assert not {u["user_id"] for u in users} & set(world.users["A"])
    alerts = api.get("/v1/alerts?status=all", headers=bearer(world.tokens["B"])).json()["items"]
    assert {a["user_id"] for a in alerts} <= set(world.users["B"]) | {"fresh-user"}


def test_a_malformed_authorization_header_is_a_401(api):
    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "bearer x y"]:
        assert api.get("/v1/users", headers={"Authorization": value}).status_code == 401
