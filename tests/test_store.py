"""The store over SQLite and PostgreSQL: clusters, pool, tokens, decisions, observations."""

from __future__ import annotations

import os
import threading
from dataclasses import fields, replace
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from autoscaler.domain import DEFAULT_RESOURCES, ClusterSpec, Decision, Pool
from autoscaler.errors import ConfigError, Conflict, NotFound
from autoscaler.store import ObservationRow, Store
from autoscaler.store.models import Base, TokenRow

GiB = 2**30


def spec(name: str = "alpha", **changes: object) -> ClusterSpec:
    base = ClusterSpec(
        name=name,
        scheduler_url="http://127.0.0.1:8787",
        backend="local",
        backend_options={"scheduler_address": "tcp://127.0.0.1:8786"},
        worker={"cpu": 2, "memory": 16 * GiB},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def decision(cluster: str, at: float, target: int = 1) -> Decision:
    return Decision(
        cluster=cluster,
        desired=target + 1,
        allocated=target,
        target=target,
        current=0,
        dominant_share=0.25,
        reason="fair share",
        decided_at=at,
    )


def test_migrations_match_the_models_and_are_idempotent(store: Store) -> None:
    store.upgrade()  # already at head: nothing to do
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    indexes = {
        ix["name"]: ix["column_names"] for ix in inspect(store.engine).get_indexes("decisions")
    }
    assert indexes["ix_decisions_cluster_decided_at"] == ["cluster", "decided_at"]


def test_upgrade_works_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no alembic.ini here
    store = Store("sqlite:///fresh.db")
    try:
        store.upgrade()
        assert store.list_clusters() == []
    finally:
        store.close()
    assert (tmp_path / "fresh.db").exists()


def test_invalid_database_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Store("not a url")


def test_cluster_lifecycle(store: Store) -> None:
    created = store.create_cluster(spec(group="team-a", maximum=10, weight=2.5, tier=1))
    assert created == spec(group="team-a", maximum=10, weight=2.5, tier=1)
    assert store.get_cluster("alpha") == created
    assert store.get_cluster("alpha", group="team-a") == created
    with pytest.raises(NotFound):
        store.get_cluster("alpha", group="team-b")
    with pytest.raises(Conflict):
        store.create_cluster(spec(group="team-b"))

    updated = store.update_cluster("alpha", {"maximum": None, "worker": {"cpu": 4}})
    assert updated.maximum is None and updated.worker == {"cpu": 4}
    assert store.get_cluster("alpha") == updated
    with pytest.raises(ConfigError):
        store.update_cluster("alpha", {"name": "beta"})
    with pytest.raises(NotFound):
        store.update_cluster("alpha", {"tier": 3}, group="team-b")
    with pytest.raises(NotFound):
        store.delete_cluster("alpha", group="team-b")

    store.delete_cluster("alpha", group="team-a")
    with pytest.raises(NotFound):
        store.get_cluster("alpha")
    with pytest.raises(NotFound):
        store.delete_cluster("alpha")


def test_database_constraints_back_the_api(store: Store) -> None:
    with pytest.raises(ConfigError):
        store.create_cluster(spec(minimum=5, maximum=2))
    with pytest.raises(ConfigError):
        store.create_cluster(spec(weight=0.0))
    store.create_cluster(spec())
    with pytest.raises(ConfigError):
        store.update_cluster("alpha", {"minimum": -1})
    assert store.get_cluster("alpha") == spec()


def test_list_filters_and_order(store: Store) -> None:
    store.create_cluster(spec("c", group="g1", tier=1))
    store.create_cluster(spec("a", group="g2", tier=0))
    store.create_cluster(spec("b", group="g1", tier=0))
    assert [c.name for c in store.list_clusters()] == ["a", "b", "c"]
    assert [c.name for c in store.list_clusters(group="g1")] == ["b", "c"]
    assert [c.name for c in store.list_clusters(tier=0)] == ["a", "b"]
    assert [c.name for c in store.list_clusters(group="g1", tier=1)] == ["c"]


def test_pool_default_set_and_protected_resources(store: Store) -> None:
    assert store.get_pool() is None
    assert store.pool_resources() == DEFAULT_RESOURCES
    pool = Pool(capacity={"memory": 512 * GiB, "cpu": 64, "gpu": 4})
    assert store.set_pool(pool) == pool
    assert store.get_pool() == pool
    assert store.pool_resources() == ("memory", "cpu", "gpu")  # order kept

    store.create_cluster(spec(worker={"cpu": 1, "gpu": 1}))
    with pytest.raises(Conflict, match="alpha"):
        store.set_pool(Pool(capacity={"cpu": 64, "memory": 512 * GiB}))
    assert store.get_pool() == pool
    smaller = Pool(capacity={"cpu": 8, "gpu": 1})  # memory is unused: may go
    assert store.set_pool(smaller) == smaller
    assert store.get_pool() == smaller


def test_tokens_are_stored_hashed(store: Store) -> None:
    token = store.create_token("customer-a")
    other = store.create_token("customer-b")
    assert len(token) >= 40 and token != other
    assert store.token_group(token) == "customer-a"
    assert store.token_group(other) == "customer-b"
    assert store.token_group(token + "x") is None
    assert store.token_group("") is None
    with store.engine.connect() as connection:
        stored = connection.execute(select(TokenRow.token_sha256)).scalars().all()
    assert token not in stored and len(stored) == 2
    assert store.revoke_tokens("customer-a") == 1
    assert store.token_group(token) is None
    assert store.token_group(other) == "customer-b"


def test_decisions_bulk_latest_history_and_prune(store: Store) -> None:
    for name in ("alpha", "beta"):
        store.create_cluster(spec(name, group="g" if name == "beta" else "default"))
    assert store.latest_decisions() == []

    names = ["alpha", "beta"] + [f"gone-{i}" for i in range(1998)]  # 2,000 rows per cycle
    for cycle in range(3):
        store.record_decisions([decision(n, 1000.0 + cycle, target=cycle) for n in names])
    store.record_decisions([])

    latest = store.latest_decisions()
    assert [d.cluster for d in latest] == ["alpha", "beta"]  # only registered clusters
    assert all(d.decided_at == 1002.0 and d.target == 2 for d in latest)
    assert [d.cluster for d in store.latest_decisions(group="g")] == ["beta"]

    history = store.history("alpha")
    assert [d.decided_at for d in history] == [1002.0, 1001.0, 1000.0]
    assert history[0] == decision("alpha", 1002.0, target=2)
    assert [d.decided_at for d in store.history("alpha", limit=2)] == [1002.0, 1001.0]
    with pytest.raises(NotFound):
        store.history("alpha", group="g")
    with pytest.raises(NotFound):
        store.history("gone-1")

    assert store.prune_history(1001.0) == 2000
    assert [d.decided_at for d in store.history("alpha")] == [1002.0, 1001.0]
    assert store.prune_history(1001.0) == 0

    store.delete_cluster("alpha")
    store.create_cluster(spec("alpha"))
    assert store.history("alpha") == []  # a new cluster of the same name starts afresh
    assert [d.cluster for d in store.latest_decisions()] == ["beta"]


def test_observations_keep_the_latest_per_cluster(store: Store) -> None:
    store.create_cluster(spec("alpha"))
    store.create_cluster(spec("beta", group="g"))
    first = ObservationRow(
        cluster="alpha", observed_at=1.0, desired=3, current=1, workers={"idle": 1}
    )
    store.record_observations([first, ObservationRow(cluster="beta", observed_at=1.0)])
    later = ObservationRow(
        cluster="alpha", observed_at=2.0, error="connection refused", stale=True, tasks={"x": 1}
    )
    store.record_observations([later, replace(first, observed_at=1.5)])  # newest wins
    assert store.latest_observations(group="default") == [later]
    assert [o.cluster for o in store.latest_observations()] == ["alpha", "beta"]


def test_store_is_shared_by_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            store.create_cluster(spec(f"c{i}"))
            store.record_decisions([decision(f"c{i}", float(j)) for j in range(20)])
            assert len(store.history(f"c{i}")) == 20
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.list_clusters()) == 8


@pytest.mark.skipif(os.name != "posix", reason="file permissions")
def test_sqlite_uses_wal(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    try:
        store.upgrade()
        with store.engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            keys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
        assert (mode, keys) == ("wal", 1)
    finally:
        store.close()


@pytest.mark.skipif(
    "error" not in {f.name for f in fields(Decision)}, reason="Decision.error not in the domain"
)
def test_decision_error_round_trips(store: Store) -> None:
    store.create_cluster(spec("alpha"))
    failed = replace(decision("alpha", 5.0), applied=False, error="backend down")
    store.record_decisions([failed])
    assert store.history("alpha") == [failed]
    assert store.latest_decisions() == [failed]


def test_lookups_of_unstorable_names_find_nothing(store: Store) -> None:
    store.create_cluster(spec("alpha"))
    for name, group in [("al\x00pha", None), ("alpha", "default\x00")]:
        with pytest.raises(NotFound):
            store.get_cluster(name, group=group)
        with pytest.raises(NotFound):
            store.history(name, group=group)
    assert store.list_clusters(group="\x00") == []
    assert store.latest_decisions(group="\x00") == []
    assert store.latest_observations(group="\x00") == []
