"""The demo: the seed's files through the loader, and a year of readings every 30 s, with
rollups that agree with the readings. (How fast it loads is bench/factories.py's to say.)"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.factories.conftest import FACTORIES, chart
from wharf.factories import demo
from wharf.factories.models import DailyRollup, Factory, Reading

TODAY = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def test_the_demo_loads_a_year_and_only_once(client: TestClient, engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execution_options(wharf_write=True)
        with conn.begin():
            loaded = demo.load(conn, today=TODAY)

    assert loaded.demo_readings == 365 * 2880
    assert loaded.report["factories"]["created"] == 3
    assert loaded.report["sprocket_types"] == {"created": 1, "unchanged": 0, "duplicates": 2}
    with engine.connect() as conn:
        readings = conn.execute(
            select(func.count(), func.sum(Reading.actual), func.sum(Reading.goal)).where(
                Reading.factory_id == loaded.demo_factory_id
            )
        ).one()
        daily = conn.execute(
            select(
                func.sum(DailyRollup.readings),
                func.sum(DailyRollup.actual),
                func.sum(DailyRollup.goal),
            ).where(DailyRollup.factory_id == loaded.demo_factory_id)
        ).one()
    assert [int(v) for v in readings] == [int(v) for v in daily]

    year = chart(client, loaded.demo_factory_id, bucket="1d")
    assert year["points"] == 365
    midnight = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    assert (year["from"], year["to"]) == (midnight - 365 * 86400, midnight - 30 + 1)
    weeks = chart(client, loaded.demo_factory_id, bucket="1w")["sprocket_production_actual"]
    days = year["sprocket_production_actual"]
    assert sum(weeks) == sum(days)
    # The weekly rhythm shows: Sundays make less than Wednesdays.
    sundays = [
        a
        for t, a in zip(year["time"], days, strict=True)
        if datetime.fromtimestamp(t, UTC).weekday() == 6
    ]
    wednesdays = [
        a
        for t, a in zip(year["time"], days, strict=True)
        if datetime.fromtimestamp(t, UTC).weekday() == 2
    ]
    assert max(sundays) < min(wednesdays)
    assert (
        chart(client, loaded.demo_factory_id)["bucket"] == "1d"
    )  # a year fits 1,000 points only by day

    with engine.connect() as conn:
        conn.execution_options(wharf_write=True)
        with conn.begin():
            again = demo.load(conn, today=TODAY)
        count = conn.execute(select(func.count()).select_from(Factory)).scalar_one()
    assert again.demo_readings == 0
    assert again.demo_factory_id == loaded.demo_factory_id
    assert again.report["readings"] == {"created": 0, "unchanged": 60, "duplicates": 0}
    assert count == 4
    assert client.get(FACTORIES).json()["total"] == 4
