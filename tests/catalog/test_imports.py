"""CSV imports over HTTP: background records, stable ids, sync, duplicates, a restart, and
files that go once no car shows them."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyvips  # type: ignore[import-untyped]
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.catalog.conftest import drain
from tests.catalog.imagefixtures import jpeg
from tests.catalog.webserver import Route, WebServer
from wharf.catalog.importer import IMPORT_JOB
from wharf.catalog.service import AVIF_JOB
from wharf.core.work import Worker, jobs
from wharf.core.work.models import Job

IMPORTS = "/api/v1/cars/imports"


def _post_csv(client: TestClient, text: str, **params: Any) -> dict[str, Any]:
    response = client.post(
        IMPORTS,
        content=text.encode(),
        headers={"Content-Type": "text/csv; charset=utf-8"},
        params=params,
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == response.json()["url"]
    record = dict(response.json())
    assert record["status"] == "running"
    return record


def _finished(client: TestClient, worker: Worker, record: dict[str, Any]) -> dict[str, Any]:
    drain(worker)
    done = client.get(f"{IMPORTS}/{record['id']}")
    assert done.headers["cache-control"] == "no-store"
    return dict(done.json())


def _cars(client: TestClient) -> dict[str, dict[str, Any]]:
    return {
        c["title"]: c for c in client.get("/api/v1/cars", params={"limit": 500}).json()["items"]
    }


def test_an_uploaded_csv_is_imported_in_the_background(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    one, two = web.image("/1.jpg", jpeg(1600, 1200)), web.image("/2.jpg", jpeg(200, 100, seed=2))
    text = (
        "\ufeffImage;TITLE;Extra;description\n"  # BOM, ';', any order and case, extra column
        f"{one};Item 1;x;Description 1\n"
        f"{two};Item 2;y;\n"
        ";Item 3;z;No picture\n"
    )
    record = _finished(client, worker, _post_csv(client, text))
    assert record["status"] == "done", record
    assert record["counts"]["created"] == 3
    assert record["counts"]["images_fetched"] == 2
    assert [e["row"] for e in record["report"]] == [2, 3, 4]
    cars = _cars(client)
    assert cars["Item 1"]["images"]["web"]["width"] == 1024
    assert cars["Item 2"]["images"]["web"]["width"] == 200  # never upscaled
    assert cars["Item 2"]["description"] is None
    assert cars["Item 3"]["image_url"] is None
    assert cars["Item 3"]["images"] is None
    # New cars are inserted in one batch: each row's report names its own car's id.
    assert {e["title"]: e["car_id"] for e in record["report"]} == {
        title: car["id"] for title, car in cars.items()
    }
    listed = client.get(IMPORTS).json()
    assert listed["items"][0]["id"] == record["id"]
    assert "report" not in listed["items"][0]


def test_a_csv_from_a_url(client: TestClient, web: WebServer, worker: Worker) -> None:
    image = web.image("/a.jpg", jpeg(300, 200))
    csv = web.add("/cars.csv", Route(body=f"title,image\nFrom URL,{image}\n".encode()))
    response = client.post(IMPORTS, json={"url": csv})
    assert response.status_code == 202
    record = _finished(client, worker, response.json())
    assert record["status"] == "done"
    assert record["source"] == csv
    assert _cars(client)["From URL"]["image_status"] == "ready"


def test_a_reimport_keeps_ids_and_sync_deletes_the_rest(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    image = web.image("/k.jpg", jpeg(500, 400))
    _finished(
        client, worker, _post_csv(client, f"title,description,image\nKeep,v1,{image}\nDrop,x,\n")
    )
    before = _cars(client)
    again = _finished(
        client,
        worker,
        _post_csv(client, f"title,description,image\nKeep,v2,{image}\nNew,n,\n", sync="true"),
    )
    assert (again["counts"]["updated"], again["counts"]["created"]) == (1, 1)
    assert again["counts"]["deleted"] == 1
    assert again["counts"]["images_kept"] == 1
    after = _cars(client)
    assert after["Keep"]["id"] == before["Keep"]["id"]
    assert after["Keep"]["description"] == "v2"
    assert after["Keep"]["version"] == before["Keep"]["version"] + 1
    assert after["Keep"]["images"] == before["Keep"]["images"]
    assert "Drop" not in after
    assert "New" in after
    assert web.hits["/k.jpg"] == 1  # the unchanged image was not downloaded again
    deleted = [e for e in again["report"] if e["action"] == "deleted"]
    assert deleted == [
        {"row": None, "title": "Drop", "action": "deleted", "car_id": before["Drop"]["id"]}
    ]


def test_without_sync_nothing_is_deleted(client: TestClient, worker: Worker) -> None:
    _finished(client, worker, _post_csv(client, "title\nA\nB\n"))
    record = _finished(client, worker, _post_csv(client, "title\nA\n"))
    assert record["counts"]["unchanged"] == 1
    assert record["counts"]["deleted"] == 0
    assert set(_cars(client)) == {"A", "B"}


def test_a_title_twice_the_later_row_wins(client: TestClient, worker: Worker) -> None:
    record = _finished(client, worker, _post_csv(client, "title,description\nT,first\nT,second\n"))
    assert _cars(client)["T"]["description"] == "second"
    assert {"row": 2, "action": "superseded", "by_row": 3} in record["report"]
    assert record["counts"]["superseded"] == 1
    assert record["counts"]["created"] == 1


def test_bad_rows_are_reported_and_the_others_go_on(client: TestClient, worker: Worker) -> None:
    record = _finished(
        client, worker, _post_csv(client, f"title,description\n,x\nOK,y\n{'L' * 201},z\n")
    )
    assert record["status"] == "done"
    skipped = {e["row"]: e["problems"][0] for e in record["report"] if e["action"] == "skipped"}
    assert skipped[2]["column"] == "title"
    assert "empty" in skipped[2]["reason"]
    assert skipped[4]["column"] == "title"
    assert "200" in skipped[4]["reason"]
    assert set(_cars(client)) == {"OK"}


def test_a_file_without_a_title_column_fails_and_changes_nothing(
    client: TestClient, worker: Worker
) -> None:
    _finished(client, worker, _post_csv(client, "title\nStays\n"))
    before = _cars(client)
    record = _finished(client, worker, _post_csv(client, "name,image\nX,\n", sync="true"))
    assert record["status"] == "failed"
    assert "title" in record["error"]
    assert "name" in record["error"]
    assert _cars(client) == before


def test_an_import_survives_the_worker_that_started_it(
    client: TestClient, engine: Engine, web: WebServer, worker: Worker
) -> None:
    image = web.image("/r.jpg", jpeg(640, 480))
    record = _post_csv(client, f"title,image\nRestarted,{image}\n")
    # A worker claims the job, then dies: its lease runs out without a result.
    dead = jobs.claim(engine, kinds=[IMPORT_JOB], owner="dead", lease=timedelta(0), limit=1)
    assert len(dead) == 1
    time.sleep(0.01)
    drain(worker)  # the survivor takes it over
    done = client.get(f"{IMPORTS}/{record['id']}").json()
    assert done["status"] == "done"
    assert _cars(client)["Restarted"]["image_status"] == "ready"


def test_a_long_import_keeps_its_lease(engine: Engine, worker: Worker) -> None:
    """The worker renews the leases of what it runs, so a long import is never taken over
    (and run twice) while its worker lives."""
    with engine.begin() as conn:
        job_id = jobs.enqueue(conn, IMPORT_JOB, {"import_id": 0})
    claimed = jobs.claim(
        engine, kinds=[IMPORT_JOB], owner=worker.owner, lease=timedelta(0), limit=1
    )
    assert [j.id for j in claimed] == [job_id]
    jobs.renew(engine, [job_id], owner=worker.owner, lease=timedelta(hours=1))
    assert jobs.claim(engine, kinds=[IMPORT_JOB], owner="other", lease=timedelta(0), limit=1) == []
    jobs.renew(engine, [job_id], owner="not-the-owner", lease=timedelta(0))  # changes nothing
    assert jobs.claim(engine, kinds=[IMPORT_JOB], owner="other", lease=timedelta(0), limit=1) == []


def test_deleting_a_car_removes_its_files_after_the_commit(
    client: TestClient, web: WebServer, worker: Worker, settings: Any
) -> None:
    shared = web.image("/s.jpg", jpeg(800, 600))
    _finished(client, worker, _post_csv(client, f"title,image\nOne,{shared}\nTwo,{shared}\n"))
    cars = _cars(client)
    assert cars["One"]["images"] == cars["Two"]["images"]  # one picture, stored once
    media: Path = settings.media_dir
    files = {p for p in media.rglob("*") if p.is_file()}
    assert len(files) == 7  # the original, and web and mobile in JPEG, WebP and AVIF
    assert client.delete(f"/api/v1/cars/{cars['One']['id']}").status_code == 204
    drain(worker)
    assert {p for p in media.rglob("*") if p.is_file()} == files  # Two still shows them
    assert client.delete(f"/api/v1/cars/{cars['Two']['id']}").status_code == 204
    drain(worker)
    assert [p for p in media.rglob("*") if p.is_file()] == []


def test_reads_after_an_import_are_never_stale(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    """The catalog group of the response cache: a list read before an import is not what a
    read after it gets."""
    first = client.get("/api/v1/cars/web")
    assert first.json()["total"] == 0
    assert client.get("/api/v1/cars/web").json() == first.json()  # a hit, same body
    image = web.image("/c.jpg", jpeg(300, 300))
    _finished(client, worker, _post_csv(client, f"title,image\nCached,{image}\n"))
    after = client.get("/api/v1/cars/web").json()
    assert after["total"] == 1
    assert after["items"][0]["image"].endswith(".jpg")


def test_avif_is_listed_only_once_its_job_has_made_it(
    client: TestClient, engine: Engine, web: WebServer, worker: Worker
) -> None:
    image = web.image("/av.jpg", jpeg(1600, 1200))
    record = _post_csv(client, f"title,image\nLater,{image}\n")
    imports_only = Worker(
        engine, [worker.handlers[IMPORT_JOB]], poll_seconds=0.01, lease_seconds=30
    )
    assert drain(imports_only) == 1
    assert client.get(f"{IMPORTS}/{record['id']}").json()["status"] == "done"
    with engine.connect() as conn:
        waiting = conn.execute(select(Job.kind, Job.state).where(Job.kind != IMPORT_JOB)).all()
    assert [tuple(j) for j in waiting] == [(AVIF_JOB, "pending")]
    before = _cars(client)["Later"]
    assert before["image_status"] == "ready"
    for variant in ("web", "mobile"):
        made = before["images"][variant]
        assert made["avif"] is None  # JPEG and WebP now, AVIF not yet
        for fmt in ("jpeg", "webp"):
            assert client.get(made[fmt]).status_code == 200

    assert drain(worker) == 1  # the AVIF job
    after = _cars(client)["Later"]
    assert after["version"] > before["version"]  # a new representation, a new ETag
    for variant, size in (("web", (1024, 768)), ("mobile", (320, 240))):
        made = after["images"][variant]
        assert {f: made[f] for f in ("jpeg", "webp")} == {
            f: before["images"][variant][f] for f in ("jpeg", "webp")
        }
        assert made["avif"].startswith("http://testserver/media/")
        assert made["avif"].endswith(".avif")
        served = client.get(made["avif"])
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/avif"
        decoded = pyvips.Image.new_from_buffer(served.content, "")
        assert (decoded.width, decoded.height) == size == (made["width"], made["height"])
