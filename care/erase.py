"""`phq erase USER_ID`: removes everything held about a user (CONTRACT section 5).

Order: publish the erasure to `phq.erasures` first, so every process starts ignoring the user's
older events, requests and alerts; then delete their rows in one Postgres transaction (which also
removes anything written while the processes caught up). What survives (the erasure record, audit
rows, the delivery log) keeps only the keyed hash of the id. Running it again is safe.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from confluent_kafka import KafkaException

from care import store
from phq.db import engine
from phq.erasures import publish_erasure
from phq.settings import Settings, get_settings


def erase(settings: Settings, user_id: str, when: datetime | None = None) -> dict[str, int]:
    """Publishes the erasure and deletes the user's rows; {table: rows deleted}."""
    when = when or datetime.now(timezone.utc)
    publish_erasure(settings, user_id, when)
    with engine(settings.db_url()).begin() as conn:
        return store.erase_user(conn, user_id, when)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phq erase", description="Remove everything held about a user.")
    parser.add_argument("user_id")
    args = parser.parse_args(argv)
    if not args.user_id or len(args.user_id) > 128 or not store.storable(args.user_id):
        print("phq erase: USER_ID must be 1..128 characters without NUL", file=sys.stderr)
        return 2
    try:
        deleted = erase(get_settings(), args.user_id)
    except KafkaException as exc:
        print(f"phq erase: could not publish to phq.erasures ({exc}); nothing was deleted: rerun when the "
              "broker is reachable", file=sys.stderr)
        return 1
    redacted = deleted.pop("care_audit_log", 0)
    counts = ", ".join(f"{table} {n}" for table, n in sorted(deleted.items()))
    print(f"erased user {args.user_id!r}: rows deleted: {counts}; audit rows keeping only a keyed hash: "
          f"{redacted}; published to phq.erasures")
    return 0
