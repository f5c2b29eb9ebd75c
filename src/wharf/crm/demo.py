"""Demo data: 5 companies, 1,000 customers and a few thousand notes, the same every time."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Connection, func, insert, select

from wharf.core.data.db import utcnow
from wharf.crm.models import CUSTOMER_STATUSES, Company, Customer, Note

COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella", "Stark Industries"]
FIRST = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Barbara",
    "Ken",
    "Margaret",
    "Dennis",
    "Edsger",
    "Frances",
    "John",
    "Radia",
    "Tim",
    "Donald",
    "Hedy",
    "Katherine",
    "Niklaus",
    "Sophie",
]
LAST = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Liskov",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Dijkstra",
    "Allen",
    "Backus",
    "Perlman",
    "Berners-Lee",
    "Knuth",
    "Lamarr",
    "Johnson",
    "Wirth",
    "Wilson",
    "Kay",
    "McCarthy",
    "Shannon",
    "Hoare",
    "Lamport",
    "Codd",
]
NOTES = [
    "Called about renewal.",
    "Asked for a discount.",
    "Sent the new price list.",
    "Meeting booked for next week.",
    "Prefers email over phone.",
    "Signed the contract.",
    "Complained about delivery times.",
    "Interested in the premium plan.",
]


def load(conn: Connection, *, customers: int = 1000, seed: int = 0) -> bool:
    """Load the demo data into an empty CRM; returns False (and changes nothing) otherwise."""
    if conn.execute(select(func.count()).select_from(Company)).scalar_one():
        return False
    rng = random.Random(seed)  # noqa: S311 (repeatable demo data, not secrets)
    now = utcnow()
    stamp: dict[str, Any] = {"version": 1, "created_at": now, "updated_at": now}
    conn.execute(insert(Company), [{"name": name, **stamp} for name in COMPANIES])
    company_ids = list(conn.execute(select(Company.id).order_by(Company.id)).scalars())
    conn.execute(
        insert(Customer),
        [
            {
                "company_id": company_ids[i % len(company_ids)],
                "first_name": rng.choice(FIRST),
                "last_name": rng.choice(LAST),
                "status": rng.choice(CUSTOMER_STATUSES),
                **stamp,
            }
            for i in range(customers)
        ],
    )
    # Ordered: without it SQLite scans an index, and notes land on other customers than on
    # PostgreSQL, so the "same every time" data would differ between the two.
    customer_ids = list(conn.execute(select(Customer.id).order_by(Customer.id)).scalars())
    conn.execute(
        insert(Note),
        [
            {"customer_id": cid, "text": rng.choice(NOTES), **stamp}
            for cid in customer_ids
            for _ in range(rng.randint(1, 5))
        ],
    )
    return True
