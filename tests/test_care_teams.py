"""`phq team` (CONTRACT section 5): teams, tokens printed once and stored hashed, revocation,
expiry, one team per user, webhooks with a secret shown once."""

from __future__ import annotations

from sqlalchemy import select
from test_care_support import bearer, client, db_env, run_phq

from care.tokens import token_hash
from phq.db import engine as make_engine
from phq.settings import Settings
from phq.tables import care_tokens


def phq(db_url, *args):
    return run_phq(list(args), db_env(db_url))


def test_a_team_is_set_up_and_its_token_opens_the_api(db_url):
    assert phq(db_url, "team", "create", "cli-ward").returncode == 0
    duplicate = phq(db_url, "team", "create", "cli-ward")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    issued = phq(db_url, "team", "token", "cli-ward", "--label", "Dr Who", "--expires", "30")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    token_id = int(issued.stdout.split("token id ")[1].split()[0])
    assert phq(db_url, "team", "assign", "cli-ward", "cli-u1", "cli-u2").returncode == 0

    with make_engine(db_url).connect() as conn:
        stored = conn.execute(select(care_tokens.c.token_hash).where(care_tokens.c.id == token_id)).scalar()
    assert stored == token_hash(token) and token not in stored

    world = type("W", (), {"settings": Settings(database_url=db_url)})
    with client(world) as api:
        me = api.get("/v1/me", headers=bearer(token)).json()
        assert (me["team"], me["label"]) == ("cli-ward", "Dr Who")
        users = api.get("/v1/users", headers=bearer(token)).json()["items"]
        assert {u["user_id"] for u in users} == {"cli-u1", "cli-u2"}
        listed = phq(db_url, "team", "tokens", "cli-ward").stdout
        assert "Dr Who" in listed and token not in listed
        assert phq(db_url, "team", "revoke", str(token_id)).returncode == 0
        assert api.get("/v1/me", headers=bearer(token)).status_code == 401


def test_a_user_is_in_at_most_one_team(db_url):
    for name in ("cli-one", "cli-two"):
        assert phq(db_url, "team", "create", name).returncode == 0
    assert phq(db_url, "team", "assign", "cli-one", "cli-shared").returncode == 0
    refused = phq(db_url, "team", "assign", "cli-two", "cli-new", "cli-shared")
    assert refused.returncode == 1 and "cli-shared" in refused.stderr and "cli-one" in refused.stderr
    assert phq(db_url, "team", "unassign", "cli-shared").returncode == 0
    assert phq(db_url, "team", "assign", "cli-two", "cli-new", "cli-shared").returncode == 0


def test_a_webhook_secret_is_shown_once_and_kept_until_rotated(db_url):
    assert phq(db_url, "team", "create", "cli-hook").returncode == 0
    first = phq(db_url, "team", "webhook", "cli-hook", "https://ehr.example/a")
    secret = first.stdout.strip().splitlines()[-1]
    assert first.returncode == 0 and secret.startswith("whsec_")
    again = phq(db_url, "team", "webhook", "cli-hook", "https://ehr.example/b")
    assert "unchanged" in again.stdout and secret not in again.stdout
    rotated = phq(db_url, "team", "webhook", "cli-hook", "https://ehr.example/b", "--rotate-secret")
    assert rotated.stdout.strip().splitlines()[-1] not in (secret, "")


def test_webhooks_are_https_and_http_only_on_loopback_with_the_flag(db_url):
    assert phq(db_url, "team", "create", "cli-plain").returncode == 0
    for url, flag, problem in [("ftp://example/x", "--allow-http", "https://"),
                               ("http://ehr.example/h", None, "--allow-http"),
                               ("http://ehr.example/h", "--allow-http", "loopback")]:
        refused = phq(db_url, "team", "webhook", "cli-plain", url, *([flag] if flag else []))
        assert refused.returncode == 1 and problem in refused.stderr, (url, refused.stderr)
    local = phq(db_url, "team", "webhook", "cli-plain", "http://127.0.0.1:9/a", "--allow-http")
    assert local.returncode == 0, local.stderr


def test_a_webhook_password_is_not_printed_back(db_url):
    assert phq(db_url, "team", "create", "cli-pw").returncode == 0
    out = phq(db_url, "team", "webhook", "cli-pw", "https://bot:hunter2@ehr.example/h?key=k3y")
    assert out.returncode == 0 and "hunter2" not in out.stdout + out.stderr and "k3y" not in out.stdout


def test_unknown_teams_and_tokens_are_clear_errors(db_url):
    missing = phq(db_url, "team", "token", "no-such-team", "--label", "x")
    assert missing.returncode == 1 and "phq team create no-such-team" in missing.stderr
    assert "no token with id" in phq(db_url, "team", "revoke", "999999").stderr
