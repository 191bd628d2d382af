"""Postgres access shared by every process: the engine and `phq migrate`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine

REPO_ROOT = Path(__file__).resolve().parent.parent


def engine(url: str, **kwargs) -> Engine:
    # hide_parameters: a failed statement's error (and so any log of it) never carries its values,
    # which can be user ids or evidence excerpts
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)


def safe_url(url: str) -> str:
    """The URL with its password masked, for anything printed or logged."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show nothing of it
        return "<unparseable database URL>"


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.attributes["url"] = url
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)
