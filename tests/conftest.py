"""Shared fixtures: the real Kafka broker and PostgreSQL that `phq dev up` runs.

Every test module gets its own freshly migrated database and every test its own topic prefix, so tests
pass whether or not the demo (or another run) used the same services before.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from phq.settings import Settings


@pytest.fixture(scope="session")
def dev_services() -> dict:
    """Start (or find) the dev Kafka and PostgreSQL; a no-op when they already run."""
    from phq import devservices

    return devservices.up(Settings())


@pytest.fixture(scope="session")
def kafka_bootstrap(dev_services) -> str:
    return dev_services["kafka_bootstrap"]


def _admin(url):
    from sqlalchemy.engine import make_url

    base = make_url(url)
    return base, dict(host=base.host, port=base.port, user=base.username, dbname=base.database, autocommit=True)


@pytest.fixture(scope="session")
def migrated_template(dev_services) -> Iterator[str]:
    """One migrated database per test run; each test module gets a copy of it."""
    import psycopg

    from phq.db import migrate

    base, admin = _admin(dev_services["database_url"])
    name = f"phq_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(base.set(database=name).render_as_string(hide_password=False))
    yield name
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def db_url(dev_services, migrated_template) -> Iterator[str]:
    """A fresh, migrated database for this test module (a copy of the template), dropped afterwards."""
    import psycopg

    base, admin = _admin(dev_services["database_url"])
    name = f"{migrated_template}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    yield base.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def settings(kafka_bootstrap, db_url, topic_prefix, tmp_path) -> Settings:
    """Settings pointing at the real services, with this test's own topics (created) and dirs."""
    from phq.kafka_admin import ensure_topics

    s = Settings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=db_url,
        topic_prefix=topic_prefix,
        partitions=3,
        model_dir=str(tmp_path / "models"),
        dev_dir=Settings().dev_dir,
    )
    ensure_topics(s)
    return s


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a `phq` subprocess needs to see the same settings."""
    from pydantic import SecretStr

    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[f"PHQ_{name.upper()}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    env.update({k: str(v) for k, v in extra.items()})
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@pytest.fixture
def phq_env(settings):
    return lambda **extra: env_for(settings, **extra)


@pytest.fixture(scope="session")
def coldstart_model(tmp_path_factory):
    """The cold-start item model directory (built once per machine in the shared cache, as serving does)."""
    from scoring.engine import coldstart_dir
    from scoring.coldstart import build_coldstart

    return build_coldstart(coldstart_dir(str(tmp_path_factory.mktemp("models"))))
