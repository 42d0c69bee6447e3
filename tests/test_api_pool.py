"""``/api/v1/pool``, ``/api/v1/allocations`` and ``/healthz``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from autoscaler.api import create_app
from autoscaler.domain import Pool
from autoscaler.settings import Settings
from autoscaler.store import Store
from tests.db_fixtures import ADMIN_TOKEN
from tests.test_api_clusters import assert_rejected, body
from tests.test_store import decision

GiB = 2**30


async def test_pool_defaults_then_set(api: httpx.AsyncClient, store: Store) -> None:
    unset = await api.get("/pool")
    assert unset.status_code == 200
    assert unset.json() == {"resources": ["cpu", "memory"], "capacity": None}

    put = await api.put("/pool", json={"capacity": {"cpu": 64, "memory": "512GiB", "gpu": 2.5}})
    assert put.status_code == 200, put.text
    expected = {
        "resources": ["cpu", "memory", "gpu"],
        "capacity": {"cpu": 64, "memory": 512 * GiB, "gpu": 2.5},
    }
    assert put.json() == expected
    assert (await api.get("/pool")).json() == expected
    assert store.get_pool() == Pool(capacity={"cpu": 64, "memory": 512 * GiB, "gpu": 2.5})


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"capacity": {}},
        {"capacity": {"cpu": -1}},
        {"capacity": {"cpu": "many"}},
        {"capacity": {"cpu": True}},
        {"capacity": {"cpu": None}},
        {"capacity": {"cpu": "1e19"}},
        {"capacity": {"9cpu": 1}},
        {"capacity": {f"r{i}": 1 for i in range(33)}},
        {"capacity": [64, 512]},
        {"capacity": {"cpu": 1}, "extra": 1},
    ],
)
async def test_bad_pool_is_422_and_changes_nothing(
    api: httpx.AsyncClient, store: Store, payload: dict[str, Any]
) -> None:
    await api.put("/pool", json={"capacity": {"cpu": 8, "memory": "64GiB"}})
    response = await api.put("/pool", json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert store.get_pool() == Pool(capacity={"cpu": 8, "memory": 64 * GiB})


async def test_pool_cannot_drop_a_resource_in_use(api: httpx.AsyncClient, store: Store) -> None:
    await api.put("/pool", json={"capacity": {"cpu": 8, "memory": "64GiB", "gpu": 1}})
    await api.post("/clusters", json=body(worker={"cpu": 1, "gpu": 1}))
    assert_rejected(await api.put("/pool", json={"capacity": {"cpu": 8}}), 409, "gpu")
    assert store.pool_resources() == ("cpu", "memory", "gpu")
    ok = await api.put("/pool", json={"capacity": {"cpu": 16, "gpu": 2}})
    assert ok.status_code == 200


async def test_allocations_latest_and_history(api: httpx.AsyncClient, store: Store) -> None:
    assert (await api.get("/allocations")).json() == []
    await api.post("/clusters", json=body("alpha"))
    await api.post("/clusters", json=body("beta", group="other"))
    assert (await api.get("/allocations")).json() == []

    for cycle in range(5):
        store.record_decisions(
            [decision(n, 100.0 + cycle, target=cycle) for n in ("alpha", "beta")]
        )

    latest = (await api.get("/allocations")).json()
    assert latest == [
        {
            "cluster": name,
            "desired": 5,
            "allocated": 4,
            "target": 4,
            "current": 0,
            "dominant_share": 0.25,
            "reason": "fair share",
            "decided_at": 104.0,
            "applied": True,
            "error": None,
        }
        for name in ("alpha", "beta")
    ]
    assert [a["cluster"] for a in (await api.get("/allocations?group=other")).json()] == ["beta"]

    history = await api.get("/allocations/history", params={"cluster": "alpha"})
    assert [d["decided_at"] for d in history.json()] == [104.0, 103.0, 102.0, 101.0, 100.0]
    two = await api.get("/allocations/history", params={"cluster": "alpha", "limit": 2})
    assert [d["target"] for d in two.json()] == [4, 3]

    bad: list[dict[str, str | int]] = [
        {"cluster": "alpha", "limit": 0},
        {"cluster": "alpha", "limit": 1001},
        {},
    ]
    for params in bad:
        assert (await api.get("/allocations/history", params=params)).status_code == 422
    missing = await api.get("/allocations/history", params={"cluster": "nope"})
    assert_rejected(missing, 404, "nope")

    store.prune_history(103.0)
    pruned = await api.get("/allocations/history", params={"cluster": "alpha"})
    assert [d["decided_at"] for d in pruned.json()] == [104.0, 103.0]


async def test_health_reports_an_unreachable_database() -> None:
    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    try:
        app = create_app(Settings(admin_token=ADMIN_TOKEN), store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/healthz")
        assert response.status_code == 503
    finally:
        store.close()
