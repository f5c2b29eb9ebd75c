from starlette.testclient import TestClient


def test_create_and_list_customers(client: TestClient) -> None:
    company = client.post("/api/v1/companies", json={"name": "Acme"}).json()
    created = client.post(
        "/api/v1/customers",
        json={"first_name": "Ada", "last_name": "Lovelace", "status": "active",
              "company_id": company["id"]},
    )
    assert created.status_code == 201, created.text
    listed = client.get("/api/v1/customers", params={"company_id": company["id"]}).json()
    assert listed["total"] == 1
    assert listed["items"][0]["last_name"] == "Lovelace"
