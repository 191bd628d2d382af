"""The schema: one Alembic head, and tables that match CONTRACT section 3."""

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from phq.db import alembic_config
from phq.tables import metadata


def test_there_is_exactly_one_alembic_head():
    heads = ScriptDirectory.from_config(alembic_config("postgresql+psycopg://unused/x")).get_heads()
    assert len(heads) == 1, f"migrations have several heads {heads}: a new migration must revise the newest one"


def test_migrated_tables_have_the_contract_columns(db_url):
    inspector = inspect(create_engine(db_url))
    for table in ("phq9_scores", "symptom_change_events", "phq9_item_evidence"):
        migrated = {c["name"] for c in inspector.get_columns(table)}
        assert migrated == set(metadata.tables[table].columns.keys())


def test_scores_are_unique_per_request_and_model_version(db_url):
    inspector = inspect(create_engine(db_url))
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("phq9_scores")}
    assert ("request_id", "model_version") in uniques
    indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("phq9_scores")}
    assert ("user_id", "scored_at") in indexes
    change_uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("symptom_change_events")}
    assert ("score_id", "kind") in change_uniques
