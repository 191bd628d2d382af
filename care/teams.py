"""`phq team`: care teams, their tokens, user assignments and webhooks (CONTRACT section 5).

A new token or webhook secret is printed once, alone on the last line; only its hash (token) or
the secret itself (needed to sign deliveries) is stored.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from care import store
from phq.db import engine
from phq.settings import get_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phq team", description="Manage care teams.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("create", help="create a team").add_argument("name")
    token = sub.add_parser("token", help="issue a token for a team (printed once)")
    token.add_argument("team")
    token.add_argument("--label", required=True, help="who holds the token, e.g. a clinician's name")
    token.add_argument("--expires", type=float, metavar="DAYS", help="expire after DAYS days (default: never)")
    sub.add_parser("tokens", help="list a team's tokens (never the tokens themselves)").add_argument("team")
    sub.add_parser("revoke", help="revoke a token by its id").add_argument("token_id", type=int)
    assign = sub.add_parser("assign", help="assign users to a team (a user is in at most one team)")
    assign.add_argument("team")
    assign.add_argument("user_ids", nargs="+", metavar="USER_ID")
    sub.add_parser("unassign", help="remove users from their team").add_argument("user_ids", nargs="+",
                                                                                 metavar="USER_ID")
    webhook = sub.add_parser("webhook", help="set the team's alert webhook URL (secret printed when new)")
    webhook.add_argument("team")
    webhook.add_argument("url")
    webhook.add_argument("--rotate-secret", action="store_true", help="issue a new signing secret")
    return parser


def _fail(message: str) -> int:
    print(f"phq team: {message}", file=sys.stderr)
    return 1


def _team(conn, name: str) -> int:
    team = store.team_id(conn, name)
    if team is None:
        raise LookupError(f"no team named {name!r}; create it with `phq team create {name}`")
    return team


def create(conn, args) -> int:
    team = store.create_team(conn, args.name)
    if team is None:
        return _fail(f"a team named {args.name!r} already exists")
    print(f"created team {args.name!r} (id {team})")
    return 0


def token(conn, args) -> int:
    if args.expires is not None and args.expires <= 0:
        return _fail("--expires must be a positive number of days")
    expires = datetime.now(timezone.utc) + timedelta(days=args.expires) if args.expires else None
    token_id, secret = store.create_token(conn, _team(conn, args.team), args.label, expires)
    print(f"token id {token_id} for team {args.team!r}, label {args.label!r}, "
          f"expires {expires.isoformat() if expires else 'never'}; it is shown only now:")
    print(secret)
    return 0


def tokens(conn, args) -> int:
    for row in store.list_tokens(conn, _team(conn, args.team)):
        state = "revoked" if row["revoked_at"] else "active"
        expires = row["expires_at"].isoformat() if row["expires_at"] else "never"
        print(f"{row['id']}\t{row['label']}\t{state}\texpires {expires}")
    return 0


def revoke(conn, args) -> int:
    if not store.revoke_token(conn, args.token_id):
        return _fail(f"no token with id {args.token_id}; `phq team tokens TEAM` lists them")
    print(f"revoked token {args.token_id}")
    return 0


def assign(conn, args) -> int:
    team = _team(conn, args.team)
    elsewhere = store.assignments_elsewhere(conn, team, args.user_ids)
    if elsewhere:
        taken = ", ".join(f"{u!r} (team {t!r})" for u, t in sorted(elsewhere.items()))
        return _fail(f"already assigned to another team: {taken}; `phq team unassign` them first")
    store.assign(conn, team, args.user_ids)
    print(f"assigned {len(set(args.user_ids))} user(s) to team {args.team!r}")
    return 0


def unassign(conn, args) -> int:
    print(f"unassigned {store.unassign(conn, args.user_ids)} user(s)")
    return 0


def webhook(conn, args) -> int:
    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return _fail(f"webhook URL must be http(s)://host/...; got {args.url!r}")
    secret = store.set_webhook(conn, _team(conn, args.team), args.url, args.rotate_secret)
    if secret is None:
        print(f"webhook of team {args.team!r} set to {args.url}; signing secret unchanged")
    else:
        print(f"webhook of team {args.team!r} set to {args.url}; its signing secret is shown only now:")
        print(secret)
    return 0


COMMANDS = {"create": create, "token": token, "tokens": tokens, "revoke": revoke, "assign": assign,
            "unassign": unassign, "webhook": webhook}


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if any("\x00" in v for v in argv):
        return _fail("arguments cannot contain NUL characters")
    try:
        with engine(get_settings().db_url()).connect() as conn:
            result = COMMANDS[args.command](conn, args)
            if result == 0:
                conn.commit()  # a refused command changes nothing
            return result
    except LookupError as exc:
        return _fail(str(exc))
