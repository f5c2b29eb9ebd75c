"""Named leases: at most one holder per name at a time, across processes and hosts.

A holder renews its lease well before it expires; if it dies, the lease runs out and another
worker takes it. Acquiring is one conditional UPDATE (or, the first time, an INSERT that
loses cleanly to a concurrent one), so two workers can never both believe they hold it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite

from wharf.core.data.db import utcnow
from wharf.core.work.models import Lease


def acquire_lease(conn: Connection, name: str, *, holder: str, ttl: timedelta) -> bool:
    """Take or renew the lease `name` for `ttl`; False while someone else holds it."""
    now = utcnow()
    renewed = conn.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
    ).rowcount
    if renewed:
        return True
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # RETURNING, not rowcount: psycopg counts a conflicting row that was not inserted.
    inserted = conn.execute(
        dialect.insert(Lease)
        .values(name=name, holder=holder, expires_at=now + ttl)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Lease.name)
    ).first()
    return inserted is not None


def release_lease(conn: Connection, name: str, *, holder: str) -> None:
    """Give the lease up at once (on shutdown), so another worker need not wait it out."""
    conn.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
