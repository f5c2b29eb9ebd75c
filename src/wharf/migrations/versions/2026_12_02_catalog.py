"""catalog: cars, their images, import records; the `catalog` cache generation

Revision ID: 20261202_0007
Revises: 20261201_0006
Create Date: 2026-12-02 01:30:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wharf.core.data.generations import create_trigger_sql, drop_trigger_sql

revision: str = "20261202_0007"
down_revision: str | None = "20261201_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
# Every table a cars answer reads. Import records are not cached (their routes say no-store).
BUMPING = ("cars", "car_images")


def upgrade() -> None:
    op.create_table(
        "car_images",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("original", sa.String(length=120), nullable=False),
        sa.Column("renditions", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_car_images")),
    )
    op.create_table(
        "cars",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("image_url", sa.Text(), nullable=True),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column("image_error", sa.Text(), nullable=True),
        sa.Column("image_pending", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["image_sha256"],
            ["car_images.sha256"],
            name=op.f("fk_cars_image_sha256_car_images"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cars")),
        sa.UniqueConstraint("title", name=op.f("uq_cars_title")),
    )
    op.create_index("ix_cars_created_at", "cars", ["created_at"])
    op.create_index(op.f("ix_cars_image_sha256"), "cars", ["image_sha256"])
    op.create_table(
        "car_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sync", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_car_imports_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_car_imports")),
    )
    op.create_index("ix_car_imports_created_at", "car_imports", ["created_at"])

    op.execute(
        sa.text("INSERT INTO cache_generations (name, n) VALUES ('catalog', :n)").bindparams(
            n=secrets.randbits(48)
        )
    )
    dialect = op.get_bind().dialect.name
    for table in BUMPING:
        for statement in create_trigger_sql(dialect, table, "catalog"):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in BUMPING:
        for statement in drop_trigger_sql(dialect, table):
            op.execute(statement)
    op.execute("DELETE FROM cache_generations WHERE name = 'catalog'")
    op.drop_table("car_imports")
    op.drop_table("cars")
    op.drop_table("car_images")
