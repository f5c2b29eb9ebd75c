"""cache generations and their triggers

Revision ID: 20261123_0003
Revises: 20261123_0002
Create Date: 2026-11-23 08:05:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wharf.core.data.generations import create_trigger_sql, drop_trigger_sql

revision: str = "20261123_0003"
down_revision: str | None = "20261123_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUPS = {
    "accounts": ("users", "api_tokens"),
    "crm": ("companies", "customers", "notes"),
}


def upgrade() -> None:
    table = op.create_table(
        "cache_generations",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cache_generations")),
    )
    # A random start: a database dropped and migrated again must not reach cache entries made
    # for its previous life (Redis outlives it).
    op.bulk_insert(table, [{"name": group, "n": secrets.randbits(48)} for group in GROUPS])
    dialect = op.get_bind().dialect.name
    for group, tables in GROUPS.items():
        for name in tables:
            for statement in create_trigger_sql(dialect, name, group):
                op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for tables in GROUPS.values():
        for name in tables:
            for statement in drop_trigger_sql(dialect, name):
                op.execute(statement)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS wharf_bump_generation()")
    op.drop_table("cache_generations")
