"""Re-encrypting sealed columns under the keyring's current key (`wharf keys rewrap`).

Batches of rows commit one by one, each row updated only if it is still under the key it
was read under, so a rewrap can be stopped at any point, run again, or run twice at once,
and every row ends under the current key exactly once. Rows under a key the keyring lacks
are counted and left as they are: nothing is lost, and adding the key back lets a rerun
finish them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, func, select, update

from wharf.core.keys import Keyring, Sealed


@dataclass
class RewrapReport:
    rewrapped: int = 0
    missing: Counter[str] = field(default_factory=Counter)  # key id -> rows it still seals

    def add(self, other: RewrapReport) -> None:
        self.rewrapped += other.rewrapped
        self.missing.update(other.missing)


def rewrap(
    engine: Engine,
    keyring: Keyring,
    *,
    table: Table,
    key_column: str,
    blob_column: str,
    aad: Callable[[Any], bytes],
    batch: int = 500,
) -> RewrapReport:
    """Re-seal `blob_column` of every row of `table` not under the current key. `aad` gets
    the row (all its columns) and returns the associated data it was sealed with."""
    key: Column[Any] = table.c[key_column]
    ident: Column[Any] = table.c.id
    current, known = keyring.current_id, keyring.ids()
    report = RewrapReport()
    last = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                select(table)
                .where(key.is_not(None), key != current, key.in_(known), ident > last)
                .order_by(ident)
                .limit(batch)
            ).all()
            for row in rows:
                old = Sealed(row._mapping[key_column], row._mapping[blob_column])
                plain = keyring.open(old, aad=aad(row))
                new = keyring.seal(plain, aad=aad(row))
                report.rewrapped += conn.execute(
                    update(table)
                    .where(ident == row.id, key == old.key_id)
                    .values({key_column: new.key_id, blob_column: new.blob})
                ).rowcount
        if len(rows) < batch:
            break
        last = rows[-1].id
    with engine.connect() as conn:
        for key_id, count in conn.execute(
            select(key, func.count()).where(key.is_not(None), key.not_in(known)).group_by(key)
        ).all():
            report.missing[key_id] = count
    return report


def usage(conn: Connection, table: Table, key_column: str) -> Counter[str]:
    """How many rows of `table` each key id seals."""
    key: Column[Any] = table.c[key_column]
    rows = conn.execute(select(key, func.count()).where(key.is_not(None)).group_by(key)).all()
    return Counter({str(key_id): int(count) for key_id, count in rows})
