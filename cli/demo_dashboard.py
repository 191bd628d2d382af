"""The demo's last step: the care-team dashboard on the demo's users, with a team and a token made for
them, served until Ctrl-C (what a care team would see of the scores just printed)."""

from __future__ import annotations

import socket
import sys
from datetime import datetime, timedelta, timezone

from phq.settings import Settings


def demo_team(settings: Settings, user_ids: list[str], run: str) -> tuple[str, str]:
    """(team name, token): a team of the demo's synthetic users and a one-day token for it."""
    from care import store
    from phq.db import engine

    name = f"demo-{run} (synthetic data)"
    with engine(settings.db_url()).begin() as conn:
        team = store.create_team(conn, name)
        store.assign(conn, team, user_ids)
        _, token = store.create_token(conn, team, "demo clinician", datetime.now(timezone.utc) + timedelta(days=1))
    return name, token


def port_to_use(host: str, preferred: int) -> int:
    """PHQ_API_PORT when it is free, else any free port (a running `phq api` keeps its own)."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError(f"no free port on {host}")


def serve_dashboard(settings: Settings, user_ids: list[str], run: str) -> int:
    from care.api import create_app, serve

    team, token = demo_team(settings, user_ids, run)
    port = port_to_use(settings.api_host, settings.api_port)
    print(f"\nThe care-team dashboard for these {len(user_ids)} synthetic users (team {team!r}):")
    print(f"  open http://{settings.api_host}:{port}/ and paste this token (valid one day); Ctrl-C stops it:")
    print(token, flush=True)
    serve(create_app(settings), settings.api_host, port, "WARNING")
    print("phq demo: dashboard stopped", file=sys.stderr)
    return 0
