"""factories: factories, readings and their hourly and daily rollups; sprocket types

Revision ID: 20261201_0006
Revises: 20261201_0005
Create Date: 2026-12-01 22:10:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wharf.core.data.generations import create_trigger_sql, drop_trigger_sql

revision: str = "20261201_0006"
down_revision: str | None = "20261201_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
ROLLUPS = ("factory_rollups_hourly", "factory_rollups_daily")
# The `factories` generation is bumped by every table its answers read, so that no writer,
# the service or any other (a script, psql), can leave a stale answer in the cache.
# - PostgreSQL: the readings bump it too. Its triggers are statement-level, so that costs one
#   UPDATE per statement (one per COPY of a batch), whatever the number of rows.
# - SQLite has row triggers only: one on the readings would cost an UPDATE of the counter per
#   reading, a million for the demo's year. There the readings are append-only instead (an
#   UPDATE of one is refused by APPEND_ONLY), and every insert of readings goes with the
#   upserts of its hourly and daily rollups in the same transaction, which bump the
#   generation. A DELETE is not refused, so that deleting a factory still cascades to its
#   readings (the factories table bumps then); deleting single readings by hand would leave
#   the rollups wrong on either database.
BUMPING = ("factories", *ROLLUPS, "sprocket_types")
BUMPING_ON_POSTGRESQL = (*BUMPING, "factory_readings")
APPEND_ONLY = (
    "CREATE TRIGGER trg_factory_readings_append_only BEFORE UPDATE ON factory_readings "
    "BEGIN SELECT RAISE(ABORT, 'factory readings are append-only: append new times, or delete "
    "the factory'); END"
)


def _bumping(dialect: str) -> tuple[str, ...]:
    return BUMPING_ON_POSTGRESQL if dialect == "postgresql" else BUMPING


def upgrade() -> None:
    op.create_table(
        "factories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_factories")),
        sa.UniqueConstraint("name", name=op.f("uq_factories_name")),
    )
    op.create_table(
        "factory_readings",
        sa.Column("factory_id", sa.Integer(), nullable=False),
        sa.Column("time", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("actual", sa.BigInteger(), nullable=False),
        sa.Column("goal", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "actual >= 0 AND goal >= 0",
            name=op.f("ck_factory_readings_production_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["factory_id"],
            ["factories.id"],
            name=op.f("fk_factory_readings_factory_id_factories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("factory_id", "time", name=op.f("pk_factory_readings")),
        sqlite_with_rowid=False,
    )
    for table in ROLLUPS:
        op.create_table(
            table,
            sa.Column("factory_id", sa.Integer(), nullable=False),
            sa.Column("start", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("readings", sa.Integer(), nullable=False),
            sa.Column("actual", sa.BigInteger(), nullable=False),
            sa.Column("goal", sa.BigInteger(), nullable=False),
            sa.ForeignKeyConstraint(
                ["factory_id"],
                ["factories.id"],
                name=op.f(f"fk_{table}_factory_id_factories"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("factory_id", "start", name=op.f(f"pk_{table}")),
            sqlite_with_rowid=False,
        )
    op.create_table(
        "sprocket_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("teeth", sa.Integer(), nullable=False),
        sa.Column("pitch_diameter", sa.Integer(), nullable=False),
        sa.Column("outside_diameter", sa.Integer(), nullable=False),
        sa.Column("pitch", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint(
            "teeth > 0 AND pitch_diameter > 0 AND outside_diameter > 0 AND pitch > 0",
            name=op.f("ck_sprocket_types_dimensions_positive"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sprocket_types")),
        sa.UniqueConstraint(
            "teeth",
            "pitch_diameter",
            "outside_diameter",
            "pitch",
            name=op.f("uq_sprocket_types_dimensions"),
        ),
    )
    for column in ("pitch_diameter", "outside_diameter", "pitch"):
        op.create_index(f"ix_sprocket_types_{column}", "sprocket_types", [column])

    op.execute(
        sa.text("INSERT INTO cache_generations (name, n) VALUES ('factories', :n)").bindparams(
            n=secrets.randbits(48)
        )
    )
    dialect = op.get_bind().dialect.name
    for table in _bumping(dialect):
        for statement in create_trigger_sql(dialect, table, "factories"):
            op.execute(statement)
    if dialect == "sqlite":
        op.execute(APPEND_ONLY)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS trg_factory_readings_append_only")
    for table in _bumping(dialect):
        for statement in drop_trigger_sql(dialect, table):
            op.execute(statement)
    op.execute("DELETE FROM cache_generations WHERE name = 'factories'")
    op.drop_table("sprocket_types")
    for table in reversed(ROLLUPS):
        op.drop_table(table)
    op.drop_table("factory_readings")
    op.drop_table("factories")
