"""The migrations build exactly the schema the models declare, on both databases: a table,
column, index or constraint added to one and not the other fails here, not in production."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from wharf.core.data.db import create_db_engine
from wharf.models import Base


def test_the_migrated_schema_is_the_models_schema(database_url: str) -> None:
    engine = create_db_engine(database_url)  # migrated by the fixture, as every test's is
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
