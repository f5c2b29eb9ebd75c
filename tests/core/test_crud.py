"""`crud.create_unique`: a writer that loses a race for a unique key gets the 409 that names
the winner, not a bare unique-index error. Only PostgreSQL has the race: SQLite's writers take
turns (BEGIN IMMEDIATE), so there the service's first look always finds the holder."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine

from tests.factories.test_lock_order import waiting_on_a_lock
from wharf.core.errors import Conflict
from wharf.crm import service as crm
from wharf.factories import service as factories
from wharf.sprockets import service as sprockets

DIMENSIONS = {"teeth": 5, "pitch_diameter": 6, "outside_diameter": 4, "pitch": 7}
CREATES: dict[str, Callable[[Connection], dict[str, Any]]] = {
    "sprocket type": lambda conn: sprockets.create_sprocket(conn, values=dict(DIMENSIONS)),
    "factory": lambda conn: factories.create_factory(conn, name="Plant Z"),
    "company": lambda conn: crm.create_company(conn, name="Racing Ltd"),
}


@pytest.mark.parametrize("kind", CREATES)
def test_the_loser_of_a_race_for_a_unique_key_is_told_who_holds_it(
    engine: Engine, kind: str
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writers take turns: no two can pass the first check together")
    create = CREATES[kind]
    lost: list[BaseException] = []

    def loser() -> None:
        try:
            with engine.begin() as conn:
                create(conn)
        except BaseException as exc:
            lost.append(exc)

    with engine.connect() as conn, conn.begin():
        winner = create(conn)  # not committed: the loser's look finds nothing yet
        racer = threading.Thread(target=loser)
        racer.start()
        deadline = time.monotonic() + 10
        while not waiting_on_a_lock(engine):  # the loser's insert waits on the winner's row
            assert time.monotonic() < deadline, "the second insert never waited"
            time.sleep(0.02)
    racer.join(10)
    assert len(lost) == 1, lost
    conflict = lost[0]
    assert isinstance(conflict, Conflict), conflict
    assert conflict.status == 409
    assert "concurrently" not in conflict.detail  # the named 409, not the bare one
    if kind == "sprocket type":
        assert conflict.extra == {"existing_id": winner["id"]}
    else:
        assert repr(winner["name"]) in conflict.detail
