"""Sales files for tests: lines from (customer, products) pairs."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

import orjson

Transaction = tuple[int, list[int]]


def ndjson(transactions: Iterable[Transaction], *, extra: Iterable[str] = ()) -> bytes:
    lines = [orjson.dumps({"id": c, "products": p}).decode() for c, p in transactions]
    return ("\n".join([*lines, *extra]) + "\n").encode()


def write(
    folder: Path, name: str, transactions: Iterable[Transaction], *, zipped: bool = False
) -> Path:
    path = folder / name
    data = ndjson(transactions)
    path.write_bytes(gzip.compress(data) if zipped else data)
    return path


def counts(transactions: Iterable[Transaction]) -> dict[int, int]:
    """The expected units per product, computed plainly."""
    found: dict[int, int] = {}
    for _, products in transactions:
        for product in products:
            found[product] = found.get(product, 0) + 1
    return found
