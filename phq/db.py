"""Postgres access shared by every process: the engine and `phq migrate`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine

REPO_ROOT = Path(__file__).resolve().parent.parent


def engine(url: str, **kwargs) -> Engine:
    return create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.attributes["url"] = url
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)
