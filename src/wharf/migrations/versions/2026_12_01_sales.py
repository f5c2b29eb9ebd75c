"""sales: daily counts per product and the ledger of ingested files

Revision ID: 20261201_0005
Revises: 20261201_0004
Create Date: 2026-12-01 18:30:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wharf.core.data.generations import create_trigger_sql, drop_trigger_sql

revision: str = "20261201_0005"
down_revision: str | None = "20261201_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sales_daily",
        sa.Column("product_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("product_id", "day", name=op.f("pk_sales_daily")),
    )
    op.create_index("ix_sales_daily_day_product_id", "sales_daily", ["day", "product_id"])
    op.create_table(
        "sales_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("products", sa.Integer(), nullable=False),
        sa.Column("bad_lines", sa.BigInteger(), nullable=False),
        sa.Column("bad_line_sample", sa.JSON(), nullable=False),
        sa.Column("engine", sa.String(length=10), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("ingested_at", TZ, nullable=False),
        sa.Column("replaced_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales_files")),
    )
    op.create_index(
        "uq_sales_files_day_current",
        "sales_files",
        ["day"],
        unique=True,
        sqlite_where=sa.text("replaced_at IS NULL"),
        postgresql_where=sa.text("replaced_at IS NULL"),
    )
    op.create_index("ix_sales_files_sha256", "sales_files", ["sha256"])

    # The never-stale cache: every sales answer depends on the `sales` generation.
    op.execute(
        sa.text("INSERT INTO cache_generations (name, n) VALUES ('sales', :n)").bindparams(
            n=secrets.randbits(48)
        )
    )
    dialect = op.get_bind().dialect.name
    for table in ("sales_files", "sales_daily"):
        for statement in create_trigger_sql(dialect, table, "sales"):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in ("sales_files", "sales_daily"):
        for statement in drop_trigger_sql(dialect, table):
            op.execute(statement)
    op.execute("DELETE FROM cache_generations WHERE name = 'sales'")
    op.drop_table("sales_files")
    op.drop_table("sales_daily")
