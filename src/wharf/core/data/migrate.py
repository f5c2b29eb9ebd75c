"""Alembic, driven from code: `wharf migrate` and the start-up schema check."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from wharf.core.errors import WharfError


class SchemaOutOfDate(WharfError):
    status, title = 503, "Database schema out of date"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "wharf:migrations")
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(slug)s")
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")


def check_schema(engine: Engine) -> None:
    """Refuse to serve a database whose schema is not at the code's head revision."""
    heads = set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current != heads:
        state = "not migrated" if not current else f"at revision {', '.join(sorted(current))}"
        raise SchemaOutOfDate(
            f"The database is {state}; this Wharf needs {', '.join(sorted(heads))}. "
            "Run `wharf migrate` (or `make run`) to bring it up to date."
        )
