"""Alembic environment: migrations run against PHQ_DATABASE_URL (or the dev Postgres)."""

from alembic import context
from sqlalchemy import create_engine, pool

from phq.settings import Settings

config = context.config
url = config.attributes.get("url") or Settings().db_url()


def run_migrations_offline() -> None:
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
