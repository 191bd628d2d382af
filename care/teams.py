"""`phq team`: care teams, their tokens, user assignments, webhooks and alert deliveries (CONTRACT
section 5).

A new token or webhook secret is printed once, alone on the last line; only its hash (token) or
the secret itself (needed to sign deliveries) is stored. Webhooks are https:// only, unless
--allow-http is given for a loopback host (local development).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone

from care import store
from care.webhooks import masked, url_problem
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
    webhook.add_argument("--allow-http", action="store_true",
                         help="accept an http:// URL on a loopback host (local development only)")
    deliveries = sub.add_parser("deliveries", help="list alert deliveries (newest first) and count them by state")
    deliveries.add_argument("team", nargs="?", help="only this team's (default: every team's)")
    deliveries.add_argument("--failed", action="store_true", help="only those that failed (dead-lettered)")
    deliveries.add_argument("--limit", type=int, default=100, help="rows to show (default %(default)s)")
    redeliver = sub.add_parser("redeliver", help="send deliveries again, with a fresh retry horizon")
    redeliver.add_argument("delivery_ids", nargs="*", type=int, metavar="DELIVERY_ID",
                           help="ids from `phq team deliveries`")
    redeliver.add_argument("--failed", action="store_true", help="every failed delivery (of --team)")
    redeliver.add_argument("--team", help="only this team's")
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
    problem = url_problem(args.url, args.allow_http)
    if problem is not None:
        return _fail(f"{problem}; got {masked(args.url)}")
    secret = store.set_webhook(conn, _team(conn, args.team), args.url, args.rotate_secret)
    if secret is None:
        print(f"webhook of team {args.team!r} set to {masked(args.url)}; signing secret unchanged")
    else:
        print(f"webhook of team {args.team!r} set to {masked(args.url)}; its signing secret is shown only now:")
        print(secret)
    return 0


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def deliveries(conn, args) -> int:
    team = _team(conn, args.team) if args.team else None
    states = ("failed",) if args.failed else ("pending", "delivered", "failed", "cancelled")
    rows = store.list_deliveries(conn, team, states, args.limit)
    print("id\talert\tteam\tstate\tattempts\tqueued\tlast attempt\tlast result")
    for r in rows:
        result = r["last_error"] or (f"HTTP {r['last_http_status']}" if r["last_http_status"] else "-")
        print(f"{r['id']}\t{r['alert_id']}\t{r['team']}\t{r['state']}\t{r['attempts']}\t{_when(r['created_at'])}"
              f"\t{_when(r['last_attempt_at'])}\t{result}")
    counts = store.count_deliveries(conn, team)
    print(", ".join(f"{state} {counts.get(state, 0)}" for state in ("pending", "delivered", "failed", "cancelled")),
          file=sys.stderr)
    return 0


def redeliver(conn, args) -> int:
    if bool(args.delivery_ids) == args.failed:
        return _fail("name DELIVERY_IDs or pass --failed (see `phq team deliveries --failed`)")
    team = _team(conn, args.team) if args.team else None
    queued = store.redeliver(conn, args.delivery_ids or None, team)
    missing = sorted(set(args.delivery_ids) - set(queued))
    if missing:
        return _fail(f"no delivery with id {', '.join(map(str, missing))}"
                     + (f" in team {args.team!r}" if args.team else "") + "; nothing was queued")
    print(f"queued {len(queued)} delivery(ies) again: {' '.join(map(str, queued)) or '-'}; "
          "a running `phq notify` sends them")
    return 0


COMMANDS = {"create": create, "token": token, "tokens": tokens, "revoke": revoke, "assign": assign,
            "unassign": unassign, "webhook": webhook, "deliveries": deliveries, "redeliver": redeliver}


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
