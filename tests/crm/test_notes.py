"""Notes over HTTP: /notes, a customer's notes, cascading deletes, locking and scopes."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.conftest import ids, if_match
from tests.crm.conftest import CustomerFactory, Json, NoteFactory
from wharf.crm.models import Customer, Note

NOTES = "/api/v1/notes"


def note_url(note_id: int) -> str:
    return f"{NOTES}/{note_id}"


def customer_notes(customer_id: int) -> str:
    return f"/api/v1/customers/{customer_id}/notes"


def read(client: TestClient, note_id: int) -> Json:
    response = client.get(note_url(note_id))
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def notes_in_db(engine: Engine, customer_id: int) -> int:
    with engine.connect() as conn:
        counted: int = conn.execute(
            select(func.count()).select_from(Note).where(Note.customer_id == customer_id)
        ).scalar_one()
    return counted


# Create and read


def test_create_note_returns_every_field(client: TestClient, new_customer: CustomerFactory) -> None:
    customer = new_customer()

    response = client.post(NOTES, json={"customer_id": customer["id"], "text": "Signed."})

    assert response.status_code == 201, response.text
    note = response.json()
    assert set(note) == {"id", "url", "customer_id", "text", "version", "created_at", "updated_at"}
    assert note["url"] == f"http://testserver{NOTES}/{note['id']}"
    assert response.headers["Location"] == note["url"]
    assert response.headers["ETag"] == '"1"'
    assert (note["customer_id"], note["text"], note["version"]) == (customer["id"], "Signed.", 1)
    assert read(client, note["id"]) == note


def test_create_note_for_a_nonexistent_customer_is_422(client: TestClient) -> None:
    response = client.post(NOTES, json={"customer_id": 404, "text": "Nobody home."})

    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["loc"] == ["body", "customer_id"]
    assert "404" in problem["detail"]
    assert client.get(NOTES).json()["total"] == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"text": "No customer."}, {"customer_id": 1}, {"customer_id": 1, "text": ""}],
    ids=["empty", "no-customer", "no-text", "blank-text"],
)
def test_create_note_validation(
    client: TestClient, new_customer: CustomerFactory, body: Json
) -> None:
    new_customer()

    assert client.post(NOTES, json=body).status_code == 422
    assert client.get(NOTES).json()["total"] == 0


@pytest.mark.parametrize("field", ["id", "url", "version", "created_at", "author"])
def test_create_note_rejects_read_only_and_unknown_fields(
    client: TestClient, new_customer: CustomerFactory, field: str
) -> None:
    customer = new_customer()

    response = client.post(NOTES, json={"customer_id": customer["id"], "text": "x", field: 1})

    assert response.status_code == 422
    assert client.get(NOTES).json()["total"] == 0


def test_notes_filter_by_customer(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    ada = new_customer()
    alan = new_customer()
    first = new_note(ada["id"], "One")
    new_note(alan["id"], "Two")
    third = new_note(ada["id"], "Three")

    everything = client.get(NOTES).json()
    ada_only = client.get(NOTES, params={"customer_id": ada["id"]}).json()

    assert everything["total"] == 3
    assert ada_only["items"] == [first, third]
    assert ada_only["total"] == 2
    assert client.get(NOTES, params={"customer_id": 999}).json()["total"] == 0


def test_notes_search_and_ordering(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    customer = new_customer()
    renewal = new_note(customer["id"], "Called about RENEWAL.")
    new_note(customer["id"], "Asked for a discount.")
    renewal_again = new_note(customer["id"], "Renewal signed.")

    found = client.get(NOTES, params={"search": "renewal"}).json()
    newest_first = client.get(NOTES, params={"ordering": "-id"}).json()

    assert ids(found) == [renewal["id"], renewal_again["id"]]
    assert ids(newest_first) == sorted(ids(newest_first), reverse=True)
    assert client.get(NOTES, params={"ordering": "text"}).status_code == 422


def test_get_note_with_matching_if_none_match_is_304(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    note = new_note(new_customer()["id"])

    response = client.get(note_url(note["id"]), headers={"If-None-Match": '"1"'})

    assert response.status_code == 304


# A customer's notes


def test_customer_notes_lists_only_that_customer(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    ada = new_customer()
    alan = new_customer()
    mine = [new_note(ada["id"], f"Note {i}") for i in range(3)]
    new_note(alan["id"], "Not Ada's")

    response = client.get(customer_notes(ada["id"]))

    assert response.status_code == 200
    assert response.json()["items"] == mine
    assert response.json()["total"] == 3
    assert client.get(customer_notes(ada["id"]) + "/").json()["items"] == mine


def test_customer_notes_pagination(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    customer = new_customer()
    made = [new_note(customer["id"], f"Note {i}")["id"] for i in range(5)]

    first = client.get(customer_notes(customer["id"]), params={"limit": 2})
    second = client.get(first.json()["next"])

    assert ids(first.json()) == made[:2]
    assert ids(second.json()) == made[2:4]
    assert 'rel="next"' in first.headers["Link"]
    assert 'rel="prev"' in second.headers["Link"]


def test_post_to_customer_notes_creates_a_note(
    client: TestClient, new_customer: CustomerFactory
) -> None:
    customer = new_customer()

    response = client.post(customer_notes(customer["id"]), json={"text": "Prefers email."})

    assert response.status_code == 201, response.text
    note = response.json()
    assert note["customer_id"] == customer["id"]
    assert note["text"] == "Prefers email."
    assert note["version"] == 1
    assert response.headers["Location"] == f"http://testserver{NOTES}/{note['id']}"
    assert read(client, note["id"]) == note
    assert client.get(customer_notes(customer["id"])).json()["items"] == [note]


@pytest.mark.parametrize(
    "body",
    [{}, {"text": ""}, {"text": None}, {"text": "x", "customer_id": 1}, {"text": "x", "id": 5}],
    ids=["empty", "blank", "null", "customer-in-body", "id-in-body"],
)
def test_post_to_customer_notes_validation(
    client: TestClient, new_customer: CustomerFactory, body: Json
) -> None:
    customer = new_customer()

    assert client.post(customer_notes(customer["id"]), json=body).status_code == 422
    assert client.get(NOTES).json()["total"] == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_customer_notes_of_a_missing_customer_is_404(client: TestClient, method: str) -> None:
    response = client.request(method, customer_notes(999), json={"text": "Hello?"})

    assert response.status_code == 404
    assert response.json()["detail"] == "No customer 999."
    assert client.get(NOTES).json()["total"] == 0


# Deleting a customer takes its notes along


def test_deleting_a_customer_deletes_its_notes(
    client: TestClient, engine: Engine, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    doomed = new_customer()
    kept = new_customer()
    doomed_notes = [new_note(doomed["id"], f"Note {i}") for i in range(3)]
    kept_note = new_note(kept["id"], "Stays")
    assert notes_in_db(engine, doomed["id"]) == 3

    response = client.delete(f"/api/v1/customers/{doomed['id']}")

    assert response.status_code == 204
    for note in doomed_notes:
        assert client.get(note_url(note["id"])).status_code == 404
    assert client.get(NOTES, params={"customer_id": doomed["id"]}).json()["total"] == 0
    assert client.get(customer_notes(doomed["id"])).status_code == 404
    assert notes_in_db(engine, doomed["id"]) == 0
    assert read(client, kept_note["id"]) == kept_note
    assert client.get(NOTES).json()["items"] == [kept_note]
    with engine.connect() as conn:
        assert conn.execute(select(Customer.id)).scalars().all() == [kept["id"]]


def test_deleting_a_note_leaves_the_customer(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    customer = new_customer()
    note = new_note(customer["id"])

    assert client.delete(note_url(note["id"])).status_code == 204

    assert client.get(note_url(note["id"])).status_code == 404
    assert client.get(f"/api/v1/customers/{customer['id']}").json() == customer


# Changes and optimistic locking


def test_put_replaces_text_and_customer(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    ada = new_customer()
    alan = new_customer()
    note = new_note(ada["id"], "Old")

    response = client.put(
        note_url(note["id"]), json={"text": "New", "customer_id": alan["id"]}, headers=if_match(1)
    )

    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["text"], changed["customer_id"], changed["version"]) == ("New", alan["id"], 2)
    assert response.headers["ETag"] == '"2"'
    assert changed["created_at"] == note["created_at"]
    assert client.get(customer_notes(alan["id"])).json()["items"] == [changed]
    assert client.get(customer_notes(ada["id"])).json()["items"] == []


def test_patch_merges_text_only(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    customer = new_customer()
    note = new_note(customer["id"], "Old")

    response = client.patch(note_url(note["id"]), json={"text": "New", "version": 1})

    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed == note | {"text": "New", "version": 2, "updated_at": changed["updated_at"]}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_moving_a_note_to_a_nonexistent_customer_is_422(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory, method: str
) -> None:
    note = new_note(new_customer()["id"])

    response = client.request(
        method, note_url(note["id"]), json={"text": "x", "customer_id": 404}, headers=if_match(1)
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "customer_id"]
    assert read(client, note["id"]) == note


@pytest.mark.parametrize("field", ["text", "customer_id"])
def test_patch_to_null_is_422(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory, field: str
) -> None:
    note = new_note(new_customer()["id"])

    response = client.patch(note_url(note["id"]), json={field: None}, headers=if_match(1))

    assert response.status_code == 422
    assert read(client, note["id"]) == note


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_stale_if_match_is_412_and_changes_nothing(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory, method: str
) -> None:
    note = new_note(new_customer()["id"], "Old")
    client.patch(note_url(note["id"]), json={"text": "Newer"}, headers=if_match(1))
    before = read(client, note["id"])

    response = client.request(
        method,
        note_url(note["id"]),
        json={"text": "Lost", "customer_id": note["customer_id"]},
        headers=if_match(1),
    )

    assert response.status_code == 412
    assert read(client, note["id"]) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_stale_body_version_is_409_and_changes_nothing(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory, method: str
) -> None:
    note = new_note(new_customer()["id"], "Old")
    client.patch(note_url(note["id"]), json={"text": "Newer", "version": 1})
    before = read(client, note["id"])

    response = client.request(
        method,
        note_url(note["id"]),
        json={"text": "Lost", "customer_id": note["customer_id"], "version": 1},
    )

    assert response.status_code == 409
    assert read(client, note["id"]) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_write_without_a_version_is_428_and_changes_nothing(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory, method: str
) -> None:
    note = new_note(new_customer()["id"], "Old")

    response = client.request(
        method, note_url(note["id"]), json={"text": "Lost", "customer_id": note["customer_id"]}
    )

    assert response.status_code == 428
    assert read(client, note["id"]) == note


@pytest.mark.parametrize("field", ["id", "url", "created_at", "updated_at"])
def test_put_with_read_only_field_is_422(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory, field: str
) -> None:
    note = new_note(new_customer()["id"], "Old")

    response = client.put(
        note_url(note["id"]),
        json={"text": "New", "customer_id": note["customer_id"], "version": 1, field: note[field]},
    )

    assert response.status_code == 422
    assert read(client, note["id"]) == note


def test_delete_with_stale_if_match_is_412_and_keeps_it(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    note = new_note(new_customer()["id"], "Old")
    client.patch(note_url(note["id"]), json={"text": "Newer"}, headers=if_match(1))
    before = read(client, note["id"])

    response = client.delete(note_url(note["id"]), headers=if_match(1))

    assert response.status_code == 412
    assert read(client, note["id"]) == before


def test_delete_with_current_if_match(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    note = new_note(new_customer()["id"])

    response = client.delete(note_url(note["id"]), headers=if_match(1))

    assert response.status_code == 204
    assert client.get(note_url(note["id"])).status_code == 404


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", {"text": "x", "customer_id": 1}),
        ("PATCH", {"text": "x"}),
        ("DELETE", None),
    ],
)
def test_missing_note_is_404(
    client: TestClient, new_customer: CustomerFactory, method: str, body: Json | None
) -> None:
    new_customer()

    response = client.request(method, note_url(999), json=body, headers=if_match(1))

    assert response.status_code == 404
    assert response.json()["detail"] == "No note 999."


# Auth


def test_read_only_token_can_read_but_not_write(
    client: TestClient,
    new_customer: CustomerFactory,
    new_note: NoteFactory,
    read_only: dict[str, str],
) -> None:
    customer = new_customer()
    note = new_note(customer["id"])
    url = note_url(note["id"])

    assert client.get(NOTES, headers=read_only).json()["items"] == [note]
    assert client.get(url, headers=read_only).json() == note
    assert client.get(customer_notes(customer["id"]), headers=read_only).status_code == 200
    writes = [
        client.post(NOTES, json={"customer_id": customer["id"], "text": "x"}, headers=read_only),
        client.post(customer_notes(customer["id"]), json={"text": "x"}, headers=read_only),
        client.put(
            url, json={"text": "x", "customer_id": customer["id"], "version": 1}, headers=read_only
        ),
        client.patch(url, json={"text": "x", "version": 1}, headers=read_only),
        client.delete(url, headers=read_only),
    ]

    assert [r.status_code for r in writes] == [403] * 5
    assert client.get(NOTES).json()["items"] == [note]


def test_no_token_is_401(anon: TestClient) -> None:
    for method, path in [
        ("GET", NOTES),
        ("POST", NOTES),
        ("GET", note_url(1)),
        ("PUT", note_url(1)),
        ("PATCH", note_url(1)),
        ("DELETE", note_url(1)),
        ("GET", customer_notes(1)),
        ("POST", customer_notes(1)),
    ]:
        response = anon.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


# Which error wins: a missing row (404), then a stale version, then the body's own problems.


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_missing_note_is_404_even_with_a_nonexistent_customer(
    client: TestClient, method: str
) -> None:
    response = client.request(
        method, note_url(999), json={"text": "x", "customer_id": 404}, headers=if_match(1)
    )

    assert response.status_code == 404
    assert response.json()["detail"] == "No note 999."


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_stale_body_version_wins_over_a_nonexistent_customer(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory, method: str
) -> None:
    note = new_note(new_customer()["id"], "Old")
    client.patch(note_url(note["id"]), json={"text": "Newer"}, headers=if_match(1))
    before = read(client, note["id"])

    response = client.request(
        method, note_url(note["id"]), json={"text": "x", "customer_id": 404, "version": 1}
    )

    assert response.status_code == 409
    assert read(client, note["id"]) == before
