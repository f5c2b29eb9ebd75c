"""The CRM list's query alone, in process: `listing.page` for one page of 50 customers with its
total, timed over 1,500 calls after the CRM demo data is loaded. No HTTP, so the database's
share of an uncached list shows on its own (run it before and after a change to compare).

    python -m bench.list_query sqlite:////tmp/lp.db
    python -m bench.list_query postgresql://postgres@127.0.0.1:5432/wharf_bench
"""

from __future__ import annotations

import sys
import time

from sqlalchemy import func, select

from wharf.core.data import listing
from wharf.core.data.db import create_db_engine
from wharf.core.data.migrate import upgrade
from wharf.core.data.pagination import Page
from wharf.crm import demo, service

CALLS = 1_500


def main() -> None:
    engine = create_db_engine(sys.argv[1])
    upgrade(engine)
    with engine.begin() as conn:
        if not conn.execute(select(func.count()).select_from(service.CUSTOMERS.model)).scalar():
            demo.load(conn)
    with engine.connect() as conn:
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(CALLS):
                items, total = listing.page(
                    conn,
                    service.CUSTOMERS,
                    equals={"company_id": 2, "status": "active"},
                    search=None,
                    ordering="-last_name",
                    page=Page(limit=50, offset=0),
                )
            spent = (time.perf_counter() - start) / CALLS * 1e6
            print(f"{spent:.0f} us a page ({len(items)} of {total})")


if __name__ == "__main__":
    main()
