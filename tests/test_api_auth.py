"""Access control: bearer tokens, admin vs group tokens, isolation both ways, insecure mode."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from autoscaler.api import create_app
from autoscaler.errors import ConfigError
from autoscaler.settings import Settings
from autoscaler.store import Store
from tests.db_fixtures import ADMIN_TOKEN, ClientFactory
from tests.test_api_clusters import body
from tests.test_store import spec

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/clusters", None),
    ("POST", "/clusters", body()),
    ("GET", "/clusters/alpha", None),
    ("PATCH", "/clusters/alpha", {"tier": 1}),
    ("DELETE", "/clusters/alpha", None),
    ("GET", "/pool", None),
    ("PUT", "/pool", {"capacity": {"cpu": 1}}),
    ("GET", "/allocations", None),
    ("GET", "/allocations/history?cluster=alpha", None),
    ("POST", "/tokens", {"group": "g"}),
    ("DELETE", "/tokens/g", None),
]


async def make_token(api: httpx.AsyncClient, group: str) -> str:
    response = await api.post("/tokens", json={"group": group})
    assert response.status_code == 201, response.text
    assert response.json()["group"] == group
    token: str = response.json()["token"]
    return token


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong",
        f"Basic {ADMIN_TOKEN}",
        f"Bearer {ADMIN_TOKEN}x",
        f"bearer  {ADMIN_TOKEN} x",
        "Bearer " + "x" * 5000,
        "Bearer caf\u00e9",
    ],
)
async def test_every_call_needs_a_valid_token(
    api_client_factory: ClientFactory, store: Store, authorization: str | None
) -> None:
    headers = {} if authorization is None else {b"Authorization": authorization.encode()}
    store.create_cluster(spec("alpha"))  # a cluster to read, change and delete
    client = api_client_factory(None)
    for method, path, payload in ENDPOINTS:
        response = await client.request(method, path, json=payload, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    assert [c.name for c in store.list_clusters()] == ["alpha"]
    assert store.get_pool() is None


async def test_health_and_openapi_need_no_token(api_client_factory: ClientFactory) -> None:
    client = api_client_factory(None)
    health = await client.get("http://testserver/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    document = (await client.get("http://testserver/openapi.json")).json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def test_group_tokens_are_isolated_both_ways(
    api: httpx.AsyncClient, api_client_factory: ClientFactory, store: Store
) -> None:
    a = api_client_factory(await make_token(api, "customer-a"))
    b = api_client_factory(await make_token(api, "customer-b"))

    created = await a.post("/clusters", json=body("a1"))
    assert created.status_code == 201 and created.json()["group"] == "customer-a"
    assert (await a.post("/clusters", json=body("a2", group="customer-a"))).status_code == 201
    assert (await b.post("/clusters", json=body("b1"))).json()["group"] == "customer-b"
    assert (await api.post("/clusters", json=body("admin1"))).json()["group"] == "default"

    for mine, own, other in [(a, "a1", "b1"), (b, "b1", "a1")]:
        assert (await mine.get(f"/clusters/{own}")).status_code == 200
        for response in [
            await mine.get(f"/clusters/{other}"),
            await mine.patch(f"/clusters/{other}", json={"tier": 2}),
            await mine.delete(f"/clusters/{other}"),
            await mine.get(f"/allocations/history?cluster={other}"),
            await mine.get("/clusters/admin1"),
        ]:
            assert response.status_code == 404, response.text
        names = [c["name"] for c in (await mine.get("/clusters")).json()]
        assert other not in names and "admin1" not in names and own in names
        other_group = "customer-b" if mine is a else "customer-a"
        assert (await mine.get(f"/clusters?group={other_group}")).json() == []
        assert (await mine.get(f"/allocations?group={other_group}")).json() == []

    before = store.list_clusters()
    forbidden = [
        await a.post("/clusters", json=body("a3", group="customer-b")),
        await a.patch("/clusters/a1", json={"group": "customer-b"}),
        await a.put("/pool", json={"capacity": {"cpu": 1}}),
        await a.post("/tokens", json={"group": "customer-a"}),
        await a.delete("/tokens/customer-b"),
    ]
    for response in forbidden:
        assert response.status_code == 403, response.text
        assert response.json()["detail"]
    assert store.list_clusters() == before
    assert store.get_pool() is None

    assert (await a.get("/pool")).status_code == 200
    assert (
        await a.patch("/clusters/a1", json={"group": "customer-a", "tier": 1})
    ).status_code == 200
    assert (await a.delete("/clusters/a2")).status_code == 204
    assert {c.name for c in store.list_clusters()} == {"a1", "b1", "admin1"}

    # the admin sees everything and may move a cluster to another group
    assert len((await api.get("/clusters")).json()) == 3
    moved = await api.patch("/clusters/a1", json={"group": "customer-b"})
    assert moved.status_code == 200 and moved.json()["group"] == "customer-b"
    assert (await a.get("/clusters/a1")).status_code == 404
    assert (await b.get("/clusters/a1")).status_code == 200


async def test_revoked_tokens_stop_working(
    api: httpx.AsyncClient, api_client_factory: ClientFactory
) -> None:
    token = await make_token(api, "customer-a")
    client = api_client_factory(token)
    assert (await client.get("/clusters")).status_code == 200
    assert (await api.delete("/tokens/customer-a")).status_code == 204
    assert (await client.get("/clusters")).status_code == 401


@pytest.mark.parametrize("group", ["", "Customer A", "x" * 64, None, 5])
async def test_bad_token_group_is_422(api: httpx.AsyncClient, group: Any) -> None:
    assert (await api.post("/tokens", json={"group": group})).status_code == 422


@pytest.mark.parametrize("token", [None, ""])
def test_no_admin_token_is_refused_unless_insecure(store: Store, token: str | None) -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        create_app(Settings(admin_token=token, insecure=False), store)


async def test_insecure_mode_acts_as_admin(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="autoscaler.api.app"):
        app = create_app(Settings(admin_token=None, insecure=True), store)
    assert "INSECURE" in caplog.text
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
        assert (await client.put("/pool", json={"capacity": {"cpu": 4}})).status_code == 200
        token = (await client.post("/tokens", json={"group": "g"})).json()["token"]
        assert store.token_group(token) == "g"
        created = await client.post("/clusters", json=body(worker={"cpu": 1}))
        assert created.status_code == 201, created.text


@pytest.mark.parametrize(
    "path",
    [
        "/clusters/al%00pha",
        "/clusters?group=%00",
        "/allocations?group=a%00",
        "/allocations/history?cluster=%00",
        "/clusters/Alpha",
    ],
)
async def test_malformed_names_in_urls_are_422(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 422, response.text
