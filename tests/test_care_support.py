"""Helpers for the care tests (no tests here): teams, tokens and scores written straight to Postgres,
and a two-team world that the API tests share. Imported by the tests/test_care_*.py modules."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, update

from care import store
from phq.db import engine as make_engine
from phq.models import severity
from phq.settings import Settings
from phq.tables import care_tokens, phq9_scores, symptom_change_events

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=timezone.utc)


def add_token(conn, team: int, label: str, expires_at=None, revoked=False) -> str:
    token_id, token = store.create_token(conn, team, label, expires_at)
    if revoked:
        conn.execute(update(care_tokens).where(care_tokens.c.id == token_id).values(revoked_at=T0))
    return token


def add_scores(conn, user_id: str, scores: list[float], start: datetime = T0, model: str = "m1",
               every: timedelta = timedelta(days=3)) -> tuple[list[int], list[int]]:
    """Writes scores as the scoring worker would, with change events for consecutive ones;
    returns (score ids, change-event ids)."""
    score_ids, event_ids = [], []
    for i, value in enumerate(scores):
        at = start + i * every
        score_ids.append(conn.execute(insert(phq9_scores).values(
            request_id=f"{user_id}-{model}-{i}", user_id=user_id, scored_at=at, window_start=at - timedelta(days=14),
            window_end=at, score=value, severity=severity(value), model_version=model, n_sessions=2,
            n_user_turns=10, n_tokens=400, trigger_session_id=f"s{i}",
        ).returning(phq9_scores.c.id)).scalar_one())
        if i:
            event_ids += add_change_events(conn, user_id, score_ids[-1], scores[i - 1], value, at)
    return score_ids, event_ids


def add_change_events(conn, user_id, score_id, previous, current, at) -> list[int]:
    delta = current - previous
    kinds = []
    if abs(delta) >= 5:
        kinds.append("reliable_change")
    if severity(previous) != severity(current):
        kinds.append("severity_band_change")
    return [conn.execute(insert(symptom_change_events).values(
        user_id=user_id, score_id=score_id, detected_at=at + timedelta(minutes=1), kind=kind,
        direction="worsening" if delta > 0 else "improvement", previous_score=previous, current_score=current,
        delta=delta, previous_severity=severity(previous), current_severity=severity(current),
    ).returning(symptom_change_events.c.id)).scalar_one() for kind in kinds]


@dataclass
class World:
    """Two teams, A and B, each with users, scores, alerts and every kind of token."""

    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)  # "A", "B", "A_expired", "A_revoked"
    users: dict[str, list[str]] = field(default_factory=dict)  # team -> user ids
    alerts: dict[str, list[int]] = field(default_factory=dict)  # team -> alert ids
    unassigned_user: str = ""


def build_world(db_url: str, tag: str) -> World:
    """A fresh two-team world; `tag` keeps its names apart from other modules' worlds in the same database."""
    world = World(Settings(database_url=db_url, topic_prefix=f"{tag}."))
    with make_engine(db_url).begin() as conn:
        for team_name, series in (("A", [[3, 9, 16], [12, 6]]), ("B", [[4, 14]])):
            team = store.create_team(conn, f"{tag}-{team_name}")
            world.tokens[team_name] = add_token(conn, team, f"dr-{team_name.lower()}")
            world.users[team_name], world.alerts[team_name] = [], []
            for i, scores in enumerate(series):
                user = f"{tag}-{team_name.lower()}{i}"
                store.assign(conn, team, [user])
                world.users[team_name].append(user)
                world.alerts[team_name] += add_scores(conn, user, scores)[1]
            if team_name == "A":
                world.tokens["A_expired"] = add_token(conn, team, "old", expires_at=T0)
                world.tokens["A_revoked"] = add_token(conn, team, "gone", revoked=True)
        world.unassigned_user = f"{tag}-nobody"
        add_scores(conn, world.unassigned_user, [5, 20])
    return world


def client(world: World):
    from fastapi.testclient import TestClient

    from care.api import create_app

    return TestClient(create_app(world.settings))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_phq(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phq.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def db_env(db_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PHQ_DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def world(db_url, request) -> World:
    return build_world(db_url, request.module.__name__.rsplit(".", 1)[-1].replace("test_care_", "")[:12])
