"""``/api/v1/clusters`` over SQLite and PostgreSQL: the happy path and every kind of bad input."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from autoscaler.store import Store

GiB = 2**30


def body(name: str = "alpha", **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "scheduler_url": "http://127.0.0.1:8787",
        "backend": "local",
        "backend_options": {"scheduler_address": "tcp://127.0.0.1:8786"},
        "worker": {"cpu": 2, "memory": "16GiB"},
        **changes,
    }


def assert_rejected(response: httpx.Response, status: int, mentions: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail, response.text
    assert mentions in json.dumps(detail), detail


async def test_create_read_list_update_delete(api: httpx.AsyncClient, store: Store) -> None:
    created = await api.post("/clusters", json=body(maximum=8, weight=2, tier=1))
    assert created.status_code == 201, created.text
    expected = {
        "name": "alpha",
        "scheduler_url": "http://127.0.0.1:8787",
        "backend": "local",
        "backend_options": {"scheduler_address": "tcp://127.0.0.1:8786"},
        "worker": {"cpu": 2, "memory": 16 * GiB},
        "minimum": 0,
        "maximum": 8,
        "weight": 2.0,
        "tier": 1,
        "group": "default",
    }
    assert created.json() == expected
    assert store.get_cluster("alpha").worker == {"cpu": 2, "memory": 16 * GiB}
    assert (await api.get("/clusters/alpha")).json() == expected

    await api.post("/clusters", json=body("beta", group="team-b"))
    listed = await api.get("/clusters")
    assert [c["name"] for c in listed.json()] == ["alpha", "beta"]
    assert [c["name"] for c in (await api.get("/clusters?group=team-b")).json()] == ["beta"]
    assert [c["name"] for c in (await api.get("/clusters?tier=1")).json()] == ["alpha"]

    patched = await api.patch(
        "/clusters/alpha", json={"maximum": None, "minimum": 2, "worker": {"cpu": 0.5}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**expected, "maximum": None, "minimum": 2, "worker": {"cpu": 0.5}}
    assert store.get_cluster("alpha").maximum is None

    deleted = await api.delete("/clusters/alpha")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await api.get("/clusters/alpha")).status_code == 404
    assert (await api.delete("/clusters/alpha")).status_code == 404
    assert [c.name for c in store.list_clusters()] == ["beta"]


async def test_duplicate_name_is_409(api: httpx.AsyncClient, store: Store) -> None:
    assert (await api.post("/clusters", json=body())).status_code == 201
    again = await api.post("/clusters", json=body(scheduler_url="http://other:8787"))
    assert_rejected(again, 409, "alpha")
    assert store.get_cluster("alpha").scheduler_url == "http://127.0.0.1:8787"


BAD_FIELDS: list[tuple[str, Any]] = [
    ("name", ""),
    ("name", "Alpha"),
    ("name", "-alpha"),
    ("name", "al_pha"),
    ("name", "a" * 64),
    ("name", 5),
    ("name", None),
    ("scheduler_url", "ftp://127.0.0.1/"),
    ("scheduler_url", "127.0.0.1:8787"),
    ("scheduler_url", "http://"),
    ("scheduler_url", "http://[::1"),
    ("scheduler_url", "http://host:99999"),
    ("scheduler_url", "http://ho st:8787"),
    ("scheduler_url", "http://host:8787/\n"),
    ("scheduler_url", "http://h/" + "x" * 2048),
    ("scheduler_url", 8787),
    ("backend", "nope"),
    ("backend", ""),
    ("backend", 1),
    ("backend_options", {}),
    ("backend_options", {"scheduler_address": "http://127.0.0.1:8786"}),
    ("backend_options", {"scheduler_address": "tcp://127.0.0.1:8786", "bogus": 1}),
    ("backend_options", {"scheduler_address": "tcp://127.0.0.1:8786", "x": "y" * 20_000}),
    ("backend_options", "tcp://127.0.0.1:8786"),
    ("backend_options", {"scheduler_address": "tcp://["}),
    ("worker", {}),
    ("worker", {"gpu": 1}),
    ("worker", {"cpu": -1}),
    ("worker", {"cpu": "lots"}),
    ("worker", {"cpu": True}),
    ("worker", {"cpu": None}),
    ("worker", {"cpu": 0, "memory": 0}),
    ("worker", {"cpu": "1e30"}),
    ("worker", {"cpu": 1, "memory": "16GiB" * 10}),
    ("worker", {"bad name": 1}),
    ("worker", [2, "16GiB"]),
    ("minimum", -1),
    ("minimum", "1"),
    ("minimum", 1.5),
    ("minimum", True),
    ("minimum", 10**12),
    ("maximum", -1),
    ("maximum", "8"),
    ("weight", 0),
    ("weight", -1.0),
    ("weight", "1"),
    ("weight", 1e9),
    ("tier", -1),
    ("tier", 1.5),
    ("tier", "0"),
    ("tier", 10**6),
    ("group", "Customer A"),
    ("group", ""),
    ("group", 5),
    ("bogus", 1),
    *[(field, None) for field in ("scheduler_url", "backend", "backend_options", "worker")],
    *[(field, None) for field in ("minimum", "weight", "tier")],
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
async def test_bad_field_is_422_and_changes_nothing(
    api: httpx.AsyncClient, store: Store, field: str, value: Any
) -> None:
    await api.post("/clusters", json=body("existing"))
    before = store.list_clusters()
    response = await api.post("/clusters", json=body(**{field: value}))
    assert_rejected(response, 422, field)
    assert_rejected(await api.patch("/clusters/existing", json={field: value}), 422, field)
    assert store.list_clusters() == before


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b"null", b'{"name": "alpha"', json.dumps(body()).encode()[:-1]],
)
async def test_malformed_body_is_422(api: httpx.AsyncClient, store: Store, payload: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    response = await api.post("/clusters", content=payload, headers=headers)
    assert response.status_code == 422, response.text
    assert store.list_clusters() == []


async def test_minimum_above_maximum(api: httpx.AsyncClient, store: Store) -> None:
    assert_rejected(await api.post("/clusters", json=body(minimum=5, maximum=2)), 422, "minimum")
    assert store.list_clusters() == []
    await api.post("/clusters", json=body(minimum=1, maximum=4))
    before = store.list_clusters()
    assert_rejected(await api.patch("/clusters/alpha", json={"minimum": 5}), 422, "minimum")
    assert_rejected(await api.patch("/clusters/alpha", json={"maximum": 0}), 422, "maximum")
    assert store.list_clusters() == before
    ok = await api.patch("/clusters/alpha", json={"minimum": 5, "maximum": 6})
    assert ok.status_code == 200 and ok.json()["minimum"] == 5


async def test_patch_revalidates_the_merged_cluster(api: httpx.AsyncClient, store: Store) -> None:
    await api.post("/clusters", json=body())
    before = store.list_clusters()
    for changes, mentions in [
        ({"name": "beta"}, "name"),
        ({"weight": None}, "weight"),
        ({"worker": None}, "worker"),
        ({"backend": "nope"}, "nope"),
        ({"backend_options": {}}, "scheduler_address"),
        ({"worker": {"gpu": 1}}, "gpu"),
    ]:
        assert_rejected(await api.patch("/clusters/alpha", json=changes), 422, mentions)
    assert store.list_clusters() == before
    assert (await api.patch("/clusters/nope", json={"tier": 1})).status_code == 404
    unchanged = await api.patch("/clusters/alpha", json={})
    assert unchanged.status_code == 200
    assert store.list_clusters() == before


async def test_worker_resources_follow_the_pool(api: httpx.AsyncClient, store: Store) -> None:
    await api.put("/pool", json={"capacity": {"cpu": 64, "memory": "512GiB", "gpu": 8}})
    created = await api.post("/clusters", json=body(worker={"gpu": 1, "memory": 2_000_000_000}))
    assert created.status_code == 201, created.text
    assert created.json()["worker"] == {"gpu": 1, "memory": 2_000_000_000}
    assert_rejected(await api.post("/clusters", json=body("b", worker={"tpu": 1})), 422, "tpu")


@pytest.mark.parametrize("allowed", [["*.internal", "10.0.*"], []])
async def test_scheduler_host_allowlist(
    api: httpx.AsyncClient, store: Store, api_settings: Any, allowed: list[str]
) -> None:
    api_settings.scheduler_url_allowlist = allowed
    for url in ["http://127.0.0.1:8787", "http://evil.example.com/", "https://internal/"]:
        rejected = await api.post("/clusters", json=body(scheduler_url=url))
        assert_rejected(rejected, 422, "not allowed")
    assert store.list_clusters() == []
    if allowed:
        for n, url in enumerate(["http://sched.internal:8787", "https://10.0.3.4/proxy/8787/"]):
            ok = await api.post("/clusters", json=body(f"c{n}", scheduler_url=url))
            assert ok.status_code == 201, ok.text
            assert ok.json()["scheduler_url"] == url
        moved = await api.patch("/clusters/c0", json={"scheduler_url": "http://127.0.0.1:1"})
        assert_rejected(moved, 422, "not allowed")
        assert store.get_cluster("c0").scheduler_url == "http://sched.internal:8787"


async def test_oversize_body_is_413(api: httpx.AsyncClient, store: Store) -> None:
    response = await api.post("/clusters", content=b"x" * (2 << 20))
    assert response.status_code == 413
    assert store.list_clusters() == []
