"""Sealed columns, and re-encrypting them under the keyring's current key (`wharf keys
rewrap`).

Every domain that seals values declares the column here (`declare_sealed`), so the rewrap
and the check before a key is removed (`usage`) cover all of them; a forgotten column would
let `wharf keys remove` drop a key that still seals data.

Batches of rows commit one by one, each row updated only if it still holds the very
ciphertext it was read with, so a rewrap can be stopped at any point, run again, or run
beside a server that writes new values, and never writes an old value back. Rows under a
key the keyring lacks are counted and left as they are: nothing is lost, and adding the key
back lets a rerun finish them. A row that does not decrypt (damaged) is named and skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, func, select, update

from wharf.core.keys import DecryptFailed, Keyring, Sealed


@dataclass(frozen=True)
class SealedColumn:
    """A column of sealed values: where its key id and ciphertext live, and the associated
    data a row's value was sealed with (given the row, all its columns)."""

    table: Table
    key_column: str
    blob_column: str
    aad: Callable[[Any], bytes]

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.blob_column}"


SEALED: list[SealedColumn] = []


def declare_sealed(
    table: Any, key_column: str, blob_column: str, aad: Callable[[Any], bytes]
) -> SealedColumn:
    column = SealedColumn(table, key_column, blob_column, aad)
    SEALED.append(column)
    return column


@dataclass
class RewrapReport:
    rewrapped: int = 0
    missing: Counter[str] = field(default_factory=Counter)  # key id -> values it still seals
    damaged: list[str] = field(default_factory=list)  # "table.column id N" that do not open

    def add(self, other: RewrapReport) -> None:
        self.rewrapped += other.rewrapped
        self.missing.update(other.missing)
        self.damaged.extend(other.damaged)


def rewrap(
    engine: Engine, keyring: Keyring, sealed: SealedColumn, *, batch: int = 500
) -> RewrapReport:
    """Re-seal every value of `sealed` that is not under the current key."""
    table = sealed.table
    key: Column[Any] = table.c[sealed.key_column]
    blob: Column[Any] = table.c[sealed.blob_column]
    ident: Column[Any] = table.c.id
    current, known = keyring.current_id, keyring.ids()
    report = RewrapReport()
    last = 0
    while True:
        with engine.connect() as conn:
            conn.execution_options(wharf_write=True)  # SQLite: no stale snapshot to write on
            with conn.begin():
                rows = conn.execute(
                    select(table)
                    .where(key.is_not(None), key != current, key.in_(known), ident > last)
                    .order_by(ident)
                    .limit(batch)
                ).all()
                for row in rows:
                    old = Sealed(row._mapping[sealed.key_column], row._mapping[sealed.blob_column])
                    try:
                        plain = keyring.open(old, aad=sealed.aad(row))
                    except DecryptFailed:
                        report.damaged.append(f"{sealed.name} id {row.id}")
                        continue
                    new = keyring.seal(plain, aad=sealed.aad(row))
                    report.rewrapped += conn.execute(
                        update(table)
                        .where(ident == row.id, key == old.key_id, blob == old.blob)
                        .values({sealed.key_column: new.key_id, sealed.blob_column: new.blob})
                    ).rowcount
        if len(rows) < batch:
            break
        last = rows[-1].id
    with engine.connect() as conn:
        for key_id, count in usage(conn, sealed).items():
            if key_id not in known:
                report.missing[key_id] += count
    return report


def rewrap_all(engine: Engine, keyring: Keyring, *, batch: int = 500) -> RewrapReport:
    report = RewrapReport()
    for sealed in SEALED:
        report.add(rewrap(engine, keyring, sealed, batch=batch))
    return report


def usage(conn: Connection, sealed: SealedColumn) -> Counter[str]:
    """How many values of `sealed` each key id seals."""
    key: Column[Any] = sealed.table.c[sealed.key_column]
    rows = conn.execute(select(key, func.count()).where(key.is_not(None)).group_by(key)).all()
    return Counter({str(key_id): int(count) for key_id, count in rows})


def usage_all(conn: Connection) -> Counter[str]:
    """How many stored values each key id seals, over every sealed column."""
    total: Counter[str] = Counter()
    for sealed in SEALED:
        total.update(usage(conn, sealed))
    return total
